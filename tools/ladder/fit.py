"""Power laws ``y = a x^-b`` fitted by least squares in log space, with a prediction interval.

``log y = log a - b log x`` is a straight line, so ordinary least squares on the logs gives the
fit in closed form (numpy only; scipy is not a dependency). The interval for a new point is the
usual one for a regression line, in log space, mapped back:

  log y0 +- t(0.975, n - 2) * s * sqrt(1 + 1/n + (log x0 - mean log x)^2 / Sxx)

with s the residual standard deviation. Three points leave one degree of freedom, so the
interval is wide (t = 12.7): it says how little three runs pin down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PowerLaw", "fit_power_law"]

# Two-sided 95% quantiles of Student's t for 1..10 degrees of freedom (statistical tables,
# kept here so scipy is not needed); beyond 10 the normal 1.96 is used with a small margin.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def _t975(dof: int) -> float:
    return _T975[dof - 1] if dof <= len(_T975) else 1.96 + 2.5 / dof


@dataclass(frozen=True)
class PowerLaw:
    """``y = a x^-b`` fitted on ``n`` points; ``s`` residual std and ``x_mean``, ``sxx`` of the
    log x values (for intervals)."""

    a: float
    b: float
    n: int
    s: float
    x_mean: float
    sxx: float

    def __call__(self, x: float) -> float:
        return self.a * x**-self.b

    def interval(self, x: float) -> tuple[float, float]:
        """95% prediction interval of a new observation at ``x`` (needs n >= 3)."""
        if self.n < 3:
            raise ValueError(f"a prediction interval needs >= 3 points, the fit has {self.n}")
        lx = math.log(x)
        half = _t975(self.n - 2) * self.s
        half *= math.sqrt(1 + 1 / self.n + (lx - self.x_mean) ** 2 / self.sxx)
        center = math.log(self(x))
        return math.exp(center - half), math.exp(center + half)


def fit_power_law(x: list[float], y: list[float]) -> PowerLaw:
    """Least squares fit of ``log y = log a - b log x``.

    Raises:
        ValueError: fewer than 2 points, lengths differ, a value <= 0, or all x equal.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError(f"a power law needs >= 2 points, got {len(x)}")
    bad = [v for v in (*x, *y) if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"power-law fits need finite values > 0, got {bad[:3]}")
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    sxx = float(((lx - lx.mean()) ** 2).sum())
    if sxx == 0:
        raise ValueError("all x values are equal: no slope to fit")
    slope = float(((lx - lx.mean()) * (ly - ly.mean())).sum() / sxx)
    intercept = float(ly.mean() - slope * lx.mean())
    resid = ly - (intercept + slope * lx)
    dof = len(x) - 2
    s = float(math.sqrt((resid**2).sum() / dof)) if dof > 0 else 0.0
    return PowerLaw(math.exp(intercept), -slope, len(x), s, float(lx.mean()), sxx)
