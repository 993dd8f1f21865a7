"""The learned point tracker behind the motion metric (``fvmd/raft``): torchvision's RAFT optical flow, chained.

:class:`RaftTracker` has the interface of :class:`benchmarks.detectors.tracker.LKTracker`: ``forward(frames)``
takes one window of frames and returns (trajectories float32 [T, grid * grid, 2] in px (x, y), lost fraction).

What it is. RAFT (Teed and Deng, ECCV 2020) estimates a dense flow field between two frames; the network is
torchvision's (``torchvision.models.optical_flow.raft_large`` / ``raft_small``), its published weights the
registry's ``raft_large:C_T_SKHT_V2`` (torchvision's default for RAFT-large) and ``raft_small:C_T_V2``. Points
are tracked by chaining the flow frame to frame, the standard way to turn dense flow into point tracks: the
flow from frame t - 1 to frame t is sampled bilinearly at each point's position in frame t - 1 and added to it.
This is not PIPs++, the ``fvmd`` package's tracker (a learned multi-frame point tracker that estimates each
point's trajectory across frames jointly rather than by adding up pairwise flows), so FVMD values with this
tracker are not comparable with published FVMD.

Points: the ``fvmd`` package's own layout, a 20 x 20 grid at ``margin + i / (n - 1) * (size - 2 margin)`` px
(margin 8 at 256 px; :func:`benchmarks.detectors.tracker.grid_points`). A dense flow needs no corner to be well
posed, so the grid points themselves are tracked, as the package does.

Input: uint8 grey [T, H, W] (replicated to the three channels) or uint8 RGB [T, H, W, 3]; preprocessed as
torchvision's ``Raft_*_Weights.transforms()`` (``OpticalFlow``: x / 255, then (x - 0.5) / 0.5, i.e. [-1, 1]);
sides not divisible by 8 are padded by edge replication (split evenly, as the original RAFT's ``InputPadder``)
and the flow cropped back. torchvision's RAFT needs at least 128 x 128 px (its correlation pyramid); FVMD
resizes every frame to 256 x 256.

Points leaving the frame are handled as the Lucas-Kanade tracker handles lost points: a point whose new
position is outside [0, W - 1] x [0, H - 1] (or not finite) is held at its last position for the rest of the
window (zero velocity from then on); the fraction lost is returned beside the trajectories.

Windows that share frames share flows: :meth:`RaftTracker.track_windows` computes the flow of each consecutive
frame pair of a video once and chains it for every window (FVMD's stride-1 windows of a long video cost about
one flow per frame, not one per frame per window). Each window starts from the grid, so the trajectories equal
``forward`` on that window.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.detectors import (
    DetectorInfo,
    custom_info,
    file_info,
    random_info,
    read_state_dict,
    seeded_state_dict,
    weights_mode,
)
from benchmarks.detectors.tracker import grid_points
from ophora.weights import resolve

__all__ = ["ARCHS", "DETECTOR", "MIN_SIZE", "RaftConfig", "RaftTracker", "build_raft", "load_raft_state",
           "load_raft_tracker", "raft_input", "bilinear_sample", "chain_flows"]

DETECTOR = "torchvision-raft"
MIN_SIZE = 128  # torchvision's Raft_*_Weights meta["min_size"]: the correlation pyramid needs 16 px at 1/8 scale
# arch -> weights-registry entry of its published file (torchvision's DEFAULT weights of that builder)
ARCHS = {"raft_large": "raft_large:C_T_SKHT_V2", "raft_small": "raft_small:C_T_V2"}


@dataclass(frozen=True)
class RaftConfig:
    """Every setting of :class:`RaftTracker` besides its weights."""

    arch: str = "raft_large"  # torchvision builder: raft_large or raft_small
    grid: int = 20  # points per side: grid * grid points (the fvmd package's 20 at 256 px)
    margin: float = 8.0  # px from the border to the outermost grid points (the fvmd package's 8)
    num_flow_updates: int = 12  # RAFT's recurrent refinements (torchvision's default); the last flow is used
    pair_batch: int = 8  # frame pairs per RAFT call (memory only; results do not depend on it)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"RAFT tracker: arch must be one of {sorted(ARCHS)}, got {self.arch!r}")
        if self.grid < 2 or self.num_flow_updates < 1 or self.pair_batch < 1:
            raise ValueError(f"RAFT tracker: grid >= 2, num_flow_updates >= 1 and pair_batch >= 1 are needed; got "
                             f"{self.grid}, {self.num_flow_updates}, {self.pair_batch}")


def build_raft(arch: str) -> torch.nn.Module:
    """torchvision's RAFT of ``arch`` with its own default initialisation (never downloads: ``weights=None``)."""
    from torchvision.models.optical_flow import raft_large, raft_small

    builders = {"raft_large": raft_large, "raft_small": raft_small}
    if arch not in builders:
        raise ValueError(f"RAFT tracker: arch must be one of {sorted(builders)}, got {arch!r}")
    return builders[arch](weights=None, progress=False)


