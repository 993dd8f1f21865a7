"""Fréchet-distance metrics (FID, FVD): the state of one video set, the point estimate and the interval over videos.

State (:class:`FrechetState`): the streamed float64 :class:`FeatureStats` of the set, the number of videos,
the cached factor of its covariance and, where a bootstrap or KID needs them, every row on disk (float16,
:class:`benchmarks.features.extract.RowStore`). States of shards add up (``merge``) and are summed across
torch.distributed processes (``all_reduce``).

Point estimate: from the two sets' statistics, with the reference covariance's cached factor. A reference
covariance estimated from N <= d samples (rank <= N - 1 < d, the usual case for FID on small surgical test
sets) is factorised by a pivoted Cholesky factorisation (LAPACK ``dpstrf``, O(d^2 r)) instead of
:func:`matrix_root`'s full eigen-decomposition; above that, :func:`matrix_root`.

Interval: resamples *videos* with replacement, keeping all rows (frames) of a drawn video together: for FID
with k frames per video the frames of one video are correlated, so resampling frames would understate the
spread. It is the ``"shifted"`` interval of :mod:`benchmarks.metrics.bootstrap`: centred on the point estimate
with the bootstrap's spread and skew, an interval for the expected distance at this N (FD estimated from
resamples with duplicated videos is biased upward; the shift removes that bias, see that module's docstring).
Replicates are computed in batches by :func:`benchmarks.metrics.frechet.frechet_distances_from_factors`: for
each, tr((S1 S2)^(1/2)) is the nuclear norm of A1 A2^T (A: the replicate's weighted centred rows, reduced to their
d x d QR factor R when there are more rows than dimensions), exact at any rank, in torch float64 on one thread.

Cost: the bootstrap holds both sets' rows in float64 (rows x d x 8 bytes: 268 MB for 2048 videos x 8 frames
at d = 2048) and, per batch, up to 32 MB of weighted rows per set. A replicate costs two QR factorisations of
[rows, d] (when rows > d) and one SVD of at most d x d. Measured (``tests/perf/test_perf_frechet.py``, figures in
``results/perf/frechet_bootstrap.md``, 2 cores at load average 7-9): 200 replicates for 24 against 24 videos of 8
frames at d = 128 take 1.4 s (100 videos: 1.8 s), where the previous per-replicate route on numpy's default two
BLAS threads took 109 s (117 s); almost all of that gain is the single thread.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.linalg import lapack

from benchmarks.features.extract import RowStore, dist_info, gather_objects
from benchmarks.metrics.base import Metric
from benchmarks.metrics.bootstrap import GroupedRows, interval
from benchmarks.metrics.frechet import MatrixRoot, frechet_distance, frechet_distances_from_factors, matrix_root
from benchmarks.metrics.stats import FeatureStats
from ophora.seeding import derive_seed

__all__ = ["FrechetState", "FrechetMetric", "reference_root", "frechet_point", "frechet_replicates",
           "grouped_bootstrap_frechet"]

CI_METHOD = "shifted"


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


class FrechetState:
    """One set's features for a Fréchet distance (and KID): :class:`FeatureStats` [d], N videos and, with
    ``rows_path``, every row float16 [n, d] with the video position of each row."""

    def __init__(self, dim: int, divisor: str, rows_path: str | Path | None = None):
        self.stats, self.divisor, self.videos = FeatureStats(dim), divisor, 0
        self.rows = RowStore(rows_path, dim) if rows_path is not None else None
        self._loaded_rows: tuple[np.ndarray, np.ndarray] | None = None  # rows restored from a cache entry
        self._root: MatrixRoot | None = None

    def update(self, features: Any, positions: Any = None) -> "FrechetState":
        """Add features [n, d] (numpy or torch); ``positions`` [n]: the video of each row (default: one each)."""
        n = len(features)
        positions = np.arange(self.videos, self.videos + n) if positions is None else np.asarray(positions)
        self.stats.update(features)
        if self.rows is not None:
            self.rows.append(features, positions)
        self.videos += len(np.unique(positions))
        self._root = None
        return self

    def merge(self, other: "FrechetState") -> "FrechetState":
        """Add ``other``'s statistics, videos and (where this state keeps rows) rows, in place."""
        if self.rows is not None:
            theirs = other.row_arrays()
            if theirs is None:
                raise ValueError("cannot merge a state without rows into one that keeps rows")
            self.rows.append(*theirs)
        self.stats.merge(other.stats)
        self.videos += other.videos
        self._root = None
        return self

    def all_reduce(self) -> None:
        """Sum statistics and video counts over processes; gather rows (sorted by video position) on rank 0."""
        rank, world = dist_info()
        if world == 1:
            return
        self.stats.all_reduce()
        self._root = None
        local = self.rows.arrays() if self.rows is not None else None
        parts = gather_objects((self.videos, None if local is None else (np.asarray(local[0]), local[1])))
        self.videos = sum(part[0] for part in parts)
        if self.rows is not None and rank != 0:
            self.rows = None  # only rank 0 computes intervals and KID
        elif self.rows is not None:
            rows = np.concatenate([part[1][0] for part in parts])
            positions = np.concatenate([part[1][1] for part in parts])
            order = np.argsort(positions, kind="stable")
            merged = self.rows.path.with_name(self.rows.path.stem + "-all.f16")
            self.rows = RowStore.from_arrays(merged, rows[order], positions[order])

    def row_arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows float16 [n, d], positions int64 [n]), or None when this state keeps no rows."""
        if self._loaded_rows is not None:
            return self._loaded_rows
        return self.rows.arrays() if self.rows is not None else None

    def grouped(self) -> GroupedRows:
        """The rows grouped by video, for the bootstrap and KID."""
        rows = self.row_arrays()
        if rows is None:
            raise ValueError("this state keeps no per-row features (create it with rows_path)")
        return GroupedRows(*rows)

    def root(self) -> MatrixRoot:
        """Factor of this set's covariance (:func:`reference_root`), computed once per state of the statistics."""
        if self._root is None:
            self._root = reference_root(self.stats, self.divisor)
        return self._root

    def to_arrays(self) -> dict[str, np.ndarray] | None:
        """Statistics, covariance factor and rows as named arrays (a cache entry); None below 2 rows."""
        if self.stats.count < 2:
            return None
        root = self.root()
        arrays = {f"stats_{k}": v for k, v in self.stats.state_dict().items()}
        arrays.update(root_factor=root.factor, root_method=np.array(root.method),
                      root_rank=np.int64(-1 if root.rank is None else root.rank), root_trace=np.float64(root.trace))
        rows = self.row_arrays()
        if rows is not None:
            arrays.update(rows=np.asarray(rows[0], dtype=np.float16), positions=rows[1])
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], *, divisor: str, videos: int) -> "FrechetState":
        """The state :meth:`to_arrays` wrote (rows, where present, stay in memory)."""
        stats = FeatureStats.from_state_dict({k[len("stats_"):]: v for k, v in arrays.items()
                                              if k.startswith("stats_")})
        state = cls(stats.dim, divisor)
        state.stats, state.videos = stats, int(videos)
        rank = int(arrays["root_rank"])
        state._root = MatrixRoot(arrays["root_factor"], str(arrays["root_method"]), None if rank < 0 else rank,
                                 float(arrays["root_trace"]))
        if "rows" in arrays:
            state._loaded_rows = (arrays["rows"], arrays["positions"])
        return state


