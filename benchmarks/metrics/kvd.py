"""KVD: a kernel distance (polynomial-kernel MMD^2) on the FVD clip features, one row per video.

KVD has no detector or state of its own: it is computed on the FVD metric's states (``features_from = "fvd"``),
so it follows whichever FVD protocol the run uses (``--protocol fvd=...``): the I3D logits of ``fvd/stylegan-v``
or ``fvd/tf``, the surgical video classifier's features of ``fvd/ophsim-surgical``, or VideoMAE's of
``fvd/videomae``; the result names that protocol under ``features_protocol``. (JEDi on its own V-JEPA features
is the metric ``jedi``, :mod:`benchmarks.metrics.jedi`.) An MMD needs no Gaussian assumption and no d x d
covariance from N videos; JEDi's authors report that it settles at smaller N than a Fréchet distance (Luo et al.,
"Beyond FVD").

==============  ================================================================================================
``kvd``         KID's estimator on clips (:mod:`benchmarks.metrics.mmd`): unbiased MMD^2 (diagonals excluded),
                kernel ``(x.y / d + 1)^3``, mean and population std over 100 subsets of m = min(1000, N_real,
                N_fake) videos (every video when the sets are smaller, as surgical test sets are).
``kvd/jedi``    JEDi's released formula (``videojedi.JEDi.JEDiMetric.compute_metric``: ``mmd_poly(train, test,
                degree=2, coef0=0) * 100``): the biased MMD^2 over all videos, ``mean K_xx + mean K_yy - 2 mean
                K_xy`` (diagonals included), kernel ``(x.y / d)^2`` (scikit-learn's ``polynomial_kernel`` with
                its default gamma 1/d), times 100. JEDi computes it on V-JEPA features; here on the FVD protocol's.
==============  ================================================================================================

Interval: resamples videos with replacement (both sets), shifted bootstrap as KID and FID.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.metrics.base import Metric
from benchmarks.metrics.bootstrap import GroupedRows, interval
from benchmarks.metrics.fd import CI_METHOD, FrechetState
from benchmarks.metrics.kid import kid_with_interval
from benchmarks.metrics.mmd import poly_kernel
from ophora.seeding import derive_seed

__all__ = ["KVDProtocol", "KVD", "KVMD", "biased_mmd2", "KVD_JEDI"]


@dataclass(frozen=True)
class KVDProtocol:
    """A polynomial-kernel MMD^2 on the FVD protocol's clip features (one row per video)."""

    name: str = "kvd"
    version: str = "1"
    metric: str = "kvd"
    features: str = "the FVD protocol's clip features, one row per video (features_protocol in the result)"
    kernel: str = "polynomial (gamma x.y + coef0)^degree"
    degree: int = 3
    gamma: str = "1/d"
    coef0: float = 1.0
    estimator: str = "unbiased"  # "unbiased": KID's (diagonals excluded, subsets); "biased": JEDi's (all videos)
    subsets: int = 100
    subset_size: int = 1000
    subset_rule: str = "m = min(subset_size, N_real, N_fake) videos, drawn without replacement; subset draws " \
                       "seeded by ophora.seeding.derive_seed(seed, 'kid')"
    spread: str = "population std (ddof 0) over subsets"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.estimator not in ("unbiased", "biased"):
            raise ValueError(f"{self.name}: estimator must be 'unbiased' or 'biased', got {self.estimator!r}")


KVD_JEDI = KVDProtocol(
    name="kvd/jedi", degree=2, coef0=0.0, estimator="biased", subsets=1, subset_size=0,
    subset_rule="none: every video of both sets (JEDi's mmd_poly on the whole feature sets)",
    spread="none (one value)", scale=100.0,
    kernel="polynomial (x.y / d)^2 (scikit-learn polynomial_kernel, degree 2, gamma None -> 1/d, coef0 0), "
           "biased MMD^2 (diagonals included) times 100: JEDi's compute_metric")