def load_raft_state(model: torch.nn.Module, path: str | os.PathLike, arch: str) -> torch.nn.Module:
    """Load the state dict in ``path`` into ``model`` (torchvision's ``arch``), strictly; a state dict of another
    architecture is refused naming the file, the keys it lacks or has in excess and the shapes that differ."""
    path = Path(path)
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "",
                 f"{len(shapes)} of another shape (e.g. {shapes[:2]})" if shapes else ""]
        raise ValueError(f"{path}: not a state dict of torchvision's {arch} (torchvision.models.optical_flow."
                         f"{arch}): {'; '.join(p for p in parts if p)} keys")
    model.load_state_dict(state)
    return model


def raft_input(frames: Any) -> torch.Tensor:
    """uint8 grey [T, H, W] or RGB [T, H, W, 3] (numpy or tensor) -> float32 [T, 3, H, W] in [-1, 1], exactly
    torchvision's ``OpticalFlow`` transform (``convert_image_dtype`` then ``normalize(0.5, 0.5)``)."""
    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    if x.dtype != torch.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] != 3):
        raise ValueError(f"RAFT tracker takes uint8 frames, grey [T, H, W] or RGB [T, H, W, 3]; got {x.dtype} "
                         f"{tuple(x.shape)}")
    x = x[:, None].expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return (((x.float() / 255.0) - 0.5) / 0.5).contiguous()


