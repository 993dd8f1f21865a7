"""Bootstrap confidence intervals over videos for FD (FID/FVD) and for per-video scores (CLIPScore).

What a Fréchet-distance interval is an interval for
---------------------------------------------------
FD estimated from N real and N generated feature vectors is biased upward, roughly by c/N (Chong &
Forsyth, "Effectively Unbiased FID"), so the number a paper reports at N = 2048 is an estimate of

    FD_N = E[FD computed from N real and N generated videos],

not of the population value FD_inf (N -> infinity). Results in a table are compared at equal N, so the
default interval here (``method="shifted"``) is an interval for FD_N: "had we drawn other videos (real and
generated) of the same number, where would the expected FD at this N lie".

Resampling N videos with replacement from the sample duplicates about 37 % of them, which adds about
the same bias again: bootstrap replicates FD* centre near FD_hat + c/N, not near FD_hat. The plain
percentile interval [q_lo, q_hi] is therefore shifted up by the bias and under-covers FD_N. The
``"shifted"`` interval removes that shift: it takes the spread of FD* around its own mean as the spread
of FD_hat around FD_N,

    [FD_hat - (q_hi - mean*), FD_hat + (mean* - q_lo)],

so it is centred at the reported point and has the bootstrap's width and skew. The classic basic
(pivotal) interval ``method="basic"``, [2 FD_hat - q_hi, 2 FD_hat - q_lo], also reflects the bootstrap's
bias (mean* - FD_hat, an estimate of FD_N - FD_inf) and so targets the population value FD_inf: it is a
bias-corrected interval, shifted down by about c/N. Both are offered, with ``"percentile"`` for comparison;
the test suite checks the coverage of ``"shifted"`` for FD_N and of ``"basic"`` for FD_inf by simulation
(8-d Gaussians, N = 500: 0.98 each, against 0.48 for the percentile interval's coverage of FD_N). When
the distance is mostly bias (two similar sets) the bootstrap spread is somewhat wider than the true one,
so both intervals are then conservative rather than exact.

``resample_real=False`` keeps the real set fixed (a cached reference, possibly given as its
:class:`FeatureStats`): the interval then covers only the variability of the generated set, i.e. it is an
interval for E[FD at N | this reference set]; it is narrower and is the right one when every model is
scored against the same cached reference.

Each replicate weights the videos by their resampling counts, so its mean and covariance come from one
[N, d] x [N, d] matmul, never a Python loop over videos; at d = 2048 a replicate costs about one FD
evaluation (0.5 s on 2 cores), so ``n_boot`` of a few hundred is minutes.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from benchmarks.metrics.frechet import RankDeficientWarning, frechet_distance, matrix_root
from benchmarks.metrics.stats import FeatureStats

__all__ = ["bootstrap_frechet", "bootstrap_mean", "interval"]

_METHODS = ("shifted", "basic", "percentile")
_TARGETS = {
    "shifted": "expected FD at this N (E[FD_N])",
    "basic": "population FD (N -> infinity), bias-corrected by the bootstrap",
    "percentile": "none exactly (shifted up by the bootstrap's bias); for comparison",
}


def _features(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a feature matrix [n >= 2, d]; got shape {x.shape}")
    return x


def interval(point: float, replicates: np.ndarray, level: float = 0.95,
             method: str = "shifted") -> tuple[float, float]:
    """(low, high) from bootstrap replicates; see the module docstring for the three methods."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    alpha = (1 - level) / 2
    q_lo, q_hi = np.quantile(replicates, [alpha, 1 - alpha])
    if method == "percentile":
        return float(q_lo), float(q_hi)
    centre = replicates.mean() if method == "shifted" else point
    return float(point - (q_hi - centre)), float(point + (centre - q_lo))


