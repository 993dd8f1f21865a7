"""FVMD: the Fréchet distance between motion features of tracked key points (Liu et al., "Fréchet Video Motion
Distance", ICML 2024 workshop; the ``fvmd`` package, version 1.0.0).

Recipe of ``fvmd/opencv-lk``, per 16-frame window of a video (every window, stride 1, as the package's
``VideoDataset``; the same rule for real and generated videos):

1. frames made grey and resized to 256 x 256 (OpenCV, worker side; the package resizes RGB with PIL's
   bilinear filter); a 20 x 20 layout of key points tracked through the window by the tracker
   (:class:`benchmarks.detectors.tracker.LKTracker`: OpenCV's pyramidal Lucas-Kanade on detected corners, the
   named, recorded part; the package uses PIPs++, whose weights are a download) -> trajectories [16, 400, 2]
   in px;
2. velocity ``v[t] = p[t] - p[t-1]`` (``v[0] = 0``) and acceleration ``a[t] = v[t] - v[t-1]`` for t >= 2
   (``a[0] = a[1] = 0``): the package's ``calc_velocity`` and ``calc_acceleration`` applied to the velocity,
   as the paper defines it. (The package's ``tracking_fullseq`` passes the trajectories, not the velocity,
   to ``calc_acceleration``, which makes its released "acceleration" a velocity delayed by one frame.)
3. motion features (:func:`motion_histograms`, the package's ``calc_hist``, its 1D histograms): the field
   [16, 20, 20, 2] is cut into 4 x 4 x 4 cubes of 4 frames x 5 x 5 points; in each cube every vector adds its
   quantised magnitude ``ceil(log2(1 + min(|v|, 255))) / 8`` (clipped to [0, 1]) to one of 8 angle bins,
   ``floor((atan2(v_x, v_y) + pi) / (pi / 4))`` (clipped to 0..7) -> 512 values for the velocity, 512 for
   the acceleration, concatenated: one 1024-d row per window;
4. the Fréchet distance between the two sets' rows (numpy.cov's divisor N-1) with the package's
   regularisation: 1e-5 added to the diagonal of both covariances inside the matrix square root,
   ``|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr ((S1 + eps I)(S2 + eps I))^(1/2)`` (:func:`fvmd_distance`).

``fvmd/raft`` and ``fvmd/raft-small`` replace the tracker of step 1 by
:class:`benchmarks.detectors.raft_tracker.RaftTracker` (torchvision's RAFT flow chained frame to frame at the
package's grid, RGB input, weights from the registry); steps 2-4 are the same.

``value`` is the package's ``fvmd`` (velocity and acceleration together); ``velocity`` and ``acceleration`` are
its ``velocity_fvmd`` and ``acceleration_fvmd`` (the same distance on each half of the features). The state is
FID's (:class:`~benchmarks.metrics.fd.FrechetState`: float64 sufficient statistics, mergeable, cached as
reference statistics). A video of fewer than 16 frames is listed under ``failed``. Not comparable with
published FVMD numbers: the tracker differs (Lucas-Kanade, not PIPs++).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from benchmarks.detectors.raft_tracker import ARCHS, RaftConfig, RaftTracker, load_raft_tracker
from benchmarks.detectors.tracker import LKTracker, load_lk_tracker
from benchmarks.metrics.base import ShortVideoError
from benchmarks.metrics.bootstrap import GroupedRows, interval
from benchmarks.metrics.fd import CI_METHOD, FrechetMetric, FrechetState
from benchmarks.metrics.frechet import frechet_distance, matrix_root, trace_sqrt_product
from ophora.seeding import derive_seed

__all__ = ["FVMDProtocol", "FVMDRaftProtocol", "FVMD_RAFT_SMALL", "FVMD", "motion_fields", "motion_histograms",
           "motion_features", "fvmd_distance", "fvmd_distance_from_factors"]


def motion_fields(trajectories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Velocity and acceleration of trajectories float [B, S, N, 2] -> two float64 [B, S, N, 2] (see step 2)."""
    p = np.asarray(trajectories, np.float64)
    velocity = np.zeros_like(p)
    velocity[:, 1:] = p[:, 1:] - p[:, :-1]
    acceleration = np.zeros_like(p)
    acceleration[:, 2:] = velocity[:, 2:] - velocity[:, 1:-1]
    return velocity, acceleration


