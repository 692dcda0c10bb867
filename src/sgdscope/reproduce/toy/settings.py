"""Sizes of ``reproduce toy``: grids, particles and the β ladder of Theorem 22."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..._validation import check_int, check_real
from .._experiment import AbstractSettings

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings(AbstractSettings):
    """Sizes of the toy experiment.

    Attributes:
        lams: The λ of Example 19 (Fig. 4a–c: 0, 0.5, 1.5).
        grid: Cells per axis of the Fokker–Planck grid.
        particles: Number of simulated SDE particles per λ.
        t_max: Simulated time (the slowest relaxation time of the double well at β = 1 is ≈ 1).
        dt: Euler–Maruyama step (weak order 1: the stationary law is biased by O(dt)).
        bins: χ² bins per axis (bins with expected count < 5 are pooled).
        alpha: Level of the χ² test.
        shift_lam: λ of the Theorem 22 test.
        shift_betas: β values of the Theorem 22 test (drift fixed at its β = 1 form).
        linear_grid: Cells per axis of the Lemma 20 Fokker–Planck check.
    """

    WHERE: ClassVar[str] = "sgdscope.reproduce.toy.Settings"

    lams: tuple[float, ...] = (0.0, 0.5, 1.5)
    grid: int = 256
    particles: int = 40_000
    t_max: float = 10.0
    dt: float = 0.002
    bins: int = 10
    alpha: float = 0.01
    shift_lam: float = 0.5
    shift_betas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    linear_grid: int = 192

    def validate(self) -> None:
        """Check every field (called at construction)."""
        w = self.WHERE
        check_int("grid", self.grid, where=w, low=32)
        check_int("particles", self.particles, where=w, low=100)
        check_int("bins", self.bins, where=w, low=2)
        check_int("linear_grid", self.linear_grid, where=w, low=32)
        check_real("t_max", self.t_max, where=w, low=0.0, low_open=True)
        check_real("dt", self.dt, where=w, low=0.0, low_open=True, high=self.t_max)
        check_real("alpha", self.alpha, where=w, low=0.0, high=1.0, low_open=True)
        check_real("shift_lam", self.shift_lam, where=w)
        for lam in self.lams:
            check_real("lams", lam, where=w, low=0.0)
        if len(self.lams) == 0:
            raise ValueError(f"the 'lams' parameter of {w} must hold at least one λ, got ().")
        betas = tuple(self.shift_betas)
        if len(betas) < 2 or any(b < 1.0 for b in betas) or len(set(betas)) != len(betas):
            raise ValueError(
                f"the 'shift_betas' parameter of {w} must hold at least two distinct β ≥ 1 "
                f"(the grid's box is sized for β ≥ 1), got {betas!r}."
            )

    @classmethod
    def quick(cls) -> Settings:
        """Reduced sizes: grid 112², 4,000 particles, dt = 0.005, β up to 16 (≈ 30 s)."""
        return cls(
            grid=112,
            particles=4_000,
            t_max=8.0,
            dt=0.005,
            bins=8,
            shift_betas=(1.0, 2.0, 4.0, 8.0, 16.0),
            linear_grid=128,
        )

    @classmethod
    def full(cls) -> Settings:
        """The paper's three λ at grid 256², 40,000 particles, dt = 0.002, β up to 32."""
        return cls()

    def describe_reduction(self) -> str:
        """What these settings reduce against :meth:`full`, in words."""
        f = self.full()
        return (
            f"grid {self.grid}² (full {f.grid}²), {self.particles:,} SDE particles (full "
            f"{f.particles:,}) to t = {self.t_max:g} with dt {self.dt:g} (full {f.t_max:g}, "
            f"{f.dt:g}), β up to {max(self.shift_betas):g} (full {max(f.shift_betas):g}), "
            f"λ ∈ {list(self.lams)}"
        )
