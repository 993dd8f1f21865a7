"""Encode a clip manifest once with the frozen VAE and T5 into safetensors shards (``python -m ophora.prepare``).

Layout of a prepared folder::

    prepare.json                 preset, model folder, frozen fingerprint, manifest hash, shard plan (written first)
    base_model/                  tiny presets only: the built base pipeline (VAE, T5, tokenizer, transformer)
    shards/NNNNN.safetensors     per clip ``latent/<key>/mean`` and ``latent/<key>/logvar`` ([C, T', H', W'],
                                 the VAE posterior's moments, unscaled), per instruction ``text/<sha>`` ([L, D])
    shards/NNNNN.json            the shard's items (key, instruction, bucket, tensor names) and skipped clips;
                                 written after the tensors: its presence marks the shard done
    index.json                   every item, by bucket; written when all shards are done

Shard ``s`` goes to process ``s % world`` (accelerate), so several processes share one folder. A run that stops
resumes where it stopped: finished shards are skipped. How a clip becomes a bucket's frames is the preset's
``data.selection``:

- ``strided`` (uni-medical/Ophora ``training/dataset.py``, ``VideoDatasetWithResizing``): the frame bucket nearest
  to the clip's source frame count (capped at the largest bucket), ``F`` frames every ``floor(N / F)`` source
  frames from the first (so the whole clip is spanned, whatever its length or rate), resized (bilinear,
  antialiased) to the bucket size nearest in ``|dh| + |dw|``, without cropping. A clip with fewer than ``F``
  source frames is skipped (the released code fails on it: a zero stride).
- ``fps_window`` (the suite's earlier rule): resampled to the preset's fps, the bucket with the most frames the
  clip can fill and the closest aspect ratio, its first ``F`` frames, resized to cover and centre-cropped; a clip
  shorter than ``F / fps`` seconds is skipped.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ophora.configs import Preset, preset_fingerprint
from ophora.data import manifests
from ophora.data.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from ophora.data.video import Resample, Strided, VideoDecodeError, probe, read_video
from ophora.model import DTYPES, Frozen, frozen_fingerprint, load_frozen

__all__ = ["Clip", "read_clips", "choose_bucket", "nearest_bucket", "strided_indices", "clip_bucket", "load_clip",
           "fit_clips", "prepare", "PREPARE_NAME", "INDEX_NAME"]

PREPARE_NAME, INDEX_NAME, SHARDS = "prepare.json", "index.json", "shards"


@dataclass(frozen=True)
class Clip:
    """One training pair: ``key`` (unique, e.g. the clip id), ``instruction`` and the video ``path``."""

    key: str
    instruction: str
    path: Path


def read_clips(manifest: str | os.PathLike) -> list[Clip]:
    """Clips of an Ophora-160K CSV (``clip id,instruction``) or a CogVideoX folder (prompts.txt, videos.txt)."""
    manifest = Path(manifest)
    if manifest.is_dir():
        root = manifest.resolve()
        return [Clip(path.relative_to(root).as_posix(), prompt, path)
                for prompt, path in manifests.read_cogvideox_set(root)]
    return [Clip(c.clip_id, c.instruction, c.path) for c in manifests.read_instruction_set(manifest)]


def choose_bucket(buckets: list[tuple[int, int, int]], frames: int, height: int, width: int):
    """The bucket a clip of ``frames`` (at the preset fps) and ``height`` x ``width`` pixels is encoded at:
    most frames first, then the closest aspect ratio. None when the clip is shorter than every bucket."""
    fitting = [b for b in buckets if b[0] <= frames]
    if not fitting:
        return None
    aspect = math.log(height / width)
    return min(fitting, key=lambda b: (-b[0], abs(math.log(b[1] / b[2]) - aspect)))


def nearest_bucket(buckets: list[tuple[int, int, int]], frames: int, height: int, width: int):
    """The released rule (``strided``): the frame count nearest to ``min(frames, largest)`` (``frames``: source
    frames), then among buckets of that count the size nearest in ``|dh| + |dw|`` (ties: listed first). None when
    the clip has fewer source frames than that count."""
    counts = sorted({b[0] for b in buckets})
    count = min(counts, key=lambda f: abs(f - min(frames, counts[-1])))
    if frames < count:
        return None
    return min((b for b in buckets if b[0] == count), key=lambda b: abs(b[1] - height) + abs(b[2] - width))


def strided_indices(num_frames: int, frames: int) -> np.ndarray:
    """Source frame indices of the ``strided`` selection: ``frames`` indices ``floor(num_frames / frames)`` apart
    from frame 0 (``range(0, N, N // F)[:F]`` of the released dataset code)."""
    if num_frames < frames:
        raise ValueError(f"clip has {num_frames} frames; the strided selection needs at least {frames}")
    return Strided(frames, num_frames // frames).indices(num_frames, 1.0)


def _resized(video: np.ndarray, height: int, width: int, crop: bool) -> torch.Tensor:
    """uint8 [T, H0, W0, 3] -> float32 [3, T, height, width] in [-1, 1]: resized to the size (``crop`` False,
    the aspect ratio may change) or to cover it and centre-cropped (``crop`` True); bilinear, antialiased."""
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if crop:
        scale = max(height / x.shape[2], width / x.shape[3])
        size = (max(height, round(x.shape[2] * scale)), max(width, round(x.shape[3] * scale)))
    else:
        size = (height, width)
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return x[:, :, top:top + height, left:left + width].clamp(-1, 1).permute(1, 0, 2, 3).contiguous()


def load_clip(path: Path, bucket: tuple[int, int, int], fps: float, selection: str = "fps_window") -> torch.Tensor:
    """The frames of ``path`` for ``bucket`` under ``selection`` (module docstring): float32 [3, T, H, W] in
    [-1, 1]. ``fps_window``: the first ``bucket[0]`` frames at ``fps``, resized to cover and centre-cropped;
    ``strided``: :func:`strided_indices`, resized to the bucket without cropping."""
    frames, height, width = bucket
    if selection == "strided":
        count = probe(path).num_frames
        if count < frames:
            raise ValueError(f"{path}: {count} frames; the strided selection needs at least {frames}")
        video = read_video(path, select=Strided(frames, count // frames))  # uint8 [T, H0, W0, 3]
        return _resized(video, height, width, crop=False)
    video = read_video(path, select=Resample(fps, max_frames=frames))
    return _resized(video, height, width, crop=True)


def fit_clips(manifest: str | os.PathLike, preset: Preset, limit: int = 256) -> torch.Tensor:
    """Up to ``limit`` clips of ``manifest`` (evenly spaced) at the preset's default shape, float
    [N, 3, T, H, W] in [-1, 1], for fitting a tiny VAE; clips that cannot fill the shape are left out."""
    clips = read_clips(manifest)
    chosen = [clips[i] for i in sorted({round(i) for i in np.linspace(0, len(clips) - 1, min(limit, len(clips)))})]
    shape = (preset.data.frames, preset.data.height, preset.data.width)
    videos = []
    for clip in chosen:
        try:
            video = load_clip(clip.path, shape, preset.data.fps, preset.data.selection)
        except (VideoDecodeError, ValueError):
            continue
        if video.shape[1] == shape[0]:
            videos.append(video)
    if not videos:
        raise ValueError(f"{manifest}: no clip has {shape[0]} frames at {preset.data.fps:g} fps to fit the VAE on")
    return torch.stack(videos)


def _text_key(instruction: str) -> str:
    return "text/" + hashlib.sha256(instruction.encode()).hexdigest()[:20]


@torch.no_grad()
def encode_texts(frozen: Frozen, texts: list[str], max_length: int, device) -> torch.Tensor:
    """T5 embeddings [N, L, D] exactly as CogVideoXPipeline computes them (padded to ``max_length``, no mask)."""
    ids = frozen.tokenizer(texts, padding="max_length", max_length=max_length, truncation=True,
                           add_special_tokens=True, return_tensors="pt").input_ids
    return frozen.text_encoder(ids.to(device))[0]


@torch.no_grad()
def encode_clip(frozen: Frozen, video: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE posterior moments (mean, logvar), each [C, T', H', W'], of one clip [3, T, H, W]."""
    dist = frozen.vae.encode(video[None].to(device, frozen.vae.dtype)).latent_dist
    return dist.mean[0], dist.logvar[0]


def _shard_done(out: Path, shard: int) -> bool:
    stem = out / SHARDS / f"{shard:05d}"
    return stem.with_suffix(".json").is_file() and stem.with_suffix(".safetensors").is_file()


def clip_bucket(data, num_frames: int, fps: float, height: int, width: int):
    """(bucket, None) a clip of ``num_frames`` source frames at ``fps`` and ``height`` x ``width`` is encoded
    at under ``data.selection`` (a :class:`~ophora.configs.DataConfig`), or (None, why it is skipped)."""
    buckets = data.all_buckets()
    if data.selection == "strided":
        bucket = nearest_bucket(buckets, num_frames, height, width)
        if bucket is None:
            return None, f"{num_frames} source frames; the strided selection needs at least {min(buckets)[0]}"
        return bucket, None
    available = int(math.floor(num_frames * data.fps / fps + 1e-9))
    bucket = choose_bucket(buckets, available, height, width)
    if bucket is None:
        return None, (f"{available} frames at {data.fps:g} fps; the smallest bucket needs "
                      f"{min(b[0] for b in buckets)}")
    return bucket, None


def _encode_item(clip: Clip, preset: Preset, frozen: Frozen, device):
    """(bucket, mean, logvar) of one clip, or (reason, None, None) when it cannot be used."""
    try:
        info = probe(clip.path)
        bucket, reason = clip_bucket(preset.data, info.num_frames, info.fps, info.height, info.width)
        if bucket is None:
            return reason, None, None
        video = load_clip(clip.path, bucket, preset.data.fps, preset.data.selection)
        return (bucket, *encode_clip(frozen, video, device))
    except VideoDecodeError as err:
        return str(err), None, None


def _encode_shard(clips: list[Clip], preset: Preset, frozen: Frozen, device) -> tuple[dict, list, list]:
    """Tensors, item records and skipped records of one shard."""
    dtype = DTYPES[preset.prepare.dtype]
    tensors, items, skipped = {}, [], []
    for clip in clips:
        bucket, mean, logvar = _encode_item(clip, preset, frozen, device)
        if mean is None:
            skipped.append({"key": clip.key, "reason": bucket})
            continue
        tensors[f"latent/{clip.key}/mean"] = mean.to("cpu", dtype).contiguous()
        tensors[f"latent/{clip.key}/logvar"] = logvar.to("cpu", dtype).contiguous()
        items.append({"key": clip.key, "instruction": clip.instruction, "bucket": list(bucket),
                      "latent_shape": list(mean.shape), "text": _text_key(clip.instruction)})
    texts = sorted({item["instruction"] for item in items})
    if texts:
        embeds = encode_texts(frozen, texts, preset.model.max_text_length, device)
        for text, embed in zip(texts, embeds):
            tensors[_text_key(text)] = embed.to("cpu", dtype).contiguous()
    return tensors, items, skipped


def _write_shard(out: Path, shard: int, tensors: dict, items: list, skipped: list) -> None:
    from safetensors.torch import save_file

    stem = out / SHARDS / f"{shard:05d}"
    with atomic_path(stem.with_suffix(".safetensors")) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(stem.with_suffix(".json"), json.dumps({"shard": shard, "items": items, "skipped": skipped},
                                                            indent=1) + "\n")


def plan(clips: list[Clip], preset: Preset, model_dir: Path, manifest: Path, vae) -> dict[str, Any]:
    """The ``prepare.json`` payload: what any process resuming this folder must agree with."""
    return {"preset": preset.name, "preset_fingerprint": preset_fingerprint(preset), "config": asdict(preset),
            "model_dir": str(model_dir.resolve()), "frozen_fingerprint": frozen_fingerprint(model_dir),
            "manifest": str(manifest.resolve()),
            "manifest_sha256": hashlib.sha256(manifest_bytes(manifest)).hexdigest(),
            "clips": len(clips), "shard_size": preset.prepare.shard_size,
            "shards": math.ceil(len(clips) / preset.prepare.shard_size), "dtype": preset.prepare.dtype,
            "latent_channels": vae.config.latent_channels, "scaling_factor": vae.config.scaling_factor,
            "max_text_length": preset.model.max_text_length}


def manifest_bytes(manifest: Path) -> bytes:
    if manifest.is_dir():
        return (manifest / "prompts.txt").read_bytes() + b"\0" + (manifest / "videos.txt").read_bytes()
    return manifest.read_bytes()


def check_plan(out: Path, expected: dict[str, Any]) -> None:
    """Raise if ``out`` was started with different settings (so shards never mix two setups)."""
    found = json.loads((out / PREPARE_NAME).read_text())
    keys = ("preset_fingerprint", "frozen_fingerprint", "manifest_sha256", "shard_size", "dtype")
    changed = [k for k in keys if found.get(k) != expected[k]]
    if changed:
        raise ValueError(f"{out.resolve()} was prepared with other settings ({', '.join(changed)} differ: "
                         f"{ {k: found.get(k) for k in changed} } vs { {k: expected[k] for k in changed} }); "
                         f"choose another --out or delete the folder")


def prepare(manifest: str | os.PathLike, preset: Preset, out: str | os.PathLike, model_dir: str | os.PathLike,
            rank: int = 0, world: int = 1, device: str | torch.device = "cpu", progress: bool = False,
            barrier=lambda: None) -> Path:
    """Encode ``manifest``'s clips into shards under ``out``; this process takes shards ``rank::world``.

    ``barrier`` synchronises processes (``accelerator.wait_for_everyone``). Returns the index path once every
    shard is done (the main process writes it).
    """
    from tqdm import tqdm

    out, manifest, model_dir = Path(out), Path(manifest), Path(model_dir)
    remove_stale_temporaries(out, recursive=True)  # shards a killed run left half-written
    clips = read_clips(manifest)
    if not clips:
        raise ValueError(f"{manifest}: the manifest lists no clips")
    on_gpu = torch.device(device).type == "cuda"
    frozen = load_frozen(model_dir, DTYPES[preset.prepare.dtype] if on_gpu else torch.float32)
    frozen.text_encoder.to(device), frozen.vae.to(device)
    if preset.prepare.vae_tiling:
        frozen.vae.enable_tiling()
    expected = plan(clips, preset, model_dir, manifest, frozen.vae)
    if rank == 0 and not (out / PREPARE_NAME).is_file():
        atomic_write_text(out / PREPARE_NAME, json.dumps(expected, indent=2, default=str) + "\n")
    barrier()
    check_plan(out, expected)
    size = preset.prepare.shard_size
    mine = [s for s in range(expected["shards"]) if s % world == rank and not _shard_done(out, s)]
    for shard in tqdm(mine, desc=f"prepare (rank {rank})", disable=not progress):
        _write_shard(out, shard, *_encode_shard(clips[shard * size:(shard + 1) * size], preset, frozen, device))
    barrier()
    if rank == 0:
        write_index(out, expected["shards"])
    barrier()
    return out / INDEX_NAME


def write_index(out: Path, shards: int) -> Path:
    """Merge the shard records into ``index.json`` (items in manifest order, counts per bucket)."""
    missing = [s for s in range(shards) if not _shard_done(out, s)]
    if missing:
        raise RuntimeError(f"{out}: shards {missing[:5]} are not done; run prepare again to finish them")
    items, skipped = [], []
    for shard in range(shards):
        record = json.loads((out / SHARDS / f"{shard:05d}.json").read_text())
        items += [{**item, "shard": shard} for item in record["items"]]
        skipped += record["skipped"]
    buckets: dict[str, int] = {}
    for item in items:
        name = "x".join(map(str, item["bucket"]))
        buckets[name] = buckets.get(name, 0) + 1
    index = {"items": items, "skipped": skipped, "buckets": buckets, "shards": shards}
    return atomic_write_text(out / INDEX_NAME, json.dumps(index, indent=1) + "\n")