def motion_histograms(vectors: np.ndarray, cell_size: int = 5, cube_frames: int = 4, angle_bins: int = 8,
                      magnitude_bins: int = 256) -> np.ndarray:
    """The package's 1D motion histograms of a field float [B, S, N, 2] (N a square, (x, y) vectors) ->
    float64 [B, S // cube_frames, side // cell_size, side // cell_size, angle_bins] (step 3)."""
    v = np.asarray(vectors, np.float64)
    b, s, n, _ = v.shape
    side = int(round(np.sqrt(n)))
    if side * side != n:
        raise ValueError(f"motion field has {n} points per frame; the histograms need a square grid")
    ms, mh = s // cube_frames, side // cell_size
    v = v.reshape(b, s, side, side, 2)[:, :ms * cube_frames, :mh * cell_size, :mh * cell_size]
    angle = np.arctan2(v[..., 0], v[..., 1])
    bins = np.clip((angle + np.pi) // (2 * np.pi / angle_bins), 0, angle_bins - 1).astype(np.int64)
    levels = np.log2(magnitude_bins)
    weight = np.ceil(np.clip(np.log2(np.clip(np.linalg.norm(v, axis=-1), 0, magnitude_bins - 1) + 1), 0,
                             int(levels))) / levels
    onehot = np.zeros((*bins.shape, angle_bins))
    np.put_along_axis(onehot, bins[..., None], weight[..., None], axis=-1)
    cubes = onehot.reshape(b, ms, cube_frames, mh, cell_size, mh, cell_size, angle_bins)
    return cubes.sum(axis=(2, 4, 6))


def motion_features(velocity: np.ndarray, acceleration: np.ndarray) -> np.ndarray:
    """One row per clip: velocity histograms then acceleration histograms, each flattened -> float64 [B, 2 * k]."""
    v_hist, a_hist = motion_histograms(velocity), motion_histograms(acceleration)
    return np.concatenate([v_hist.reshape(len(v_hist), -1), a_hist.reshape(len(a_hist), -1)], axis=1)


def fvmd_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                  eps: float = 1e-5) -> float:
    """``|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr ((S1 + eps I)(S2 + eps I))^(1/2)`` (the package's
    ``calculate_frechet_distance``), computed exactly as the Fréchet distance of the regularised covariances
    minus ``2 d eps`` (float64, :func:`benchmarks.metrics.frechet.frechet_distance`)."""
    d = len(mu1)
    shift = eps * np.eye(d)
    return frechet_distance(mu1, sigma1 + shift, mu2, sigma2 + shift, warn_rank=False) - 2.0 * d * eps


def fvmd_distance_from_factors(mu1: np.ndarray, a1: np.ndarray, mu2: np.ndarray, a2: np.ndarray,
                               eps: float = 1e-5) -> float:
    """:func:`fvmd_distance` for covariances given as factors ``S = A^T A`` (A: [m, d], the bootstrap's weighted
    rows), exactly, in the span of the rows when they are fewer than d.

    Both covariances vanish outside the span of the m1 + m2 rows C = [A1; A2], so there the regularised product is
    eps^2 I and adds (d - r) eps to the trace of its square root (r: the rank of C); inside, the r x r covariances
    of the rows' coordinates in an orthonormal basis of the span carry the rest. The coordinates come from the
    k x k Gram matrix G = C C^T = U L U^T (C U L^(-1/2) is that basis, so the coordinates are G U L^(-1/2)):
    no d x k decomposition, which is what made a 1024-d replicate cost seconds (a QR of 1024 x 240: 2.1 s on a
    loaded 2-core machine, this route 0.3 s, equal to 1e-15).
    """
    d = a1.shape[1]
    if len(a1) + len(a2) >= d:
        return fvmd_distance(mu1, _gram(a1), mu2, _gram(a2), eps)
    rows = np.concatenate([a1, a2])
    gram = rows @ rows.T
    lam, u = np.linalg.eigh((gram + gram.T) / 2)
    keep = lam > lam.max(initial=0.0) * len(lam) * np.finfo(np.float64).eps
    coords = (gram @ u[:, keep]) / np.sqrt(lam[keep])  # [k, r]
    r = coords.shape[1]
    if r == 0:  # both sets are one point each: only the regularisation is left
        diff = mu1 - mu2
        return float(diff @ diff - 2.0 * d * eps)
    root = matrix_root(_gram(coords[:len(a1)]) + eps * np.eye(r), name="regularised real covariance")
    inside = trace_sqrt_product(root, _gram(coords[len(a1):]) + eps * np.eye(r))[0]
    diff = mu1 - mu2
    return float(diff @ diff + np.einsum("ij,ij->", a1, a1) + np.einsum("ij,ij->", a2, a2)
                 - 2.0 * (inside + (d - r) * eps))


