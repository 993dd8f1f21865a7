"""Build, load and save the CogVideoX components of a preset.

- ``tiny`` presets build every component from its constructor arguments (seeded random weights, a tokenizer
  trained offline) and save them once as a base pipeline folder (:func:`save_base_model`);
- ``paper`` presets load CogVideoX-2b from a local diffusers folder or the Hub cache (:func:`base_model_dir`).

Training reads the frozen parts (tokenizer, T5, VAE) and the noise schedule from a base folder and writes the
trained transformer beside copies of them (:func:`save_trained_model`), so ``CogVideoXPipeline.from_pretrained``
loads every folder the suite writes.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ophora.configs import ModelConfig, Preset, SamplingConfig, preset_fingerprint
from ophora.data.atomic import atomic_dir
from ophora.model.store import (
    FROZEN,
    ModelNotFoundError,
    check_model_dir,
    frozen_fingerprint,
    read_model_info,
    resolve_model_dir,
    write_model_info,
)
from ophora.model.tokenizer import builtin_corpus, train_t5_tokenizer
from ophora.model.vae_fit import fit_vae

__all__ = ["Frozen", "VaeFit", "build_tiny_pipeline", "save_base_model", "base_model_dir", "load_frozen",
           "load_transformer", "noise_scheduler", "sampling_scheduler", "load_pipeline", "save_trained_model",
           "model_info", "check_preset_matches", "DTYPES"]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class VaeFit(NamedTuple):
    """Clips (float [N, 3, T, H, W] in [-1, 1]; None when the base model exists already) to fit a tiny VAE
    on, and the number of AdamW steps."""

    clips: torch.Tensor | None
    steps: int


class Frozen(NamedTuple):
    """The parts that stay frozen: tokenizer, T5 encoder, VAE (all in eval mode, no gradients)."""

    tokenizer: Any
    text_encoder: Any
    vae: Any


def _seeded(seed: int, build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_tiny_pipeline(model: ModelConfig):
    """A ``CogVideoXPipeline`` of seeded random-weight components built from ``model``'s arguments."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = train_t5_tokenizer(builtin_corpus(), model.tokenizer_vocab_size)
    t5_config = T5Config(vocab_size=len(tokenizer), **model.text_encoder)
    text_encoder = _seeded(model.seed, lambda: T5EncoderModel(t5_config))
    vae = _seeded(model.seed + 1, lambda: AutoencoderKLCogVideoX(**model.vae))
    if model.tiny_vae_logvar is not None:
        _fix_posterior_logvar(vae, model.tiny_vae_logvar)
    transformer = _seeded(model.seed + 2, lambda: CogVideoXTransformer3DModel(**model.transformer))
    scheduler = CogVideoXDPMScheduler(**model.scheduler)
    return CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=scheduler)


@torch.no_grad()
def _fix_posterior_logvar(vae, logvar: float) -> None:
    """Make the encoder's log-variance head output the constant ``logvar`` (its output channels are
    [mean, logvar] halves)."""
    conv = vae.encoder.conv_out.conv
    half = conv.out_channels // 2
    conv.weight[half:].zero_()
    conv.bias[half:].fill_(logvar)


def model_info(preset: Preset, stage: str, model_dir: str | os.PathLike, **extra: Any) -> dict[str, Any]:
    """The ``ophora_model.json`` payload of a folder holding ``preset``'s model after ``stage``."""
    return {"preset": preset.name, "preset_fingerprint": preset_fingerprint(preset), "stage": stage,
            "frozen_fingerprint": frozen_fingerprint(model_dir), "config": asdict(preset), **extra}


def save_base_model(preset: Preset, out: str | os.PathLike, vae_fit: VaeFit | None = None) -> Path:
    """Build the tiny preset's components and save them as a pipeline folder at ``out`` (atomically).

    ``vae_fit`` first trains the random VAE on clips (see :mod:`ophora.model.vae_fit`)."""
    if not preset.model.is_tiny:
        raise ValueError(f"preset {preset.name!r} loads {preset.model.pretrained}; only tiny presets are built")
    pipeline = build_tiny_pipeline(preset.model)
    fit = {"steps": 0}
    if vae_fit is not None and vae_fit.steps > 0:
        losses = fit_vae(pipeline.vae, vae_fit.clips, vae_fit.steps, seed=preset.model.seed)
        tail = losses[-min(10, len(losses)):]
        fit = {"steps": vae_fit.steps, "clips": len(vae_fit.clips), "mse_first_step": losses[0],
               "mse_last_steps": sum(tail) / len(tail)}
    with atomic_dir(out) as tmp:
        pipeline.save_pretrained(tmp)
        write_model_info(tmp, model_info(preset, "base", tmp, step=0, vae_fit=fit))
    return Path(out)