def biased_mmd2(x: np.ndarray, y: np.ndarray, *, degree: int = 2, coef0: float = 0.0,
                weights: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """``mean K_xx + mean K_yy - 2 mean K_xy`` (diagonals included) with kernel ``(x.y / d + coef0)^degree``;
    ``weights``: per-row weights of x and y (a bootstrap resample: a row drawn c times counts c times)."""
    k_xx, k_yy, k_xy = (poly_kernel(a, b, degree=degree, coef0=coef0) for a, b in ((x, x), (y, y), (x, y)))
    return _weighted_mmd2(k_xx, k_yy, k_xy, *(weights or (np.ones(len(x)), np.ones(len(y)))))


def _weighted_mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> float:
    wx, wy = wx / wx.sum(), wy / wy.sum()
    return float(wx @ k_xx @ wx + wy @ k_yy @ wy - 2.0 * wx @ k_xy @ wy)


def _biased_with_interval(protocol: KVDProtocol, real: GroupedRows, fake: GroupedRows, *, seed: int,
                          n_boot: int) -> dict[str, Any]:
    x, y = real.xc + real.mean, fake.xc + fake.mean
    kw = dict(degree=protocol.degree, coef0=protocol.coef0)
    k_xx, k_yy, k_xy = (poly_kernel(a, b, **kw) for a, b in ((x, x), (y, y), (x, y)))
    value = protocol.scale * _weighted_mmd2(k_xx, k_yy, k_xy, np.ones(len(x)), np.ones(len(y)))
    result: dict[str, Any] = {"value": value, "subset_size": None}
    if n_boot:
        rng = np.random.default_rng(derive_seed(seed, "kvd-bootstrap"))
        replicates = np.array([protocol.scale * _weighted_mmd2(k_xx, k_yy, k_xy, real.resample(rng),
                                                               fake.resample(rng)) for _ in range(n_boot)])
        low, high = interval(value, replicates, 0.95, CI_METHOD)
        result["ci"] = {"low": low, "high": high, "level": 0.95, "method": CI_METHOD,
                        "resampled": "videos (both sets)", "n_boot": n_boot, "seed": seed}
    return result


class KVD(Metric):
    """Kernel Video Distance on the FVD clip features (lower is better)."""

    name = "kvd"
    display_name = "KVD"
    higher_is_better = False
    protocols = (KVDProtocol(), KVD_JEDI)
    result_fields = ("value", "std", "subset_size", "ci", "n_real", "n_fake", "n_real_rows", "n_fake_rows", "error")
    features_from = "fvd"

    def needs_rows(self, n_boot: int) -> bool:
        return True

    def compute(self, real: FrechetState, fake: FrechetState, *, n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
        """KVD (with the unbiased estimator: the std over subsets), N and (with ``n_boot``) the interval over
        videos, from the FVD states' rows."""
        base = {"n_real": real.videos, "n_fake": fake.videos, "n_real_rows": real.stats.count,
                "n_fake_rows": fake.stats.count}
        if real.stats.count < 2 or fake.stats.count < 2:
            return {"value": None, **base, "error": "needs at least 2 videos in each set"}
        n_boot = n_boot if real.videos >= 2 and fake.videos >= 2 else 0
        if self.protocol.estimator == "biased":
            return {**_biased_with_interval(self.protocol, real.grouped(), fake.grouped(), seed=seed,
                                            n_boot=n_boot), **base}
        result = kid_with_interval(self.protocol, real.grouped(), fake.grouped(), seed=seed, n_boot=n_boot)
        for key in ("value", "std"):
            result[key] *= self.protocol.scale
        if "ci" in result:
            result["ci"].update(low=result["ci"]["low"] * self.protocol.scale,
                                high=result["ci"]["high"] * self.protocol.scale)
        return {**result, **base}


class KVMD(KVD):
    """Kernel Video Motion Distance: KID's estimator on the FVMD motion features (lower is better).

    The Fréchet distance on 1024-d motion histograms from a few dozen windows is dominated by the two covariance
    traces: a slowed-down set has a smaller spread and a shifted mean, and the two cancel. The kernel estimator
    has no covariance term; it is computed on the FVMD states' rows (one per window; intervals resample videos).
    """

    name = "kvmd"
    display_name = "KVMD"
    protocols = (KVDProtocol(name="kvmd", metric="kvmd",
                             features="the FVMD protocol's motion features (velocity and acceleration histograms, "
                                      "1024-d), one row per 16-frame window"),)
    features_from = "fvmd"
