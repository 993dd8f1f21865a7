"""The data path's back half: batched detector calls through each view's consumer, per-row vectors spilled to a
float16 memory-mapped file (:class:`RowStore`) where a metric needs them, and the reduction across
torch.distributed processes.

One :func:`extract` call scores one set (real or fake) for several protocols ("views") in one pass over
its videos. Each view has a consumer (``consume(positions, batch)``, ``reduce()``) that feeds the batches to a
metric's state (:mod:`benchmarks.metrics`). Under ``torchrun`` / ``accelerate launch`` each process reads its
shard (strided by index), then ``reduce`` all-reduces the statistics and gathers rows, per-video scores and
failures, ordered by the videos' positions in the set.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping
from typing import Protocol as TypingProtocol

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmarks.features.loader import ALL, VideoViews, make_loader, shard_positions
from ophora.data.sets import VideoSet

__all__ = ["FailedVideoError", "RowStore", "extract", "gather_objects", "dist_info"]

_FLOAT16_MAX = float(np.finfo(np.float16).max)


class FailedVideoError(RuntimeError):
    """A video could not be scored and the run is strict."""


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (``all_gather_object``); ``[obj]`` without a process group."""
    import torch.distributed as dist

    rank, world = dist_info()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


class RowStore:
    """Per-row feature vectors on disk: float16 [n, d], appended to a flat file and read back as a
    ``numpy.memmap``; the video position of each row (int64 [n]) stays in memory."""

    def __init__(self, path: str | Path, dim: int):
        self.path, self.dim, self.count = Path(path), dim, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")
        self._positions: list[np.ndarray] = []

    def append(self, features: np.ndarray | torch.Tensor, positions: np.ndarray) -> None:
        """Add rows ``features`` [n, d] (any float) belonging to videos ``positions`` [n]."""
        x = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features, dtype=np.float64)
        if x.size and np.abs(x).max() > _FLOAT16_MAX:
            raise ValueError(f"features up to {np.abs(x).max():.3g} exceed float16's range ({_FLOAT16_MAX}); "
                             f"per-row storage for {self.path.name} cannot hold them")
        self._file.write(np.ascontiguousarray(x, dtype=np.float16).tobytes())
        self._positions.append(np.asarray(positions, dtype=np.int64))
        self.count += len(x)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows float16 memmap [n, d], positions int64 [n]); the file stays open for more rows."""
        self._file.flush()
        positions = np.concatenate(self._positions) if self._positions else np.zeros(0, np.int64)
        if self.count == 0:
            return np.zeros((0, self.dim), np.float16), positions
        return np.memmap(self.path, dtype=np.float16, mode="r", shape=(self.count, self.dim)), positions

    @classmethod
    def from_arrays(cls, path: str | Path, rows: np.ndarray, positions: np.ndarray) -> "RowStore":
        store = cls(path, rows.shape[1])
        store.append(rows, positions)
        return store


class Consumer(TypingProtocol):
    def consume(self, positions: list[int], batch: torch.Tensor) -> None: ...
    def reduce(self) -> None: ...


def _failures(video_set: VideoSet, role: str, position: int, errors: Mapping[str, str],
              views: list[str]) -> list[dict[str, Any]]:
    """One failed entry per distinct reason: ``{set, path, key, position, views, reason}``."""
    item = video_set.items[position]
    by_reason: dict[str, list[str]] = {}
    for view, reason in errors.items():
        by_reason.setdefault(reason, []).extend(views if view == ALL else [view])
    return [{"set": role, "path": str(item.path), "key": item.key, "position": position,
             "views": sorted(set(names)), "reason": reason} for reason, names in by_reason.items()]


def extract(video_set: VideoSet, role: str, views: Mapping[str, Any], consumers: Mapping[str, Consumer], *,
            seed: int, batch_size: int = 8, workers: int | None = None, strict: bool = False,
            progress: bool = True, geometry: Any = None) -> dict[str, Any]:
    """Score this process's shard of ``video_set`` for every view, then reduce across processes.

    ``views``: name -> protocol; ``consumers``: name -> consumer (same names); ``geometry``: the evaluation
    geometry (:class:`ophora.data.geometry.Geometry`) every video is brought to first (None: none). Returns
    ``{"failed": [...], "seconds": wall time}``, failures of all processes sorted by video position. With
    ``strict`` the first failure raises :class:`FailedVideoError` naming the file and the reason.
    """
    start = time.perf_counter()
    rank, world = dist_info()
    positions = shard_positions(len(video_set), rank, world)
    dataset = VideoViews(video_set.items, views, role, seed, positions, geometry=geometry)
    failed: list[dict[str, Any]] = []
    bar = tqdm(total=len(positions), unit="video", desc=f"{role} ({', '.join(views)})",
               disable=not progress or rank != 0, dynamic_ncols=True)
    with bar:
        for batch in make_loader(dataset, batch_size, workers):
            for position, errors in batch["errors"]:
                entries = _failures(video_set, role, position, errors, list(views))
                if strict:
                    raise FailedVideoError(f"{entries[0]['path']}: {entries[0]['reason']} ({role} set; "
                                           "--strict makes failed inputs fatal)")
                failed.extend(entries)
            for name, groups in batch["inputs"].items():
                for group_positions, tensor in groups:
                    consumers[name].consume(group_positions, tensor)
            bar.update(len(batch["index"]))
    for consumer in consumers.values():
        consumer.reduce()
    failed = sorted((f for part in gather_objects(failed) for f in part), key=lambda f: (f["position"], f["reason"]))
    return {"failed": failed, "seconds": time.perf_counter() - start}