class _Centred:
    """Features centred on their mean, for weighted (resampled) means and covariances without cancellation."""

    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(0)
        self.xc = x - self.mean
        self.n = x.shape[0]

    def stats(self, counts: np.ndarray | None, divisor: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean [d], cov [d, d]) of the sample in which video i appears counts[i] times (None: once)."""
        w = np.ones(self.n) if counts is None else counts.astype(np.float64)
        offset = w @ self.xc / self.n
        outer = (self.xc * w[:, None]).T @ self.xc - self.n * np.outer(offset, offset)
        cov = outer / (self.n if divisor == "N" else self.n - 1)
        return self.mean + offset, (cov + cov.T) / 2


def _resample_counts(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.bincount(rng.integers(0, n, n), minlength=n)


def bootstrap_frechet(real_feats: Any, fake_feats: Any, *, n_boot: int = 500, seed: int = 0,
                      divisor: str = "N-1", level: float = 0.95, method: str = "shifted",
                      resample_real: bool = True, return_replicates: bool = False) -> dict[str, Any]:
    """Fréchet distance with a bootstrap confidence interval over videos.

    real_feats: [N_real, d] features (numpy or torch), or a :class:`FeatureStats` when
    ``resample_real=False``; fake_feats: [N_fake, d]. divisor: covariance divisor, "N-1" (pytorch-fid,
    TF FVD) or "N" (StyleGAN-V). method: "shifted" (default; an interval for the expected FD at this N),
    "basic" (for the population FD) or "percentile"; the module docstring explains the difference.

    Returns a dict: point (FD of the full sets), low, high, level, method, target (what the interval
    covers, in words), n_boot, n_real, n_fake, d, divisor, resample_real, seed, boot_mean, boot_std,
    bootstrap_bias (boot_mean - point: the resampling bias, about the FD_N - FD_inf bias), and with
    ``return_replicates`` the replicates themselves (float64 [n_boot], for :func:`interval`).
    """
    if divisor not in ("N", "N-1"):
        raise ValueError(f"divisor must be 'N' or 'N-1'; got {divisor!r}")
    if n_boot < 10:
        raise ValueError(f"n_boot must be at least 10 (a few hundred for a 95% interval); got {n_boot}")
    fake = _Centred(_features(fake_feats, "fake_feats"))
    if isinstance(real_feats, FeatureStats):
        if resample_real:
            raise ValueError("real_feats is a FeatureStats (no individual videos to resample): "
                             "pass resample_real=False, or pass the real features [N, d]")
        real, mu_r, cov_r, n_real = None, real_feats.mean(), real_feats.cov(divisor), real_feats.count
    else:
        real = _Centred(_features(real_feats, "real_feats"))
        mu_r, cov_r = real.stats(None, divisor)
        n_real = real.n
    if mu_r.shape[0] != fake.xc.shape[1]:
        raise ValueError(f"real and fake features differ in d: {mu_r.shape[0]} vs {fake.xc.shape[1]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)  # the point estimate below warns for both sets
        root_r = matrix_root(cov_r, name="sigma1")
    mu_f, cov_f = fake.stats(None, divisor)
    point = frechet_distance(mu_r, cov_r, mu_f, cov_f, root1=root_r)

    rng = np.random.default_rng(seed)
    replicates = np.empty(n_boot)
    for b in range(n_boot):
        if resample_real and real is not None:
            mu_rb, cov_rb = real.stats(_resample_counts(rng, real.n), divisor)
            root_rb = None
        else:
            mu_rb, cov_rb, root_rb = mu_r, cov_r, root_r
        mu_fb, cov_fb = fake.stats(_resample_counts(rng, fake.n), divisor)
        replicates[b] = frechet_distance(mu_rb, cov_rb, mu_fb, cov_fb, root1=root_rb, warn_rank=False)
    low, high = interval(point, replicates, level, method)
    result = {
        "point": point, "low": low, "high": high, "level": level, "method": method, "target": _TARGETS[method],
        "n_boot": n_boot, "n_real": n_real, "n_fake": fake.n, "d": int(mu_r.shape[0]), "divisor": divisor,
        "resample_real": bool(resample_real and real is not None), "seed": seed,
        "boot_mean": float(replicates.mean()), "boot_std": float(replicates.std(ddof=1)),
        "bootstrap_bias": float(replicates.mean() - point),
    }
    if return_replicates:
        result["replicates"] = replicates
    return result


def bootstrap_mean(values: Any, *, n_boot: int = 10000, seed: int = 0, level: float = 0.95,
                   chunk: int = 1000) -> dict[str, Any]:
    """Mean of per-video scores (e.g. CLIPScore) with a percentile bootstrap interval (the mean is unbiased).

    values: [N] (numpy or torch). Returns point, low, high, level, method, n_boot, n, seed, boot_std.
    """
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.shape[0] < 2:
        raise ValueError(f"values must be a vector [N >= 2] of per-video scores; got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("values contain NaN or inf")
    rng = np.random.default_rng(seed)
    means = np.concatenate([v[rng.integers(0, v.shape[0], (min(chunk, n_boot - start), v.shape[0]))].mean(1)
                            for start in range(0, n_boot, chunk)])
    low, high = interval(float(v.mean()), means, level, "percentile")
    return {"point": float(v.mean()), "low": low, "high": high, "level": level, "method": "percentile",
            "n_boot": n_boot, "n": int(v.shape[0]), "seed": seed, "boot_std": float(means.std(ddof=1))}