def bilinear_sample(field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Values of ``field`` [C, H, W] at ``points`` [P, 2] (x, y) in px (pixel centres at integers), bilinear;
    points are clamped to the image. -> [P, C] in ``field``'s dtype."""
    _, h, w = field.shape
    x = points[:, 0].clamp(0, w - 1)
    y = points[:, 1].clamp(0, h - 1)
    x0 = x.floor().clamp(0, max(w - 2, 0)).long()
    y0 = y.floor().clamp(0, max(h - 2, 0)).long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    wx, wy = (x - x0).to(field.dtype), (y - y0).to(field.dtype)
    top = field[:, y0, x0] * (1 - wx) + field[:, y0, x1] * wx
    bottom = field[:, y1, x0] * (1 - wx) + field[:, y1, x1] * wx
    return (top * (1 - wy) + bottom * wy).T


def chain_flows(points: Any, flows: Any) -> tuple[np.ndarray, np.ndarray]:
    """Track ``points`` [P, 2] (x, y, px, in frame 0) through ``flows`` [T - 1, 2, H, W] (flow k: from frame k to
    frame k + 1, channels (dx, dy), px) -> (trajectories float64 [T, P, 2], alive bool [P]).

    ``p[t] = p[t-1] + flow[t-1](p[t-1])`` (bilinear), in float64. A point whose new position is not finite or
    outside [0, W - 1] x [0, H - 1] is lost: held at its last position from then on (as the Lucas-Kanade tracker
    holds the points it loses)."""
    flows = torch.as_tensor(flows).to(torch.float64)
    p = torch.as_tensor(points).to(device=flows.device, dtype=torch.float64).reshape(-1, 2).clone()
    if flows.ndim != 4 or flows.shape[1] != 2:
        raise ValueError(f"flows must be [T - 1, 2, H, W], got {tuple(flows.shape)}")
    h, w = flows.shape[-2:]
    trajectories = torch.empty((len(flows) + 1, len(p), 2), dtype=torch.float64, device=flows.device)
    trajectories[0] = p
    alive = torch.ones(len(p), dtype=torch.bool, device=flows.device)
    for t, flow in enumerate(flows, start=1):
        moved = p + bilinear_sample(flow, p)
        inside = (torch.isfinite(moved).all(1) & (moved[:, 0] >= 0) & (moved[:, 0] <= w - 1) & (moved[:, 1] >= 0)
                  & (moved[:, 1] <= h - 1))
        alive &= inside
        p = torch.where(alive[:, None], moved, p)
        trajectories[t] = p
    return trajectories.cpu().numpy(), alive.cpu().numpy()


class RaftTracker(torch.nn.Module):
    """Point tracks from torchvision's RAFT flow chained frame to frame (see the module's docstring).
    ``forward(frames)``: uint8 [T, H, W] grey or [T, H, W, 3] RGB -> (trajectories float32 [T, grid * grid, 2]
    in px (x, y), lost fraction). The RAFT network is a submodule, so the evaluation moves it like any detector.
    ``flow_fn`` replaces the network (``(img1, img2) -> flow [B, 2, H, W]`` on [-1, 1] inputs), for tests."""

    def __init__(self, raft: torch.nn.Module | None, config: RaftConfig = RaftConfig(),
                 flow_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        if raft is None and flow_fn is None:
            raise ValueError("RaftTracker needs a RAFT network or a flow_fn")
        self.raft = raft
        self.config = config
        self.flow_fn = flow_fn

    def start_points(self, size: tuple[int, int]) -> np.ndarray:
        """float32 [grid * grid, 2]: the fvmd package's grid for frames of ``size`` (H, W)."""
        return grid_points(size, self.config.grid, self.config.margin)

    @torch.inference_mode()
    def flows(self, frames: Any) -> torch.Tensor:
        """float32 [T - 1, 2, H, W]: RAFT's flow from each frame to the next (the last of its refinements), on the
        tracker's device."""
        x = raft_input(frames)
        t, _, h, w = x.shape
        if t < 2:
            raise ValueError(f"RAFT tracker needs at least 2 frames, got {t}")
        if self.flow_fn is None and min(h, w) < MIN_SIZE:
            raise ValueError(f"RAFT tracker: frames of {h}x{w} px are too small for torchvision's RAFT (at least "
                             f"{MIN_SIZE}x{MIN_SIZE}); resize them first (FVMD resizes to 256x256)")
        pad_h, pad_w = -h % 8, -w % 8
        pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        device = next(self.parameters(), torch.empty(0)).device
        out = []
        for start in range(0, t - 1, self.config.pair_batch):
            stop = min(start + self.config.pair_batch, t - 1)
            pair = x[start:stop + 1].to(device)
            if pad_h or pad_w:
                pair = F.pad(pair, pads, mode="replicate")
            if self.flow_fn is not None:
                flow = self.flow_fn(pair[:-1], pair[1:])
            else:
                flow = self.raft(pair[:-1], pair[1:], num_flow_updates=self.config.num_flow_updates)[-1]
            out.append(flow[:, :, pads[2]:pads[2] + h, pads[0]:pads[0] + w].float())
        return torch.cat(out)

    def forward(self, frames: Any) -> tuple[np.ndarray, float]:
        trajectories, lost = self.track_windows(frames, len(frames), 1)
        return trajectories[0], lost[0]

    def track_windows(self, frames: Any, clip_length: int, stride: int = 1) -> tuple[list[np.ndarray], list[float]]:
        """Every window of ``clip_length`` frames at ``stride`` of one video, each tracked from the grid:
        (trajectories float32 [clip_length, grid * grid, 2] per window, lost fraction per window). The flow of
        each consecutive frame pair is computed once for all windows."""
        n = len(frames)
        if clip_length < 2 or stride < 1 or n < clip_length:
            raise ValueError(f"RAFT tracker: windows of {clip_length} >= 2 frames at stride {stride} >= 1 need at "
                             f"least {clip_length} frames, got {n}")
        last = (n - clip_length) // stride * stride + clip_length  # frames that some window uses
        flows = self.flows(frames[:last])
        points = self.start_points(tuple(flows.shape[-2:]))
        trajectories, lost = [], []
        for start in range(0, last - clip_length + 1, stride):
            track, alive = chain_flows(points, flows[start:start + clip_length - 1])
            trajectories.append(track.astype(np.float32))
            lost.append(float(1.0 - alive.mean()))
        return trajectories, lost


def load_raft_tracker(weights: Any, protocol: str, config: RaftConfig = RaftConfig(),
                      seed: int = 0) -> tuple[RaftTracker, DetectorInfo]:
    """The RAFT tracker (eval mode) and its :class:`DetectorInfo`.

    ``weights``: ``"random-init"`` (torchvision's architecture with seeded values, :func:`seeded_state_dict`;
    recorded as ``random-init:<arch>:seed=<seed>`` with the digest of its state dict), ``"pretrained"`` (the
    registry's file for the architecture, :data:`ARCHS`, from $OPHORA_WEIGHTS_DIR or the cache dir, its sha256
    verified; never downloaded), a file path verified against that entry, or
    :class:`~benchmarks.detectors.CustomWeights` (a user's state dict for the architecture, ``custom:<file>``).
    A state dict that does not fit the architecture is refused naming the file (:func:`load_raft_state`)."""
    mode = weights_mode(weights)
    model = build_raft(config.arch)
    if mode == "random-init":
        model.load_state_dict(seeded_state_dict(model.state_dict(), seed))
        info = random_info(DETECTOR, config.arch, seed, model, protocol)
    elif mode == "custom":
        load_raft_state(model, weights.path, config.arch)
        info = custom_info(DETECTOR, weights.path, protocol)
    else:
        entry = ARCHS[config.arch]
        path = resolve(entry, None if mode == "pretrained" else Path(weights))
        load_raft_state(model, path, config.arch)
        info = file_info(DETECTOR, entry, path, protocol)
    return RaftTracker(model, config).eval(), info
