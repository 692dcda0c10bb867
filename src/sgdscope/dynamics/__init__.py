"""Low-dimensional dynamics: Fokker–Planck with anisotropic D(x), the linear theory, simulators."""
