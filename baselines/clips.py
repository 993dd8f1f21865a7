"""Training clips of the baselines and the latent cache they are trained from.

Clips: frames taken every ``frame_interval`` source frames from the clip start, resized to cover ``height`` x
``width`` (bilinear, antialiased) and centre-cropped. ``data.window: first`` caches the first window of ``frames``
frames; ``random`` (Endora's and Open-Sora's random window) caches the grid frames of the clip's first
``max_window_starts`` windows, and each step takes one window of them (:meth:`LatentCache.draw`); ``data.flip``
caches the mirrored clip too. The per-frame SD VAE encodes frames independently, so a window or a single frame
(Endora's images, ``data.image_num``) of the cached latents is exactly the encoding of those frames. A clip
shorter than one window is skipped, with its reason in ``cache/index.json``; a manifest without any usable clip
is an error.

Cache (``RUN/cache/``): ``cache.json`` (what made it), ``shards/NNNNN.safetensors`` + ``.json`` and ``index.json``:
per clip the VAE posterior (mean, logvar) of its frames and the recipe's per-clip tensors (time first), encoded
once; with ``flip`` the mirrored clip's under ``flip.<name>``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from baselines.presets import DataSpec
from ophora.data import manifests
from ophora.data.atomic import atomic_path, atomic_write_text
from ophora.data.video import Strided, VideoDecodeError, probe, read_video

__all__ = ["TrainClip", "read_training_clips", "load_window", "load_frames", "usable_windows", "LatentCache",
           "build_cache", "SHARDS", "FLIP"]

SHARDS, FLIP = "shards", "flip."


@dataclass(frozen=True)
class TrainClip:
    """One training clip: ``key`` (its clip id), ``text`` (instruction or raw caption) and the mp4 ``path``."""

    key: str
    text: str
    path: Path


def read_training_clips(manifest: str | os.PathLike) -> tuple[list[TrainClip], str]:
    """Clips of an Ophora-160K CSV (``clip id,instruction`` + ``clips/``) or of a raw narrated set
    (``clip_id,caption,...,path``: the clip file with its narration as text). Returns (clips, kind)."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"training manifest not found: expected a CSV at {manifest.resolve()}")
    with open(manifest, encoding="utf-8-sig") as handle:
        header = [c.strip() for c in handle.readline().split(",")]
    if "caption" in header and "clip_id" in header:
        return [TrainClip(c.clip_id, c.caption, c.path) for c in manifests.read_raw_set(manifest)], "raw"
    return [TrainClip(c.clip_id, c.instruction, c.path) for c in manifests.read_instruction_set(manifest)], \
        "instructions"


def load_window(path: Path, data: DataSpec) -> torch.Tensor:
    """The clip's first window: float32 [T, 3, H, W] in [-1, 1] (resized to cover, centre-cropped)."""
    return _fit(read_video(path, select=Strided(data.frames, data.frame_interval)), data)


def load_frames(path: Path, data: DataSpec) -> torch.Tensor:
    """The frames the cache holds for a clip: its first window (``window: first``) or the ``frame_interval`` grid
    frames of its first ``max_window_starts`` windows (``random``): float32 [K, 3, H, W] in [-1, 1], K >=
    ``frames``."""
    if data.window == "first":
        return load_window(path, data)
    grid = (probe(path).num_frames - 1) // data.frame_interval + 1  # grid frames the clip holds
    if grid < data.frames:
        raise ValueError(f"clip has {grid} frames every {data.frame_interval}; a window needs {data.frames}")
    count = min(grid, data.frames + data.max_window_starts - 1)
    return _fit(read_video(path, select=Strided(count, data.frame_interval)), data)


