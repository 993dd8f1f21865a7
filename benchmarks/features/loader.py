"""The data path's front half: a torch Dataset that decodes each video once, in DataLoader workers, and
prepares the input of every requested protocol; a collate that stacks equal shapes; deterministic sharding.

A video's frames are decoded with :func:`ophora.data.video.read_video` once, as the union of the frames
each protocol selects, then split per protocol and prepared (resized, scaled) in the worker. With an evaluation
geometry (:class:`ophora.data.geometry.Geometry`) the protocols select from the geometry's clip (the video
resampled by time to its frame rate, its window of frames) instead of the native frames, and every decoded frame
is brought to the geometry's size (resize filter, centre crop) before any protocol prepares it, so real and
generated videos reach every detector at one frame rate, length and size. Failures never
raise inside a worker: an unreadable video comes back as an error for all protocols (``"*"``), a video too
short for one protocol as an error for that protocol only. The main process decides what is fatal.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ophora.data.geometry import Geometry
from ophora.data.sets import VideoItem
from ophora.data.video import FrameSelection, probe, read_video

__all__ = ["ALL", "VideoViews", "collate", "make_loader", "shard_positions", "default_workers"]

ALL = "*"  # error key: the whole video failed, for every protocol


@dataclass(frozen=True)
class _Indices(FrameSelection):
    """Explicit sorted frame indices (the union of what the protocols of one video need)."""

    values: tuple[int, ...]

    def indices(self, num_frames: int, fps: float) -> np.ndarray:
        return np.asarray(self.values, dtype=np.int64)


def _reason(err: BaseException) -> str:
    return getattr(err, "reason", None) or f"{type(err).__name__}: {err}"


class VideoViews(Dataset):
    """Item i: ``{"index": position, "inputs": {view: tensor}, "errors": {view or "*": reason}}`` for the
    video at ``positions[i]`` of ``items``. ``views`` maps a name to a protocol (``frame_indices``,
    ``prepare``); ``role`` is ``"real"`` or ``"fake"``; ``seed`` drives the real clips' random offsets;
    ``geometry``: the evaluation geometry applied before the protocols (None: each video as it is)."""

    def __init__(self, items: Sequence[VideoItem], views: Mapping[str, Any], role: str, seed: int,
                 positions: Sequence[int] | None = None, geometry: Geometry | None = None):
        self.items, self.views, self.role, self.seed = items, dict(views), role, seed
        self.positions = list(range(len(items))) if positions is None else list(positions)
        self.geometry = None if geometry is None or geometry.is_native else geometry

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        position = self.positions[i]
        out: dict[str, Any] = {"index": position, "inputs": {}, "errors": {}}
        try:
            self._fill(self.items[position], out)
        except Exception as err:  # noqa: BLE001 - any failure of one file is that file's failure
            out["inputs"], out["errors"] = {}, {ALL: _reason(err)}
        return out

    def timeline(self, item: VideoItem) -> np.ndarray:
        """Source frame index of each frame the protocols may select (the geometry's clip, else every frame)."""
        info = probe(item.path, fps=getattr(item, "fps", None))  # a frame folder's rate is the set's
        if self.geometry is None:
            return np.arange(info.num_frames, dtype=np.int64)
        return self.geometry.timeline(info.num_frames, info.fps, self.role, self.seed, item.key)

    def _fill(self, item: VideoItem, out: dict[str, Any]) -> None:
        timeline = self.timeline(item)
        wanted = {}
        for name, protocol in self.views.items():
            try:
                wanted[name] = timeline[protocol.frame_indices(len(timeline), self.role, self.seed, item.key)]
            except ValueError as err:
                if self.geometry is not None:
                    err = ValueError(f"{err} (in the {self.geometry.name} geometry's clip of {len(timeline)} frames)")
                out["errors"][name] = str(err)
        if not wanted:
            return
        union = np.unique(np.concatenate(list(wanted.values())))  # source frame indices
        frames = read_video(item.path, select=_Indices(tuple(int(v) for v in union)))  # uint8 [n, H, W, 3]
        if self.geometry is not None:
            frames = self.geometry.resize(frames)
        for name, indices in wanted.items():
            out["inputs"][name] = self.views[name].prepare(frames[np.searchsorted(union, indices)])


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack each view's inputs into groups of equal shape: ``inputs[view] = [(positions, tensor [n, ...])]``;
    ``errors = [(position, {view: reason})]``; ``index`` lists the batch's positions."""
    inputs: dict[str, dict[tuple, tuple[list[int], list[torch.Tensor]]]] = {}
    for item in batch:
        for name, tensor in item["inputs"].items():
            group = inputs.setdefault(name, {}).setdefault((tuple(tensor.shape), tensor.dtype), ([], []))
            group[0].append(item["index"])
            group[1].append(tensor)
    return {
        "index": [item["index"] for item in batch],
        "errors": [(item["index"], item["errors"]) for item in batch if item["errors"]],
        "inputs": {name: [(positions, torch.stack(tensors)) for positions, tensors in groups.values()]
                   for name, groups in inputs.items()},
    }


def default_workers() -> int:
    """DataLoader workers by default: min(2, CPUs available to this process)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(2, cpus)


def make_loader(dataset: VideoViews, batch_size: int, workers: int | None = None) -> DataLoader:
    """In-order DataLoader over ``dataset`` (``batch_size`` videos per batch) with :func:`collate`."""
    workers = default_workers() if workers is None else workers
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                      prefetch_factor=2 if workers > 0 else None)


def shard_positions(n: int, rank: int, world_size: int) -> list[int]:
    """Positions of the videos process ``rank`` of ``world_size`` scores: strided, ``rank, rank + W, ...``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return list(range(rank, n, world_size))
