"""``sgdscope reproduce``: the paper's experiments end to end, compared number by number.

Five experiments, each a sub-package with the same rooms (``settings``, ``measure``, ``claims``,
``figures``; ``run`` in its ``__init__``) over the protocol of :mod:`._experiment`:

- :mod:`.spectra`: Figs 1–2, the eigenspectrum of D(x) during training (§IV-A);
- :mod:`.trajectory`: Fig. 3, long SGD trajectories and the equilibrium test (§IV-B);
- :mod:`.toy`: Fig. 4 and §V, Example 19, Theorem 22, Assumption 4, Lemma 20;
- :mod:`.scaling`: Remarks 11–12, η ∝ b and sampling with or without replacement;
- :mod:`.nonequilibrium`: beyond the paper, its central claim tested where the test is valid
  (stationary settings, currents in subspaces, the linear theory of Lemma 20).

:data:`EXPERIMENTS` lists them in report order; the CLI runs them from it.
"""

from __future__ import annotations

from . import nonequilibrium, scaling, spectra, toy, trajectory
from ._experiment import Experiment

__all__ = ["EXPERIMENTS", "Experiment"]

#: The experiments by name, in report order.
EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        spectra.EXPERIMENT,
        trajectory.EXPERIMENT,
        toy.EXPERIMENT,
        scaling.EXPERIMENT,
        nonequilibrium.EXPERIMENT,
    )
}