def _fit(video: np.ndarray, data: DataSpec) -> torch.Tensor:
    """uint8 [T, H0, W0, 3] -> float32 [T, 3, H, W] in [-1, 1], resized to cover and centre-cropped."""
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    scale = max(data.height / x.shape[2], data.width / x.shape[3])
    size = (max(data.height, round(x.shape[2] * scale)), max(data.width, round(x.shape[3] * scale)))
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - data.height) // 2, (size[1] - data.width) // 2
    return x[:, :, top:top + data.height, left:left + data.width].clamp(-1, 1).contiguous()


def usable_windows(clips: list[TrainClip], data: DataSpec, limit: int) -> list[torch.Tensor]:
    """Up to ``limit`` loadable windows, evenly spaced over the clips (for fitting a tiny VAE)."""
    picks = sorted({round(i) for i in np.linspace(0, len(clips) - 1, min(limit, len(clips)))})
    windows = []
    for i in picks:
        try:
            windows.append(load_window(clips[i].path, data))
        except (VideoDecodeError, ValueError):
            continue
    return windows



class LatentCache:
    """Per clip: ``mean``/``logvar`` [T, C, h, w] of the VAE posterior and the recipe's tensors, in shards."""

    def __init__(self, root: Path):
        self.root = root
        self._handle = lru_cache(maxsize=32)(self._open)  # open shards, per cache
        index = json.loads((root / "index.json").read_text())
        self.items, self.skipped = index["items"], index["skipped"]
        if not self.items:
            reasons = "; ".join(f"{s['key']}: {s['reason']}" for s in self.skipped[:5])
            raise ValueError(f"no usable clip in the manifest ({len(self.skipped)} skipped: {reasons})")

    def __len__(self) -> int:
        return len(self.items)

    def _open(self, shard: int):
        return safe_open(str(self.root / SHARDS / f"{shard:05d}.safetensors"), "pt")

    def load(self, i: int) -> dict[str, torch.Tensor]:
        item = self.items[i]
        handle = self._handle(item["shard"])
        prefix = f"{item['key']}/"
        return {name[len(prefix):]: handle.get_tensor(name).float() for name in item["tensors"]}

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        parts = [self.load(i) for i in indices]
        return {name: torch.stack([p[name] for p in parts]) for name in parts[0]}

    def draw(self, indices: Sequence[int], data: DataSpec, generator: torch.Generator,
             per_frame: Sequence[str] = ()) -> dict[str, torch.Tensor]:
        """A batch of windows: per clip a start (uniform over its cached windows; 0 for ``window: first``) and,
        with ``data.flip``, the mirrored clip with probability 1/2, drawn from ``generator`` in that order clip by
        clip; then ``data.image_num`` images per sample (``image_mean``/``image_logvar`` [B, n, C, h, w]: a
        uniform clip and frame each, never mirrored: Endora's images skip the video transforms). ``mean``,
        ``logvar`` and the ``per_frame`` tensors (time first) are cut to the window, [B, frames, ...]; other
        tensors are whole. ``start``/``flipped`` record the draws."""
        timed = {"mean", "logvar", *per_frame}
        parts, starts, flips = [], [], []
        for i in indices:
            tensors = self.load(i)
            count = len(tensors["mean"]) - data.frames + 1
            start = int(torch.randint(count, (1,), generator=generator)) if data.window == "random" else 0
            flip = bool(data.flip and torch.rand(1, generator=generator).item() < 0.5)
            parts.append({k: v[start:start + data.frames] if k in timed else v
                          for k, v in _side(tensors, flip).items()})
            starts.append(start)
            flips.append(flip)
        batch = {name: torch.stack([p[name] for p in parts]) for name in parts[0]}
        if data.image_num:
            images = [[self._image(generator) for _ in range(data.image_num)] for _ in indices]
            batch["image_mean"] = torch.stack([torch.stack([m for m, _ in row]) for row in images])
            batch["image_logvar"] = torch.stack([torch.stack([v for _, v in row]) for row in images])
        return {**batch, "start": torch.tensor(starts), "flipped": torch.tensor(flips)}

    def _image(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) [C, h, w] of one frame of a clip, both drawn uniformly."""
        tensors = self.load(int(torch.randint(len(self), (1,), generator=generator)))
        frame = int(torch.randint(len(tensors["mean"]), (1,), generator=generator))
        return tensors["mean"][frame], tensors["logvar"][frame]


def _side(tensors: dict[str, torch.Tensor], flip: bool) -> dict[str, torch.Tensor]:
    """The clip's tensors, with the mirrored clip's (cached under ``flip.<name>``) in their place when ``flip``."""
    plain = {k: v for k, v in tensors.items() if not k.startswith(FLIP)}
    if flip:
        plain.update({k[len(FLIP):]: v for k, v in tensors.items() if k.startswith(FLIP)})
    return plain




@torch.no_grad()
def build_cache(recipe, spec, frozen: dict, clips: list[TrainClip], root: Path, record: dict,
                progress: bool = False) -> LatentCache:
    """Encode every clip once (resumable shard by shard) into ``root``, with the VAE ``frozen["vae"]`` and the
    tensors ``recipe.clip_tensors`` (a :class:`baselines.recipe.Recipe`) adds; refuses a cache made for another
    ``record`` (the frozen parts, preset and manifest)."""
    path = root / "cache.json"
    if path.is_file() and json.loads(path.read_text()) != record:
        raise ValueError(f"{root} holds latents of another setup ({path}); choose another out folder")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    if (root / "index.json").is_file():
        return LatentCache(root)
    size = spec.train.shard_size
    items, skipped = [], []
    for shard in tqdm(range(math.ceil(len(clips) / size)), desc=f"{recipe.name} cache", disable=not progress):
        done = root / SHARDS / f"{shard:05d}.json"
        if not done.is_file():
            _encode_shard(recipe, spec, frozen, clips[shard * size:(shard + 1) * size], shard, root)
        part = json.loads(done.read_text())
        items += part["items"]
        skipped += part["skipped"]
    atomic_write_text(root / "index.json", json.dumps({"items": items, "skipped": skipped}, indent=1) + "\n")
    return LatentCache(root)


def _clip_tensors(recipe, spec, frozen: dict, frames: torch.Tensor, text: str) -> dict[str, torch.Tensor]:
    """The VAE posterior (mean, logvar [K, C, h, w], 16 frames a pass) and the recipe's tensors of ``frames``."""
    dists = [frozen["vae"].encode(frames[i:i + 16]).latent_dist for i in range(0, len(frames), 16)]
    return {"mean": torch.cat([d.mean for d in dists]), "logvar": torch.cat([d.logvar for d in dists]),
            **recipe.clip_tensors(spec, frozen, frames, text)}