def base_model_dir(preset: Preset, cache: str | os.PathLike | None = None, vae_fit: VaeFit | None = None) -> Path:
    """The base pipeline folder of ``preset``: its pretrained folder, or for tiny presets ``cache`` (built once,
    with ``vae_fit`` if given; an existing folder must have been built with the same number of fit steps)."""
    if not preset.model.is_tiny:
        if vae_fit is not None and vae_fit.steps > 0:
            raise ValueError("fitting the VAE is for tiny presets; a pretrained CogVideoX brings a trained VAE")
        return resolve_model_dir(preset.model.pretrained)
    if cache is None:
        raise ValueError("a tiny preset needs a folder to build its base model in")
    cache = Path(cache)
    if not (cache / "model_index.json").is_file():
        save_base_model(preset, cache, vae_fit)
    check_preset_matches(preset, cache)
    built = (read_model_info(cache) or {}).get("vae_fit", {}).get("steps", 0)
    if vae_fit is not None and built != vae_fit.steps:
        raise ValueError(f"{cache} was built with {built} VAE fit steps, not {vae_fit.steps}; delete it or "
                         f"use the same --fit-vae-steps")
    return cache


def check_preset_matches(preset: Preset, model_dir: str | os.PathLike) -> None:
    """Raise if ``model_dir`` was written for another preset (folders without ``ophora_model.json`` pass)."""
    info = read_model_info(model_dir)
    if info is None:
        return
    if info["preset_fingerprint"] != preset_fingerprint(preset):
        raise ValueError(f"{Path(model_dir).resolve()} holds a model of preset {info['preset']!r} (fingerprint "
                         f"{info['preset_fingerprint']}), but this run uses preset {preset.name!r} (fingerprint "
                         f"{preset_fingerprint(preset)}); use the same --config and --set options as the run "
                         f"that made it")


def load_frozen(model_dir: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Frozen:
    """Tokenizer, T5 encoder and VAE of a pipeline folder, in eval mode without gradients."""
    from diffusers import AutoencoderKLCogVideoX
    from transformers import T5EncoderModel, T5TokenizerFast

    model_dir = check_model_dir(model_dir)
    tokenizer = T5TokenizerFast.from_pretrained(model_dir, subfolder="tokenizer")
    text_encoder = T5EncoderModel.from_pretrained(model_dir, subfolder="text_encoder", dtype=dtype)
    vae = AutoencoderKLCogVideoX.from_pretrained(model_dir, subfolder="vae", dtype=dtype)
    for module in (text_encoder, vae):
        module.requires_grad_(False).eval()
    return Frozen(tokenizer, text_encoder, vae)


def load_transformer(model_dir: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """The CogVideoX transformer of a pipeline folder."""
    from diffusers import CogVideoXTransformer3DModel

    return CogVideoXTransformer3DModel.from_pretrained(check_model_dir(model_dir), subfolder="transformer",
                                                       dtype=dtype)


def noise_scheduler(model_dir: str | os.PathLike):
    """The training noise schedule (CogVideoXDPMScheduler built from the folder's scheduler config)."""
    from diffusers import CogVideoXDPMScheduler

    return CogVideoXDPMScheduler.from_pretrained(check_model_dir(model_dir), subfolder="scheduler")


def sampling_scheduler(model_dir: str | os.PathLike, sampling: SamplingConfig):
    """The sampler of ``sampling``: DPM or DDIM on the folder's noise schedule, with the chosen spacing."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

    cls = CogVideoXDPMScheduler if sampling.scheduler == "dpm" else CogVideoXDDIMScheduler
    config = dict(noise_scheduler(model_dir).config)
    return cls.from_config(config, timestep_spacing=sampling.timestep_spacing)


def load_pipeline(model_dir: str | os.PathLike, sampling: SamplingConfig, dtype: torch.dtype = torch.float32):
    """A ``CogVideoXPipeline`` of a folder with ``sampling``'s scheduler."""
    from diffusers import CogVideoXPipeline

    model_dir = check_model_dir(model_dir)
    return CogVideoXPipeline.from_pretrained(model_dir, scheduler=sampling_scheduler(model_dir, sampling),
                                             dtype=dtype)


def save_trained_model(out: str | os.PathLike, base_dir: str | os.PathLike, transformer, preset: Preset,
                       stage: str, **info: Any) -> Path:
    """Write a pipeline folder at ``out``: copies of ``base_dir``'s frozen parts, ``transformer``, and a DPM
    scheduler with the preset's sampling spacing, plus ``ophora_model.json``. Written to a temporary folder and
    renamed, so ``out`` is either the old folder or the new one, never a mix."""
    base_dir = check_model_dir(base_dir)
    with atomic_dir(out) as tmp:
        for part in FROZEN:
            shutil.copytree(base_dir / part, tmp / part)
        transformer.save_pretrained(tmp / "transformer")
        scheduler = sampling_scheduler(base_dir, preset.sampling)
        scheduler.save_pretrained(tmp / "scheduler")
        index = json.loads((base_dir / "model_index.json").read_text())
        index["scheduler"] = ["diffusers", type(scheduler).__name__]
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        write_model_info(tmp, model_info(preset, stage, tmp, **info))
    return Path(out)


__all__ += ["ModelNotFoundError"]
