"""The baselines' presets: ``baselines/configs/<generator>_<name>.yaml`` -> frozen dataclasses.

The sections every latent-video baseline shares (:class:`DataSpec`, :class:`VaeSpec`, :class:`DiffusionSpec`,
:class:`TrainSpec`, :class:`SamplingSpec`); each baseline's spec (``baselines.endora.EndoraSpec``,
``baselines.bora.BoraSpec``) nests them beside its own sections. :func:`load_spec` validates a preset with the
suite's one config validator (:func:`ophora.configs.build_config`: dotted key, file, did-you-mean);
:func:`spec_fingerprint` says which run folders and checkpoints a spec may resume.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from diffusers import AutoencoderKL

from ophora.configs import ConfigError, apply_overrides, build_config
from ophora.hashing import cache_key
from ophora.registry import did_you_mean

__all__ = ["DataSpec", "VaeSpec", "DiffusionSpec", "TrainSpec", "SamplingSpec", "load_spec", "spec_fingerprint",
           "preset_names", "check_arguments", "constructor_arguments", "config_arguments", "PRESET_DIR"]

PRESET_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class DataSpec:
    """Clip geometry: ``frames`` frames taken every ``frame_interval`` source frames, ``height`` x ``width``
    pixels; generated videos are written at ``fps``.

    ``window``: ``random`` (Endora's ``TemporalRandomCrop``, Open-Sora's random window: each step draws the
    window's start, on the ``frame_interval`` grid, from the clip's first ``max_window_starts`` possible starts)
    or ``first`` (the clip's first window: runs reproducible from the manifest alone). ``flip``: each step
    mirrors the clip horizontally with probability 1/2 (Endora's ``RandomHorizontalFlipVideo``; both versions
    are encoded once into the cache). ``image_num``: Endora's joint image-video training (``use_image_num``):
    each sample also carries that many single frames of random clips (never mirrored: Endora's image transform has
    no flip), denoised as images (spatial blocks only, the sample's timestep)."""

    frames: int = 16
    height: int = 128
    width: int = 128
    fps: float = 8.0
    frame_interval: int = 3
    window: Literal["random", "first"] = "first"
    flip: bool = False
    image_num: int = 0
    max_window_starts: int = 64

    def __post_init__(self):
        for name in ("frames", "height", "width", "frame_interval", "max_window_starts"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be positive, got {getattr(self, name)}")
        if self.image_num < 0:
            raise ConfigError("image_num", f"must not be negative, got {self.image_num}")
        if self.height % 2 or self.width % 2:
            raise ConfigError("height", f"H.264 needs even sizes, got {self.height}x{self.width}")
        if self.fps <= 0:
            raise ConfigError("fps", f"must be positive, got {self.fps}")


@dataclass(frozen=True)
class VaeSpec:
    """The frozen per-frame VAE: ``pretrained`` (a weights-registry name such as ``sd-vae-ft-ema``, or a
    diffusers AutoencoderKL folder) or, when null, a tiny ``AutoencoderKL(**config)`` with seeded random
    weights, fitted ``fit_steps`` AdamW steps to the training clips' frames (ophora.model.vae_fit) and with
    its posterior log-variance fixed to ``posterior_logvar`` (a trained VAE's posterior is nearly
    deterministic; a random one's would bury the frames in sampling noise)."""

    pretrained: str | None = None
    config: dict = field(default_factory=dict)
    seed: int = 0
    fit_steps: int = 0
    fit_learning_rate: float = 3e-3
    fit_batch_size: int = 16
    fit_clips: int = 64
    posterior_logvar: float | None = None

    def __post_init__(self):
        if self.pretrained is None and not self.config:
            raise ConfigError("config", "a tiny VAE needs AutoencoderKL arguments (or set pretrained)")
        if self.pretrained is not None and (self.config or self.fit_steps):
            raise ConfigError("pretrained", "give either pretrained or a tiny config (with fit_steps), not both")
        if self.fit_steps < 0 or self.fit_batch_size < 1 or self.fit_clips < 1:
            raise ConfigError("fit_steps", "fit_steps must be >= 0, fit_batch_size and fit_clips >= 1")
        check_arguments("config", self.config, constructor_arguments(AutoencoderKL.__init__), "AutoencoderKL")


@dataclass(frozen=True)
class DiffusionSpec:
    """The training noise schedule (diffusers ``DDPMScheduler`` arguments; epsilon prediction).

    ``learn_sigma``: IDDPM's learned variance as Latte/Endora and Open-Sora 1.0 release it: the denoiser outputs
    2C channels (epsilon, then the interpolation ``v`` in [-1, 1] between the log posterior variance and
    log beta), the loss is epsilon MSE + the VLB term (:func:`vlb_terms`, mean detached) and DDPM sampling draws
    with the learned variance (``variance_type="learned_range"``). False (the tiny presets): fixed variance."""

    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    learn_sigma: bool = False

    def scheduler_config(self) -> dict[str, Any]:
        learned = {"variance_type": "learned_range"} if self.learn_sigma else {}
        return {"num_train_timesteps": self.num_train_timesteps, "beta_schedule": self.beta_schedule,
                "beta_start": self.beta_start, "beta_end": self.beta_end, "prediction_type": "epsilon",
                "clip_sample": False, **learned}


@dataclass(frozen=True)
class TrainSpec:
    """One training recipe; ``batch_size`` is per process, the LR is constant after ``lr_warmup_steps``
    (both released recipes use a constant LR), so a run extended to more ``max_steps`` continues exactly.
    ``ema_decay``: keep an EMA of the weights (:func:`ophora.training.loop.make_ema`), checkpoint it and write it
    as the model (so sampling uses it), as Endora and Open-Sora do (0.9999); null: the final weights."""

    learning_rate: float = 1e-4
    max_steps: int = 1000
    batch_size: int = 4
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    lr_warmup_steps: int = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    checkpoints_kept: int | None = None
    timestep_sampling: Literal["uniform", "stratified"] = "uniform"
    shard_size: int = 256
    seed: int = 0
    ema_decay: float | None = None

    def __post_init__(self):
        for name in ("learning_rate", "max_steps", "batch_size", "checkpoint_every", "shard_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be positive, got {getattr(self, name)}")
        if self.checkpoints_kept is not None and self.checkpoints_kept < 1:
            raise ConfigError("checkpoints_kept", f"must be at least 1 or null, got {self.checkpoints_kept}")
        if self.max_grad_norm < 0 or self.lr_warmup_steps < 0 or self.weight_decay < 0:
            raise ConfigError("max_grad_norm", "max_grad_norm, lr_warmup_steps and weight_decay must be >= 0")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError("ema_decay", f"must lie in (0, 1) or be null, got {self.ema_decay}")


@dataclass(frozen=True)
class SamplingSpec:
    """Sampler: ``ddpm`` (ancestral, respaced to ``steps``: IDDPM's sampler) or ``ddim``; classifier-free
    ``guidance_scale`` (conditional models only; 1 turns it off) applied to the first ``cfg_channels`` latent
    channels (null: all; Open-Sora 1.0 uses 3); ``batch_size`` videos per denoising batch."""

    scheduler: Literal["ddpm", "ddim"] = "ddpm"
    steps: int = 250
    guidance_scale: float = 1.0
    cfg_channels: int | None = None
    batch_size: int = 1

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps", "steps and batch_size must be at least 1")
        if self.guidance_scale < 0:
            raise ConfigError("guidance_scale", f"must not be negative, got {self.guidance_scale}")


def constructor_arguments(init) -> set[str]:
    """Keyword arguments a constructor accepts (for validating component arguments in presets)."""
    return {p for p in inspect.signature(init).parameters if p not in ("self", "kwargs")}


def config_arguments(config_cls) -> set[str]:
    """Keys a transformers config class knows (its defaults and attribute aliases)."""
    return set(config_cls().to_dict()) | set(getattr(config_cls, "attribute_map", {}))


def check_arguments(key: str, given: Mapping, accepted: set[str], what: str) -> None:
    """Raise :class:`ConfigError` naming the first argument of ``given`` that ``what`` does not accept."""
    unknown = sorted(set(given) - accepted)
    if unknown:
        hint = did_you_mean(unknown[0], accepted)
        raise ConfigError(f"{key}.{unknown[0]}", f"unknown {what} argument(s) {unknown}{'; ' + hint if hint else ''}")


def preset_names(generator: str) -> list[str]:
    """Presets shipped for ``generator`` (``baselines/configs/<generator>_<name>.yaml``)."""
    prefix = f"{generator}_"
    return sorted(p.stem[len(prefix):] for p in PRESET_DIR.glob(f"{prefix}*.yaml"))


def load_spec(cls, generator: str, preset: str | os.PathLike | Mapping, overrides: Mapping[str, Any] | None = None):
    """Validate a preset (a shipped name, a YAML path, or a mapping) with dotted ``overrides`` into ``cls``.

    Unknown keys and bad values raise :class:`ConfigError` naming the dotted key and the file."""
    if isinstance(preset, Mapping):
        raw, source = dict(preset), "(mapping)"
    else:
        text = os.fspath(preset)
        path = PRESET_DIR / f"{generator}_{text}.yaml" if text in preset_names(generator) else Path(text)
        if not path.is_file():
            hint = did_you_mean(text, preset_names(generator))
            raise ConfigError("(preset)", f"unknown {generator} preset {text!r}; expected one of "
                                          f"{preset_names(generator)} or a YAML file{'; ' + hint if hint else ''}")
        raw, source = yaml.safe_load(path.read_text(encoding="utf-8")), str(path)
        if not isinstance(raw, dict):
            raise ConfigError("(file)", "expected a mapping at the top level", source)
    raw = {k: v for k, v in raw.items() if not str(k).startswith(".")}
    raw = apply_overrides(raw, dict(overrides or {}), source)
    spec = build_config(cls, raw, source)
    if getattr(spec, "generator", generator) != generator:
        raise ConfigError("generator", f"this preset is for {spec.generator!r}, not {generator!r}", source)
    return spec


_RUN_ONLY = {"train": ("max_steps", "checkpoint_every", "checkpoints_kept"), "sampling": None}
# options added later, left out of the fingerprint at their earlier behaviour (so older runs still resume)
_EARLIER = {"data": {"window": "first", "flip": False, "image_num": 0, "max_window_starts": 64},
            "train": {"ema_decay": None}, "prior": {"projection": "mlp", "layers": (), "dino_layers": ()}}


def spec_fingerprint(spec) -> str:
    """Short hash of what makes checkpoints compatible: everything but the run length, checkpoint cadence
    and sampler."""
    payload = dataclasses.asdict(spec)
    if not payload.get("diffusion", {}).get("learn_sigma", True):
        payload["diffusion"].pop("learn_sigma")  # fixed variance: the fingerprints from before the option
    for section, defaults in _EARLIER.items():
        for key, value in defaults.items():
            if payload.get(section, {}).get(key, value) == value:
                payload.get(section, {}).pop(key, None)
    for section, keys in _RUN_ONLY.items():
        if keys is None:
            payload.pop(section, None)
        else:
            payload[section] = {k: v for k, v in payload[section].items() if k not in keys}
    return cache_key(payload)