def _encode_shard(recipe, spec, frozen: dict, clips: list[TrainClip], shard: int, root: Path) -> None:
    tensors, items, skipped = {}, [], []
    vae = frozen["vae"]
    for clip in clips:
        try:
            frames = load_frames(clip.path, spec.data)
        except (VideoDecodeError, ValueError) as err:
            skipped.append({"key": clip.key, "path": str(clip.path), "reason": str(err)})
            continue
        own = _clip_tensors(recipe, spec, frozen, frames.to(vae.device), clip.text)
        if spec.data.flip:  # the mirrored clip's per-frame tensors
            flipped = _clip_tensors(recipe, spec, frozen, frames.flip(-1).to(vae.device), clip.text)
            own.update({FLIP + k: flipped[k] for k in ("mean", "logvar", *recipe.per_frame)})
        tensors.update({f"{clip.key}/{k}": v.contiguous().float().cpu() for k, v in own.items()})
        items.append({"key": clip.key, "text": clip.text, "shard": shard, "tensors": [f"{clip.key}/{k}" for k in own]})
    folder = root / SHARDS
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{shard:05d}.safetensors") as tmp:
        save_file(tensors or {"empty": torch.zeros(1)}, str(tmp))
    atomic_write_text(folder / f"{shard:05d}.json", json.dumps({"items": items, "skipped": skipped}) + "\n")