def frechet_point(real: FeatureStats, fake: FeatureStats, divisor: str,
                  root: MatrixRoot | None = None) -> tuple[float, list[str]]:
    """FD of the full sets from their statistics (``root``: the cached factor of the real covariance) and the
    warnings that go with it, as text.

    A covariance of N <= d samples has rank <= N - 1 < d: that is stated from N, without the eigenvalue
    solve :func:`frechet_distance` would spend on measuring the rank. With N > d both ranks are checked
    numerically.
    """
    messages = [f"{name} covariance from N = {stats.count} samples is rank-deficient (rank <= N - 1 < d = "
                f"{stats.dim}): the distance is computed but strongly biased at this N; report N beside it"
                for name, stats in (("real", real), ("fake", fake)) if stats.count <= stats.dim]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = frechet_distance(real.mean(), real.cov(divisor), fake.mean(), fake.cov(divisor), root1=root,
                                 warn_rank=not messages)
    return value, messages + [str(w.message) for w in caught]


def frechet_replicates(real: GroupedRows, fake: GroupedRows, *, divisor: str, n_boot: int, seed: int,
                       batch_bytes: int = 32 << 20) -> np.ndarray:
    """FD of ``n_boot`` resamples of both sets over videos, float64 [n_boot] (real drawn before fake each time).

    The replicates are computed in batches (:func:`frechet_distances_from_factors`, one thread) of as many as
    fit ``batch_bytes`` of weighted rows per set; the draws, and so the replicates, do not depend on it.
    """
    rng = np.random.default_rng(seed)
    weights = [(real.resample(rng), fake.resample(rng)) for _ in range(n_boot)]
    row_bytes = 8 * real.xc.shape[1] * max(len(real.xc), len(fake.xc), 1)
    step = max(1, min(n_boot, batch_bytes // row_bytes))
    replicates = np.empty(n_boot)
    for start in range(0, n_boot, step):
        part = weights[start:start + step]
        mu_r, a_r = real.weighted_batch(np.stack([w for w, _ in part]), divisor)
        mu_f, a_f = fake.weighted_batch(np.stack([w for _, w in part]), divisor)
        replicates[start:start + len(part)] = frechet_distances_from_factors(mu_r, a_r, mu_f, a_f)
    return replicates


def grouped_bootstrap_frechet(real: GroupedRows, fake: GroupedRows, point: float, *, divisor: str,
                              n_boot: int, seed: int, level: float = 0.95) -> dict[str, Any]:
    """Bootstrap interval for FD over videos (both sets resampled); see the module docstring."""
    replicates = frechet_replicates(real, fake, divisor=divisor, n_boot=n_boot, seed=seed)
    low, high = interval(point, replicates, level, CI_METHOD)
    return {"low": low, "high": high, "level": level, "method": CI_METHOD, "resampled": "videos (both sets)",
            "target": "expected distance at this N", "n_boot": n_boot, "seed": seed,
            "boot_std": float(replicates.std(ddof=1)), "bootstrap_bias": float(replicates.mean() - point)}


class FrechetMetric(Metric):
    """A Fréchet distance between Gaussians fitted to detector features (lower is better); subclasses give the
    name, the protocols (with ``dim``, ``divisor``, ``samples``, ``detector_features``, ``rows_per_video``) and
    the detector."""

    higher_is_better: ClassVar[bool] = False
    result_fields: ClassVar[tuple[str, ...]] = ("value", "n_real", "n_fake", "n_real_rows", "n_fake_rows", "error",
                                                "warnings", "ci")

    def needs_rows(self, n_boot: int) -> bool:
        return n_boot > 0

    def new_state(self, *, video_set: Any = None, detector: Any = None,
                  rows_path: str | Path | None = None) -> FrechetState:
        return FrechetState(self.protocol.dim, self.protocol.divisor, rows_path)

    def restore_state(self, arrays: dict[str, Any], videos: int) -> FrechetState:
        return FrechetState.from_arrays(arrays, divisor=self.protocol.divisor, videos=videos)

    def update(self, state: FrechetState, detector: Any, positions: list[int], batch: Any) -> None:
        features = self.protocol.detector_features(detector, batch)  # float32 [n * rows_per_video, d]
        state.update(features, np.repeat(positions, self.protocol.rows_per_video(batch)))

    def compute(self, real: FrechetState, fake: FrechetState, *, n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
        """Value, N, warnings and (with ``n_boot``) the 95% interval over videos, seeded by (``seed``, name)."""
        result: dict[str, Any] = {"value": None, "n_real": real.videos, "n_fake": fake.videos,
                                  "n_real_rows": real.stats.count, "n_fake_rows": fake.stats.count}
        if real.stats.count < 2 or fake.stats.count < 2:
            result["error"] = f"needs at least 2 {self.protocol.samples} in each set"
            return result
        divisor = self.protocol.divisor
        result["value"], result["warnings"] = frechet_point(real.stats, fake.stats, divisor, real.root())
        if n_boot and real.videos >= 2 and fake.videos >= 2:
            result["ci"] = grouped_bootstrap_frechet(real.grouped(), fake.grouped(), result["value"], divisor=divisor,
                                                     n_boot=n_boot, seed=derive_seed(seed, "bootstrap", self.name))
        return result