def _gram(a: np.ndarray) -> np.ndarray:
    """A^T A, symmetrised against round-off."""
    g = a.T @ a
    return (g + g.T) / 2


@dataclass(frozen=True)
class FVMDProtocol:
    """FVMD with the Lucas-Kanade tracker; every 16-frame window of every video is one sample."""

    shipped_weights: ClassVar[bool] = True  # nothing to fetch: the tracker is OpenCV's, a dependency of the suite

    name: str = "fvmd/opencv-lk"
    version: str = "1"
    metric: str = "fvmd"
    definition: str = "fvmd 1.0.0 (Liu et al. 2024): velocity and acceleration of tracked key points, 1D " \
                      "motion histograms, Fréchet distance"
    detector: str = "opencv-lk: benchmarks.detectors.tracker.LKTracker (cv2.calcOpticalFlowPyrLK, window 21, " \
                    "3 pyramid levels, on the strongest cv2.goodFeaturesToTrack corner of each grid cell; lost " \
                    "points held); the package's tracker is PIPs++"
    input: str = "uint8 grey [T, 256, 256]"
    resize: str = "grey (cv2.cvtColor RGB2GRAY: 0.299 R + 0.587 G + 0.114 B), then cv2.resize to 256x256: " \
                  "INTER_LINEAR when enlarging, INTER_AREA when either side shrinks; in the DataLoader workers"
    clip_length: int = 16
    window_stride: int = 1
    windows: str = "every window of clip_length consecutive frames at window_stride (the package's VideoDataset), " \
                   "the same rule for real and generated videos; each window one sample"
    points: int = 400
    velocity: str = "v[t] = p[t] - p[t-1], v[0] = 0"
    acceleration: str = "a[t] = v[t] - v[t-1] for t >= 2, a[0] = a[1] = 0 (the paper's definition; the " \
                        "package's tracking_fullseq applies calc_acceleration to the positions instead)"
    histogram: str = "1d: 8 angle bins floor((atan2(v_x, v_y) + pi) / (pi/4)) weighted by ceil(log2(1 + " \
                     "min(|v|, 255))) / 8, summed over cubes of 4 frames x 5 x 5 points"
    cell_size: int = 5
    cube_frames: int = 4
    angle_bins: int = 8
    features: str = "velocity histograms then acceleration histograms, 4 x 4 x 4 x 8 each, 1024-d"
    dim: int = 1024
    samples: str = "windows"
    divisor: str = "N-1"
    eps: float = 1e-5
    distance: str = "Fréchet with eps I added to both covariances inside the matrix square root (the package's " \
                    "calculate_frechet_distance)"
    comparable: str = "not comparable with published FVMD (Lucas-Kanade tracker instead of PIPs++)"

    def __post_init__(self) -> None:
        layout = (self.clip_length, self.points, self.cell_size, self.cube_frames, self.angle_bins, self.dim)
        if layout != (16, 400, 5, 4, 8, 1024):
            raise ValueError(f"{self.name}: the histogram layout is the package's: clip_length 16, 400 points, cells "
                             f"of 5 x 5 points, cubes of 4 frames, 8 angle bins, 1024-d; got {layout}")
        if self.window_stride < 1:
            raise ValueError(f"{self.name}: window_stride must be at least 1, got {self.window_stride}")

    def windows_in(self, num_frames: int) -> int:
        return (num_frames - self.clip_length) // self.window_stride + 1

    def frame_indices(self, num_frames: int, role: str, seed: int, key: str) -> np.ndarray:
        """Frames 0 .. the end of the last whole window (same rule for real and generated videos)."""
        if num_frames < self.clip_length:
            raise ShortVideoError(f"has {num_frames} frames; {self.name} needs {self.clip_length} consecutive "
                                  "frames")
        last = (self.windows_in(num_frames) - 1) * self.window_stride + self.clip_length
        return np.arange(last, dtype=np.int64)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> uint8 grey [T, 256, 256] (worker side)."""
        import cv2

        shrink = frames.shape[1] > 256 or frames.shape[2] > 256
        mode = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        grey = [cv2.resize(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), (256, 256), interpolation=mode)
                for f in frames]
        return torch.from_numpy(np.stack(grey))

    def rows_per_video(self, batch: torch.Tensor) -> int:
        return self.windows_in(int(batch.shape[1]))

    def detector_features(self, tracker: LKTracker, batch: torch.Tensor) -> np.ndarray:
        """[B, T, 256, 256] -> float64 [B * windows, 1024] (video-major, windows in order)."""
        rows = []
        for frames in batch.numpy():
            clips = [tracker(frames[s:s + self.clip_length])[0]
                     for s in range(0, self.windows_in(len(frames)) * self.window_stride, self.window_stride)]
            rows.append(motion_features(*motion_fields(np.stack(clips))))
        return np.concatenate(rows)

    def weights_entry(self, cfg: Any) -> str | None:
        """The tracker has no weights file."""
        return None

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        return load_lk_tracker(weights, self.name)


@dataclass(frozen=True)
class FVMDRaftProtocol(FVMDProtocol):
    """FVMD with the learned tracker: torchvision's RAFT flow, chained frame to frame at the package's grid."""

    shipped_weights: ClassVar[bool] = False  # the published RAFT file is a download (python -m ophora.weights fetch)

    name: str = "fvmd/raft"
    version: str = "1"
    arch: str = "raft_large"
    num_flow_updates: int = 12
    detector: str = "torchvision-raft: benchmarks.detectors.raft_tracker.RaftTracker (torchvision.models." \
                    "optical_flow.raft_large, weights raft_large:C_T_SKHT_V2, 12 flow updates); the flow from each " \
                    "frame to the next sampled bilinearly at each point and added, on the package's 20 x 20 grid; " \
                    "points leaving the frame held; the package's tracker is PIPs++"
    input: str = "uint8 RGB [T, 256, 256, 3]"
    resize: str = "cv2.resize of the RGB frames to 256x256: INTER_LINEAR when enlarging, INTER_AREA when either " \
                  "side shrinks; in the DataLoader workers; then x / 255, (x - 0.5) / 0.5 (torchvision's " \
                  "OpticalFlow transform) in the tracker"
    comparable: str = "not comparable with published FVMD (RAFT flow chained frame to frame instead of PIPs++)"

    def __post_init__(self) -> None:
        super().__post_init__()
        RaftConfig(arch=self.arch, num_flow_updates=self.num_flow_updates)  # refuses an unknown arch

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> uint8 RGB [T, 256, 256, 3] (worker side; RAFT reads colour)."""
        import cv2

        shrink = frames.shape[1] > 256 or frames.shape[2] > 256
        mode = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return torch.from_numpy(np.stack([cv2.resize(np.ascontiguousarray(f), (256, 256), interpolation=mode)
                                          for f in frames]))

    def detector_features(self, tracker: RaftTracker, batch: torch.Tensor) -> np.ndarray:
        """[B, T, 256, 256, 3] -> float64 [B * windows, 1024]; the flow of each frame pair of a video is computed
        once for all its windows (:meth:`RaftTracker.track_windows`)."""
        rows = []
        for frames in batch.numpy():
            clips, _ = tracker.track_windows(frames, self.clip_length, self.window_stride)
            rows.append(motion_features(*motion_fields(np.stack(clips))))
        return np.concatenate(rows)

    def weights_entry(self, cfg: Any) -> str | None:
        return ARCHS[self.arch]

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        config = RaftConfig(arch=self.arch, num_flow_updates=self.num_flow_updates)
        return load_raft_tracker(weights, self.name, config, seed=cfg.detector_seed)


