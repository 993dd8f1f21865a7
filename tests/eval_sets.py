"""Small synthetic video sets for the evaluation tests (imported by tests/test_evaluate*.py and friends)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ophora.data.manifests import GeneratedVideo, write_generated
from ophora.data.video import write_video

PROMPTS = ("capsulorhexis with forceps under the microscope", "phacoemulsification of the nucleus",
           "irrigation and aspiration of cortex", "an intraocular lens is injected into the bag",
           "viscoelastic fills the anterior chamber", "a keratome makes the main incision")


def clip_frames(frames: int, size: tuple[int, int], seed: int, tint: float = 0.0) -> np.ndarray:
    """uint8 [T, H, W, 3]: a seeded smooth random texture drifting one pixel per frame, tinted by ``tint``."""
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = rng.uniform(0, 255, (h // 4 + 2, w // 4 + frames // 4 + 3, 3))
    big = np.kron(coarse, np.ones((4, 4, 1)))
    out = np.stack([big[:h, t:t + w] for t in range(frames)])
    out[..., 0] = np.clip(out[..., 0] + tint, 0, 255)
    return out.astype(np.uint8)


def make_folder(folder: Path, n: int, frames: int | Sequence[int], size=(32, 32), seed: int = 0,
                tint: float = 0.0) -> list[Path]:
    """``n`` videos ``folder/vid_XX.mp4`` (``frames`` each, or one count per video)."""
    counts = [frames] * n if isinstance(frames, int) else list(frames)
    paths = []
    for i, t in enumerate(counts):
        paths.append(write_video(folder / f"vid_{i:02d}.mp4", clip_frames(t, size, seed * 1000 + i, tint), fps=8))
    return paths


def make_generated(folder: Path, n: int, frames: int = 16, size=(32, 32), seed: int = 1, tint: float = 40.0,
                   prompts: Sequence[str] = PROMPTS) -> list[Path]:
    """A generated-video folder with ``manifest.jsonl`` (prompts cycled from ``prompts``)."""
    paths = make_folder(folder, n, frames, size, seed, tint)
    write_manifest(folder, paths, prompts)
    return paths


def write_manifest(folder: Path, paths: Sequence[Path], prompts: Sequence[str] = PROMPTS) -> Path:
    records = [GeneratedVideo(p, prompts[i % len(prompts)], i, "test", "0" * 8, {"fps": 8})
               for i, p in enumerate(paths)]
    return write_generated(folder, records)
