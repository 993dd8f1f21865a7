"""From extracted features to reported numbers: Fréchet distances and KID with 95% intervals over videos.

Point estimates come from the streamed float64 :class:`FeatureStats` (FD, with the reference covariance's
cached factor) or the per-row features (KID). Intervals resample *videos* with replacement, keeping all
rows (frames) of a drawn video together: for FID with k frames per video the frames of one video are
correlated, so resampling frames would understate the spread. With one row per video (FVD, or FID with
k = 1) the replicates are exactly those of :func:`benchmarks.metrics.bootstrap_frechet` (same draws, same
order; a test checks it). The interval is the ``"shifted"`` bootstrap interval of
:mod:`benchmarks.metrics.bootstrap`: centred on the point estimate with the bootstrap's spread and skew, an
interval for the expected distance at this N (FD and KID estimated from resamples with duplicated videos are
biased upward; the shift removes that bias, see that module's docstring).

Each FD replicate is computed in sample space when the sets have fewer rows than dimensions:
tr((S1 S2)^(1/2)) is the nuclear norm of A1^T A2 for S = A A^T with A the weighted centred rows / sqrt(divisor),
an [n1, n2] SVD instead of a d x d eigenvalue problem; otherwise through :func:`frechet_distance`.

The cached factor of a reference covariance estimated from N <= d samples (rank <= N - 1 < d, the usual
case for FID on small surgical test sets) is computed by a pivoted Cholesky factorisation (LAPACK ``dpstrf``,
O(d^2 r): 0.1 s at d = 2048, r = 11) instead of :func:`matrix_root`'s full eigen-decomposition (several
seconds); above that, :func:`matrix_root`.

Cost: the bootstrap holds both sets' rows in float64 (rows x d x 8 bytes: 268 MB for 2048 videos x 8 frames
at d = 2048). With more rows than dimensions a replicate costs two [rows, d] x [d, rows] products and one
d x d eigenvalue problem (seconds at d = 2048 on a few cores), so ``--bootstrap 200`` is minutes there.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from scipy.linalg import lapack

from benchmarks.metrics import FeatureStats, MatrixRoot, frechet_distance, interval, kid, kid_per_subset
from benchmarks.metrics import kid_subset_indices, matrix_root
from ophora.seeding import derive_seed

__all__ = ["GroupedRows", "reference_root", "frechet_point", "grouped_bootstrap_frechet", "kid_with_interval"]

CI_METHOD = "shifted"
KID_BOOT_SUBSETS = 10  # subsets per KID bootstrap replicate


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


def reference_root(stats: FeatureStats, divisor: str) -> MatrixRoot:
    """Factor B [d, r] of the covariance of ``stats`` (sigma = B B^T) for :func:`frechet_distance`'s ``root1``.

    Fewer samples than dimensions: pivoted Cholesky (rank r from LAPACK's default tolerance, d * eps *
    max diag); otherwise :func:`matrix_root` (Cholesky, eigen-decomposition fallback). No warnings: the
    distance reports rank deficiency.
    """
    sigma = stats.cov(divisor)
    if stats.count > sigma.shape[0]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return matrix_root(sigma, name="real covariance")
    factor, pivots, rank, info = lapack.dpstrf(sigma, lower=1, tol=-1)
    if info < 0:
        raise ValueError(f"pivoted Cholesky failed (LAPACK dpstrf info {info})")
    b = np.empty((sigma.shape[0], rank))
    b[pivots - 1] = np.tril(factor)[:, :rank]  # P^T sigma P = L L^T  ->  sigma = (P L)(P L)^T
    return MatrixRoot(b, "pivoted-cholesky", int(rank), float(np.trace(sigma)))


def _fd_from_factors(mu1: np.ndarray, a1: np.ndarray, mu2: np.ndarray, a2: np.ndarray) -> float:
    """FD between N(mu1, A1^T A1) and N(mu2, A2^T A2); A: [m, d] (sample space when m < d)."""
    diff = mu1 - mu2
    d = a1.shape[1]
    if max(len(a1), len(a2)) < d:
        nuclear = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
        return float(diff @ diff + np.einsum("ij,ij->", a1, a1) + np.einsum("ij,ij->", a2, a2) - 2 * nuclear)
    s1, s2 = a1.T @ a1, a2.T @ a2
    return frechet_distance(mu1, (s1 + s1.T) / 2, mu2, (s2 + s2.T) / 2, warn_rank=False)


def frechet_point(real: FeatureStats, fake: FeatureStats, divisor: str,
                  root: MatrixRoot | None = None) -> tuple[float, list[str]]:
    """FD of the full sets from their statistics (``root``: the cached factor of the real covariance) and the
    warnings that go with it, as text.

    A covariance of N <= d samples has rank <= N - 1 < d: that is stated from N, without the eigenvalue
    solve :func:`frechet_distance` would spend on measuring the rank (up to 15 s at d = 2048 when ~2000
    eigenvalues are zero). With N > d both ranks are checked numerically.
    """
    messages = [f"{name} covariance from N = {stats.count} samples is rank-deficient (rank <= N - 1 < d = "
                f"{stats.dim}): the distance is computed but strongly biased at this N; report N beside it"
                for name, stats in (("real", real), ("fake", fake)) if stats.count <= stats.dim]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = frechet_distance(real.mean(), real.cov(divisor), fake.mean(), fake.cov(divisor), root1=root,
                                 warn_rank=not messages)
    return value, messages + [str(w.message) for w in caught]


def grouped_bootstrap_frechet(real: GroupedRows, fake: GroupedRows, point: float, *, divisor: str,
                              n_boot: int, seed: int, level: float = 0.95) -> dict[str, Any]:
    """Bootstrap interval for FD over videos (both sets resampled); see the module docstring."""
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_boot)
    for b in range(n_boot):
        mu_r, a_r = real.weighted(real.resample(rng), divisor)
        mu_f, a_f = fake.weighted(fake.resample(rng), divisor)
        replicates[b] = _fd_from_factors(mu_r, a_r, mu_f, a_f)
    low, high = interval(point, replicates, level, CI_METHOD)
    return {"low": low, "high": high, "level": level, "method": CI_METHOD, "resampled": "videos (both sets)",
            "target": "expected distance at this N", "n_boot": n_boot, "seed": seed,
            "boot_std": float(replicates.std(ddof=1)), "bootstrap_bias": float(replicates.mean() - point)}


def kid_with_interval(protocol: Any, real: GroupedRows, fake: GroupedRows, *, seed: int, n_boot: int = 0,
                      level: float = 0.95) -> dict[str, Any]:
    """KID (mean, std over ``protocol.subsets`` subsets) on per-row features and, with ``n_boot``, a shifted
    bootstrap interval over videos (each replicate: KID_BOOT_SUBSETS subsets of the resampled rows)."""
    x, y = real.xc + real.mean, fake.xc + fake.mean
    kw = dict(degree=protocol.degree, coef0=protocol.coef0)
    value, std = kid(x, y, subsets=protocol.subsets, subset_size=protocol.subset_size, seed=derive_seed(seed, "kid"),
                     **kw)
    result: dict[str, Any] = {"value": value, "std": std, "subset_size": min(protocol.subset_size, len(x), len(y))}
    if n_boot:
        rng = np.random.default_rng(derive_seed(seed, "kid-bootstrap"))
        replicates = np.empty(n_boot)
        for b in range(n_boot):
            rows_r = np.repeat(np.arange(len(x)), real.resample(rng).astype(np.int64))
            rows_f = np.repeat(np.arange(len(y)), fake.resample(rng).astype(np.int64))
            subsets = kid_subset_indices(len(rows_r), len(rows_f), KID_BOOT_SUBSETS, protocol.subset_size, rng)
            replicates[b] = kid_per_subset(x[rows_r], y[rows_f], subsets, **kw).mean()
        low, high = interval(value, replicates, level, CI_METHOD)
        result["ci"] = {"low": low, "high": high, "level": level, "method": CI_METHOD,
                        "resampled": "videos (both sets)", "subsets_per_replicate": KID_BOOT_SUBSETS,
                        "n_boot": n_boot, "seed": seed}
    return result
