"""Point trackers behind the motion metric (:mod:`benchmarks.metrics.fvmd`): trajectories of key points in a clip.

:class:`LKTracker` (``opencv-lk``): OpenCV's pyramidal Lucas-Kanade (``cv2.calcOpticalFlowPyrLK``) on corners
detected in the first frame (``cv2.goodFeaturesToTrack``). It needs no weights and no download and is
deterministic: the same frames give the same trajectories bit for bit.

Point layout. FVMD's histograms (``fvmd.extract_motion_features.calc_hist``) read the N tracked points as a
sqrt(N) x sqrt(N) grid and pool them in spatial cells, so the points must keep a grid order. The ``fvmd``
package tracks the grid itself (``8 + i / (n - 1) * (size - 16)`` px, i = 0..n-1, n = 20 at 256 px). Here each
grid point is replaced by the strongest detected corner of its grid cell (the pixels nearer to it than to any
other grid point); a cell without a corner keeps its grid point. Corners are where Lucas-Kanade is well
posed, so this tracks the same regions of the image more reliably than bare grid points.

Tracking: frame to frame (t - 1 -> t), each point from its last position. A point that Lucas-Kanade loses
(status 0) is held at its last position for the rest of the clip (zero velocity from then on); the fraction
lost is returned beside the trajectories.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from benchmarks.detectors import DetectorInfo, weights_mode

__all__ = ["LKConfig", "LKTracker", "grid_points", "load_lk_tracker"]


@dataclass(frozen=True)
class LKConfig:
    """Every setting of :class:`LKTracker` (its identity: hashed into :class:`DetectorInfo`)."""

    grid: int = 20  # points per side: grid * grid points
    margin: float = 8.0  # px from the border to the outermost grid points (the fvmd package's 8)
    max_corners: int = 0  # goodFeaturesToTrack maxCorners (0: no limit)
    quality_level: float = 0.01
    min_distance: float = 3.0
    block_size: int = 3
    win_size: int = 21  # calcOpticalFlowPyrLK window, px (square)
    max_level: int = 3  # pyramid levels above the full resolution
    max_iterations: int = 30
    epsilon: float = 0.01
    min_eig_threshold: float = 1e-4


def grid_points(size: tuple[int, int], grid: int, margin: float) -> np.ndarray:
    """The fvmd package's grid: float32 [grid * grid, 2] (x, y), row-major (y outer, x inner)."""
    h, w = size
    ys = margin + np.arange(grid) / (grid - 1) * (h - 2 * margin)
    xs = margin + np.arange(grid) / (grid - 1) * (w - 2 * margin)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


class LKTracker(torch.nn.Module):
    """Pyramidal Lucas-Kanade on detected corners; a module without parameters (so the evaluation moves and
    switches it like any detector). ``forward(frames)``: uint8 [T, H, W] grey frames -> (trajectories float32
    [T, grid * grid, 2] in px (x, y), lost fraction)."""

    def __init__(self, config: LKConfig = LKConfig()):
        super().__init__()
        self.config = config

    def start_points(self, first: np.ndarray) -> np.ndarray:
        """float32 [grid * grid, 2]: per grid cell the strongest corner of ``first`` (uint8 [H, W]), else the
        grid point."""
        import cv2

        c = self.config
        points = grid_points(first.shape, c.grid, c.margin)
        corners = cv2.goodFeaturesToTrack(first, maxCorners=c.max_corners, qualityLevel=c.quality_level,
                                          minDistance=c.min_distance, blockSize=c.block_size)
        if corners is None:
            return points
        corners = corners.reshape(-1, 2)  # strongest first
        h, w = first.shape
        col = np.rint((corners[:, 0] - c.margin) / ((w - 2 * c.margin) / (c.grid - 1))).astype(np.int64)
        row = np.rint((corners[:, 1] - c.margin) / ((h - 2 * c.margin) / (c.grid - 1))).astype(np.int64)
        inside = (col >= 0) & (col < c.grid) & (row >= 0) & (row < c.grid)
        cell = (row * c.grid + col)[inside]
        first_of_cell = np.unique(cell, return_index=True)[1]  # index of the strongest corner per cell
        points[cell[first_of_cell]] = corners[inside][first_of_cell]
        return points

    def forward(self, frames: Any) -> tuple[np.ndarray, float]:
        import cv2

        frames = np.ascontiguousarray(frames.numpy() if isinstance(frames, torch.Tensor) else frames)
        if frames.dtype != np.uint8 or frames.ndim != 3 or len(frames) < 2:
            raise ValueError(f"LKTracker takes uint8 grey frames [T >= 2, H, W]; got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        c = self.config
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, c.max_iterations, c.epsilon)
        points = self.start_points(frames[0])
        trajectories = np.empty((len(frames), len(points), 2), np.float32)
        trajectories[0] = points
        alive = np.ones(len(points), bool)
        for t in range(1, len(frames)):
            moved, status, _ = cv2.calcOpticalFlowPyrLK(frames[t - 1], frames[t], points.reshape(-1, 1, 2), None,
                                                        winSize=(c.win_size, c.win_size), maxLevel=c.max_level,
                                                        criteria=criteria, minEigThreshold=c.min_eig_threshold)
            alive &= status.reshape(-1).astype(bool) & np.isfinite(moved.reshape(-1, 2)).all(1)
            points = np.where(alive[:, None], moved.reshape(-1, 2), points).astype(np.float32)
            trajectories[t] = points
        return trajectories, float(1.0 - alive.mean())

    def sha256(self) -> str:
        """Digest of the tracker's identity: its class, settings and the OpenCV version that runs it."""
        import cv2

        payload = {"tracker": type(self).__name__, "config": asdict(self.config), "opencv": cv2.__version__}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_lk_tracker(weights: Any, protocol: str, config: LKConfig = LKConfig()) -> tuple[LKTracker, DetectorInfo]:
    """The Lucas-Kanade tracker and its :class:`DetectorInfo` (``opencv-lk:<opencv version>``, the digest of its
    settings). It has no weights: ``random-init`` and ``pretrained`` both give the same tracker; a file is refused."""
    import cv2

    if weights_mode(weights) not in ("random-init", "pretrained"):
        raise ValueError(f"{protocol}: the OpenCV Lucas-Kanade tracker has no weights, so it cannot load "
                         f"{getattr(weights, 'path', weights)}; run without --weights/--detector for this metric")
    tracker = LKTracker(config)
    return tracker, DetectorInfo(detector="opencv-lk", identifier=f"opencv-lk:opencv={cv2.__version__}",
                                 sha256=tracker.sha256(), comparable=False, protocol=protocol)
