"""What a response curve says: its Spearman correlation with strength and a verdict against the noise floor.

A curve is a metric's value at strength 0 (half B of the real set against half A: the real-vs-real noise floor,
with its 95% bootstrap interval) and at each non-zero strength of one degradation. "Worse" is up for a metric
where lower is better (FID, FVD) and down where higher is better (CLIPScore, recall). Verdicts:

- ``responds``: Spearman correlation of (strength, value) at least ``threshold`` (0.9) in the worse direction,
  and the value at the middle non-zero strength beyond the floor's interval on the worse side;
- ``blind``: every non-zero strength's value within the floor's interval;
- ``wrong direction``: some value beyond the interval on the better side, and the correlation points that way;
- ``weak``: outside the floor somewhere, but not monotone enough or not yet at the middle strength;
- ``n/a``: a value is missing (the metric failed on a set).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

from scipy.stats import spearmanr

__all__ = ["Curve", "spearman", "judge", "middle_index", "VERDICTS"]

VERDICTS = ("responds", "weak", "blind", "wrong direction", "n/a")
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Curve:
    """``strengths`` increasing, the first being the identity (the floor); ``values`` one per strength;
    ``floor``: the (low, high) 95% interval of the floor's value."""

    strengths: Sequence[float]
    values: Sequence[float | None]
    floor: tuple[float | None, float | None]
    higher_is_better: bool


def spearman(strengths: Sequence[float], values: Sequence[float]) -> float | None:
    """Spearman's rank correlation of ``values`` with ``strengths``; None when undefined (a constant curve)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on a constant input and returns nan
        rho = spearmanr(strengths, values).statistic
    return None if rho is None or math.isnan(rho) else float(rho)


def middle_index(count: int) -> int:
    """Index (into the curve, 0 being the floor) of the middle of ``count`` non-zero strengths (lower middle)."""
    return 1 + (count - 1) // 2


def judge(curve: Curve, threshold: float = 0.9) -> dict:
    """``{"verdict", "spearman" (towards worse: positive when the metric gets worse with strength), "middle",
    "worse", "better"}``: ``worse``/``better`` count non-zero strengths beyond the floor's interval on that side."""
    values, (low, high) = list(curve.values), curve.floor
    if any(v is None or not math.isfinite(v) for v in values) or low is None or high is None or len(values) < 3:
        return {"verdict": "n/a", "spearman": None, "middle": None, "worse": None, "better": None}
    sign = -1.0 if curve.higher_is_better else 1.0
    rho = spearman(curve.strengths, values)
    rho_worse = None if rho is None else sign * rho

    def worse(v: float) -> bool:
        return v < low if curve.higher_is_better else v > high

    def better(v: float) -> bool:
        return v > high if curve.higher_is_better else v < low

    n_worse = sum(worse(v) for v in values[1:])
    n_better = sum(better(v) for v in values[1:])
    middle = middle_index(len(values) - 1)
    # Spearman of a few points takes few values (5 points, one adjacent swap: exactly 0.9), which scipy returns
    # up to rounding (0.8999999999999998): compare with a tolerance far below the step between its values
    if rho_worse is not None and rho_worse >= threshold - _TOLERANCE and worse(values[middle]):
        verdict = "responds"
    elif n_worse == 0 and n_better == 0:
        verdict = "blind"
    elif n_better > 0 and (rho_worse is None or rho_worse < 0) and n_better >= n_worse:
        verdict = "wrong direction"
    else:
        verdict = "weak"
    return {"verdict": verdict, "spearman": rho_worse, "middle": curve.strengths[middle], "worse": n_worse,
            "better": n_better}
