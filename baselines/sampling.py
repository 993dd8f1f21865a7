"""Sampling a trained baseline: the sampler (IDDPM's respacing), denoising, decoding, and the video folder.

DDPM sampling keeps IDDPM's respaced steps (diffusers' ``linspace`` spacing), DDIM the ``leading`` one; a
learned-variance model's DDPM sampler draws with its variance. Videos are written like Ophora's
(:func:`ophora.generation.sampler.write_videos`): ``iiiii_kk.mp4`` + ``manifest.jsonl``, sharded over processes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from accelerate import PartialState
from diffusers import DDIMScheduler, DDPMScheduler

from baselines.frozen import vae_scaling
from baselines.presets import SamplingSpec
from ophora.generation.sampler import write_videos
from ophora.model import transformer_sha256

__all__ = ["sampling_scheduler", "sample_latents", "decode_latents", "compute_device", "generate_videos",
           "base_settings"]


def sampling_scheduler(model_dir: Path, sampling: SamplingSpec):
    """The sampler of ``sampling`` on the model's training noise schedule; a learned-variance model's saved
    schedule holds ``variance_type="learned_range"``, so its DDPM sampler draws with the learned variance."""
    config = dict(DDPMScheduler.load_config(model_dir / "scheduler"))
    if sampling.scheduler == "ddpm":
        # IDDPM's respacing (space_timesteps(N, "steps"): round(k * (N - 1) / (steps - 1))) is diffusers'
        # "linspace"; DDPM's step takes the previous kept step from its timestep list, so the respaced betas are
        # 1 - abar_t / abar_prev as in IDDPM
        return DDPMScheduler.from_config(config, timestep_spacing="linspace")
    # DDIM computes the previous step as t - N // steps, exact only with "leading" spacing (t = k * N // steps)
    return DDIMScheduler.from_config(config, timestep_spacing="leading")


@torch.no_grad()
def sample_latents(predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], scheduler, steps: int,
                   shape: tuple[int, ...], generators: list[torch.Generator], device="cpu") -> torch.Tensor:
    """Denoise from seeded noise: ``shape`` [B, C, T, h, w], one CPU generator per video (initial noise and the
    sampler's noise, so a seed gives the same start on any device), ``predict(x, t)`` -> epsilon like ``x``, or
    [B, 2C, ...] (epsilon, learned variance ``v``): a DDPM scheduler with ``variance_type="learned_range"``
    draws with that variance (diffusers' step: IDDPM's LEARNED_RANGE on the respaced betas
    ``1 - abar_t / abar_prev``), DDIM (deterministic) uses the epsilon half."""
    x = torch.stack([torch.randn(shape[1:], generator=g) for g in generators]).to(device)
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    # DDPM's step splits a 2C output and draws with the learned variance; DDIM's config may carry the key unused
    learned = isinstance(scheduler, DDPMScheduler) and scheduler.config.get("variance_type") == "learned_range"
    for t in scheduler.timesteps:
        eps = predict(x, t.expand(x.shape[0]).to(device))
        if eps.shape[1] == 2 * x.shape[1] and not learned:
            eps = eps[:, :x.shape[1]]
        x = scheduler.step(eps, t, x, generator=generators if len(generators) > 1 else generators[0]).prev_sample
    return x


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor) -> np.ndarray:
    """Scaled latents [B, C, T, h, w] -> uint8 frames [B, T, H, W, 3]."""
    b, c, t, h, w = latents.shape
    flat = latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w) / vae_scaling(vae)
    frames = torch.cat([vae.decode(flat[i:i + 16]).sample for i in range(0, len(flat), 16)])
    frames = ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.reshape(b, t, *frames.shape[1:]).permute(0, 1, 3, 4, 2).cpu().numpy()


def compute_device() -> torch.device:
    """Where generation runs: this process's accelerate device (its own GPU under accelerate launch), else the
    CPU."""
    return _process_state().device


def _process_state():
    return PartialState(cpu=not torch.cuda.is_available())


def generate_videos(generator: str, model_dir: str | os.PathLike, prompts, out: str | os.PathLike,
                    videos_per_prompt: int, seed: int, settings: dict[str, Any], batch_size: int, fps: float,
                    render: Callable[[list], np.ndarray], progress: bool = False) -> list[Path]:
    """Write the missing videos into ``out`` like :func:`ophora.generation.sampler.generate`: ``iiiii_kk.mp4``
    with seed ``derive_seed(seed, i, k)``, written then renamed, then one ``manifest.jsonl`` line; a
    ``generation.json`` refuses other settings. ``render(jobs)`` -> uint8 [B, T, H, W, 3]."""
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts given: generation needs at least one prompt (Endora ignores its text but "
                         "makes videos_per_prompt videos per prompt)")
    state = _process_state()  # under accelerate launch / torchrun each process makes its share of the videos
    return write_videos(out, prompts, videos_per_prompt, seed, render=render, generator=generator,
                        checkpoint=transformer_sha256(model_dir), settings=settings, batch_size=batch_size, fps=fps,
                        rank=state.process_index, world=state.num_processes,
                        progress=progress and state.is_main_process, barrier=state.wait_for_everyone)


def base_settings(spec, model_dir: Path, conditional: bool) -> dict[str, Any]:
    """What changes the pixels besides prompt and seed."""
    s, d = spec.sampling, spec.data
    return {"preset": spec.name, "model": str(Path(model_dir).resolve()), "scheduler": s.scheduler,
            "steps": s.steps, "guidance_scale": s.guidance_scale if conditional else None,
            "cfg_channels": s.cfg_channels if conditional else None, "num_frames": d.frames, "height": d.height,
            "width": d.width, "fps": d.fps, "frame_interval": d.frame_interval, "conditional": conditional,
            **({"variance": "learned_range"} if spec.diffusion.learn_sigma else {})}
