"""Generate videos from prompts into a self-describing folder (``python -m ophora.generate``).

Video ``k`` of prompt ``i`` is ``OUT/iiiii_kk.mp4``, made with its own ``torch.Generator`` seeded by
``derive_seed(seed, i, k)`` (initial latents and the DPM sampler's noise), so it does not depend on sharding
or on which videos were already made, and other batch sizes change it only by floating-point rounding. Each
mp4 is written whole (write then rename) and only then gets its line in ``OUT/manifest.jsonl`` (prompt, seed,
generator ``ophora``, the SHA-256 of the transformer weights, and the settings that change pixels). A rerun
skips every video its manifest lists. Video ``j`` of the job list goes to process ``j % world``; the manifest is
appended under a file lock. ``OUT/generation.json`` records the run's settings; a rerun with other settings is
refused rather than mixing two setups in one folder.
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ophora.configs import Preset
from ophora.data.atomic import atomic_write_text, remove_stale_temporaries
from ophora.data.manifests import MANIFEST_NAME, GeneratedVideo, append_generated, read_generated
from ophora.data.video import write_video
from ophora.generation.prompts import Prompt
from ophora.model import DTYPES, load_pipeline, transformer_sha256
from ophora.seeding import derive_seed

__all__ = ["GENERATOR", "Job", "plan_jobs", "settings_of", "write_videos", "generate", "SETTINGS_NAME"]

GENERATOR, SETTINGS_NAME = "ophora", "generation.json"


@dataclass(frozen=True)
class Job:
    """Video ``k`` of ``prompt``: file ``name`` and its ``seed``."""

    prompt: Prompt
    k: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.prompt.index:05d}_{self.k:02d}.mp4"


def plan_jobs(prompts: list[Prompt], videos_per_prompt: int, seed: int) -> list[Job]:
    """Every (prompt, k) with its derived seed, prompt-major."""
    if videos_per_prompt < 1:
        raise ValueError(f"videos per prompt must be at least 1, got {videos_per_prompt}")
    return [Job(p, k, derive_seed(seed, p.index, k)) for p in prompts for k in range(videos_per_prompt)]


def settings_of(preset: Preset, model_dir: Path) -> dict[str, Any]:
    """What changes the pixels besides prompt and seed."""
    s = preset.sampling
    return {"preset": preset.name, "model": str(Path(model_dir).resolve()), "scheduler": s.scheduler,
            "timestep_spacing": s.timestep_spacing, "steps": s.steps, "guidance_scale": s.guidance_scale,
            "dynamic_cfg": s.dynamic_cfg, "negative_prompt": s.negative_prompt, "dtype": s.dtype,
            "num_frames": preset.data.frames, "height": preset.data.height, "width": preset.data.width,
            "fps": preset.data.fps, "max_text_length": preset.model.max_text_length}


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".manifest.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_folder(out: Path, record: dict[str, Any], is_main: bool, barrier) -> None:
    path = out / SETTINGS_NAME
    if is_main and not path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    barrier()
    found = json.loads(path.read_text())
    changed = {k: (found.get(k), v) for k, v in record.items() if found.get(k) != v}
    if changed:
        raise ValueError(f"{out} holds videos made with other settings ({changed}; found vs requested); "
                         f"choose another --out")


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    """Pipeline output float [T, H, W, 3] in [0, 1] -> uint8."""
    return np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)


def _sample(pipeline, jobs: list[Job], preset: Preset, device) -> np.ndarray:
    """Frames float [B, T, H, W, 3] in [0, 1] for a batch of jobs."""
    s, d = preset.sampling, preset.data
    generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in jobs]
    out = pipeline(prompt=[job.prompt.text for job in jobs], negative_prompt=[s.negative_prompt] * len(jobs),
                   height=d.height, width=d.width, num_frames=d.frames, num_inference_steps=s.steps,
                   guidance_scale=s.guidance_scale, use_dynamic_cfg=s.dynamic_cfg, generator=generators,
                   max_sequence_length=preset.model.max_text_length, output_type="np")
    return out.frames


def write_videos(out: str | os.PathLike, prompts: list[Prompt], videos_per_prompt: int, seed: int, *,
                 render: Callable[[list[Job]], np.ndarray], generator: str, checkpoint: str,
                 settings: dict[str, Any], batch_size: int, fps: float, rank: int = 0, world: int = 1,
                 progress: bool = False, barrier=lambda: None) -> list[Path]:
    """The folder protocol every generator shares (Ophora here, the baselines in :mod:`baselines.sampling`).

    Checks ``generation.json`` against (seed, videos per prompt, checkpoint hash, settings), refuses videos listed
    with another prompt, and makes this process's missing jobs (job ``n`` goes to process ``n % world``) in
    batches: ``render(jobs)`` -> uint8 [B, T, H, W, 3]; each mp4 is written then renamed, then gets its manifest
    line under a file lock (with ``batch_videos``, the size of the batch it was made in: batched matrix products
    round differently, so a seed reproduces a video bit for bit at the same batch size). Returns the paths
    written.
    """
    from tqdm import tqdm

    out = Path(os.path.abspath(out))
    remove_stale_temporaries(out)  # half-written mp4s of a killed run (live writers' files are kept)
    _check_folder(out, {"seed": seed, "videos_per_prompt": videos_per_prompt, "checkpoint_hash": checkpoint,
                        "settings": settings}, rank == 0, barrier)
    done = {r.path.name: r.prompt for r in read_generated(out)} if (out / MANIFEST_NAME).is_file() else {}
    jobs = [j for n, j in enumerate(plan_jobs(prompts, videos_per_prompt, seed)) if n % world == rank]
    changed = [j for j in jobs if j.name in done and done[j.name] != j.prompt.text]
    if changed:
        j = changed[0]
        raise ValueError(f"{out / j.name} was made from another prompt ({done[j.name]!r}, now {j.prompt.text!r}; "
                         f"{len(changed)} video(s) differ): a prompt file changed between runs; choose another --out")
    todo = [j for j in jobs if j.name not in done]
    written = []
    for start in tqdm(range(0, len(todo), batch_size), desc=f"{generator} (rank {rank})", disable=not progress):
        batch = todo[start:start + batch_size]
        for job, frames in zip(batch, render(batch)):
            path = write_video(out / job.name, frames, fps=fps)
            record = GeneratedVideo(path, job.prompt.text, job.seed, generator, checkpoint, settings,
                                    {"prompt_index": job.prompt.index, "video_index": job.k,
                                     "source": job.prompt.source, "batch_videos": len(batch)})
            with _locked(out):
                append_generated(out, record)
            written.append(path)
    return written


def generate(model_dir: str | os.PathLike, prompts: list[Prompt], preset: Preset, out: str | os.PathLike,
             videos_per_prompt: int = 1, seed: int = 0, rank: int = 0, world: int = 1, device="cpu",
             progress: bool = False, barrier=lambda: None) -> list[Path]:
    """Make this process's missing videos; return the paths it wrote. The pipeline is loaded only if a video is
    missing."""
    model_dir = Path(model_dir)
    loaded: list = []

    def render(jobs: list[Job]) -> np.ndarray:
        if not loaded:
            pipeline = load_pipeline(model_dir, preset.sampling, DTYPES[preset.sampling.dtype]).to(device)
            pipeline.set_progress_bar_config(disable=True)
            loaded.append(pipeline)
        return _to_uint8(_sample(loaded[0], jobs, preset, device))

    return write_videos(out, prompts, videos_per_prompt, seed, render=render, generator=GENERATOR,
                        checkpoint=transformer_sha256(model_dir), settings=settings_of(preset, model_dir),
                        batch_size=preset.sampling.batch_size, fps=preset.data.fps, rank=rank, world=world,
                        progress=progress, barrier=barrier)