FVMD_RAFT_SMALL = FVMDRaftProtocol(
    name="fvmd/raft-small", arch="raft_small",
    detector="torchvision-raft: benchmarks.detectors.raft_tracker.RaftTracker (torchvision.models.optical_flow."
             "raft_small, weights raft_small:C_T_V2, 12 flow updates); the flow from each frame to the next sampled "
             "bilinearly at each point and added, on the package's 20 x 20 grid; points leaving the frame held; the "
             "package's tracker is PIPs++")


class FVMD(FrechetMetric):
    """Fréchet Video Motion Distance over 16-frame windows (lower is better)."""

    name = "fvmd"
    display_name = "FVMD"
    protocols = (FVMDProtocol(), FVMDRaftProtocol(), FVMD_RAFT_SMALL)
    result_fields = FrechetMetric.result_fields + ("velocity", "acceleration")

    def detector_weights(self, cfg: Any) -> str | None:
        return self.protocol.weights_entry(cfg)

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        return self.protocol.load_detector(weights, cfg)

    def _distance(self, mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray,
                  part: slice = slice(None)) -> float:
        return fvmd_distance(mu1[part], s1[part, part], mu2[part], s2[part, part], self.protocol.eps)

    def compute(self, real: FrechetState, fake: FrechetState, *, n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
        """FVMD and its velocity and acceleration parts, N, warnings and (with ``n_boot``) the 95% interval over
        videos (all windows of a drawn video together)."""
        result: dict[str, Any] = {"value": None, "n_real": real.videos, "n_fake": fake.videos,
                                  "n_real_rows": real.stats.count, "n_fake_rows": fake.stats.count}
        if real.stats.count < 2 or fake.stats.count < 2:
            return {**result, "error": f"needs at least 2 {self.protocol.samples} in each set"}
        divisor, half = self.protocol.divisor, self.protocol.dim // 2
        mu1, s1, mu2, s2 = real.stats.mean(), real.stats.cov(divisor), fake.stats.mean(), fake.stats.cov(divisor)
        result["value"] = self._distance(mu1, s1, mu2, s2)
        result["velocity"] = self._distance(mu1, s1, mu2, s2, slice(0, half))
        result["acceleration"] = self._distance(mu1, s1, mu2, s2, slice(half, None))
        result["warnings"] = [f"{name} covariance from N = {stats.count} windows has rank <= N - 1 < d = "
                              f"{stats.dim}: the eps-regularised distance is computed but biased at this N; report "
                              "N beside it" for name, stats in (("real", real.stats), ("fake", fake.stats))
                              if stats.count <= stats.dim]
        if n_boot and real.videos >= 2 and fake.videos >= 2:
            result["ci"] = self._interval(real.grouped(), fake.grouped(), result["value"], n_boot,
                                          derive_seed(seed, "bootstrap", self.name))
        return result

    def _interval(self, real: GroupedRows, fake: GroupedRows, point: float, n_boot: int, seed: int) -> dict[str, Any]:
        """Shifted bootstrap interval over videos (as FID's), each replicate the eps-regularised distance."""
        rng, divisor = np.random.default_rng(seed), self.protocol.divisor
        replicates = np.empty(n_boot)
        for b in range(n_boot):
            mu_r, a_r = real.weighted(real.resample(rng), divisor)
            mu_f, a_f = fake.weighted(fake.resample(rng), divisor)
            replicates[b] = fvmd_distance_from_factors(mu_r, a_r, mu_f, a_f, self.protocol.eps)
        low, high = interval(point, replicates, 0.95, CI_METHOD)
        return {"low": low, "high": high, "level": 0.95, "method": CI_METHOD, "resampled": "videos (both sets)",
                "target": "expected distance at this N", "n_boot": n_boot, "seed": seed,
                "boot_std": float(replicates.std(ddof=1)), "bootstrap_bias": float(replicates.mean() - point)}
