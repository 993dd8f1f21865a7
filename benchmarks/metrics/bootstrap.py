"""Bootstrap confidence intervals over videos: the interval rules, video-grouped resampling, and the mean of
per-video scores (CLIPScore).

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

Resampling is over videos (:class:`GroupedRows`): every row (frame) of a drawn video is drawn with it, so
correlated frames of one video never count as independent samples. A replicate weights the rows by their
videos' resampling counts, so its mean and covariance come from one weighted product, never a Python loop over
videos (:meth:`GroupedRows.weighted_batch` does so for a batch of replicates at once). The Fréchet and KID
replicates themselves are computed in :mod:`benchmarks.metrics.fd` and :mod:`benchmarks.metrics.kid`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["GroupedRows", "bootstrap_mean", "interval"]

_METHODS = ("shifted", "basic", "percentile")


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


class GroupedRows:
    """Per-row features float64 [n, d] centred on their mean, with the video (group) of each row."""

    def __init__(self, rows: np.ndarray, positions: np.ndarray):
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or len(x) != len(positions):
            raise ValueError(f"rows [n, d] and positions [n] must match; got {x.shape} and {len(positions)}")
        self.mean = x.mean(0)
        self.xc = x - self.mean
        _, self.group = np.unique(np.asarray(positions), return_inverse=True)
        self.videos = int(self.group.max()) + 1 if len(x) else 0

    def resample(self, rng: np.random.Generator) -> np.ndarray:
        """Row weights float64 [n]: each video drawn ``count`` times (``count`` for all its rows)."""
        counts = np.bincount(rng.integers(0, self.videos, self.videos), minlength=self.videos)
        return counts[self.group].astype(np.float64)

    def weighted(self, w: np.ndarray, divisor: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean [d], A [m, d]) of the weighted sample, with cov = A^T A (rows of zero weight dropped)."""
        total = w.sum()
        offset = w @ self.xc / total
        keep = w > 0
        scale = np.sqrt(w[keep] / (total if divisor == "N" else total - 1))
        return self.mean + offset, (self.xc[keep] - offset) * scale[:, None]

    def weighted_batch(self, weights: np.ndarray, divisor: str) -> tuple[Any, Any]:
        """:meth:`weighted` for a batch of row weights [B, n]: (means [B, d], A [B, m, d]) as torch float64.

        Each A[b] holds the rows of non-zero weight, padded with rows of zeros to the batch's largest count m
        (zero rows add nothing to A^T A, so cov[b] = A[b]^T A[b] exactly as :meth:`weighted`).
        """
        import torch

        w = torch.from_numpy(np.require(weights, np.float64, ["C", "W"]))
        if w.ndim != 2 or w.shape[1] != len(self.xc):
            raise ValueError(f"weights must be [B, n = {len(self.xc)}]; got shape {tuple(w.shape)}")
        xc = torch.from_numpy(np.require(self.xc, requirements=["C", "W"]))
        total = w.sum(1, keepdim=True)
        offset = (w @ xc) / total  # [B, d]
        keep = w > 0
        m = int(keep.sum(1).max())
        # indices of the kept rows first (stable), then rows of zero weight, which the scale below zeroes
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :m]
        kept_w = torch.gather(w, 1, order)
        scale = torch.sqrt(kept_w / (total if divisor == "N" else total - 1))
        factors = (xc[order] - offset[:, None, :]) * scale[:, :, None]
        return torch.from_numpy(self.mean)[None] + offset, factors


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
