"""Shared machinery of the two latent-video diffusion baselines (Endora, Bora).

Both are DiT-style denoisers on the latents of a per-frame SD VAE (``AutoencoderKL``, scaling 0.18215), trained
with the DDPM epsilon objective on a linear 1000-step beta schedule (the IDDPM code both released repositories
use), and sampled with DDPM/DDIM. With ``diffusion.learn_sigma`` (both paper presets, as both releases) the
denoiser also predicts IDDPM's variance interpolation and trains it with the VLB term (:func:`diffusion_loss`,
:func:`vlb_terms`, checked against a numpy transcription of IDDPM's formulas in
``tests/test_baselines_learned_variance.py``); DDPM sampling then uses the learned variance. The tiny presets
keep the fixed variance. This module holds what they share; :mod:`baselines.endora` and
:mod:`baselines.bora` add the denoiser, its conditioning and its extra loss terms as a :class:`Recipe`.

Run folder (``train(manifest, out)``), the same layout as an Ophora stage (:mod:`ophora.training.trainer`)::

    run.json                 generator, preset (name, fingerprint, full config), manifest and its sha256
    log.csv, loss.png        one row per optimizer step (ophora.training.logs)
    base/                    tiny presets: the built frozen parts (VAE fitted to the clips, T5, DINO)
    cache/                   cache.json, shards/NNNNN.safetensors + .json, index.json: per clip the VAE
                             posterior (mean, logvar) of its frames and the recipe's per-clip tensors
    checkpoints/step_NNNNNNN ophora.training.checkpoint (model, optimizer, LR schedule, RNG states, step)
    model/                   transformer/ (diffusers format), scheduler/, the frozen parts (or their pretrained
                             references), baseline_model.json

Clips: the first window of ``frames`` frames taken every ``frame_interval`` source frames from the clip start
(Endora and Open-Sora take a random window; the first one keeps runs reproducible from the manifest alone),
resized to cover ``height`` x ``width`` (bilinear, antialiased) and centre-cropped. A clip shorter than the window
is skipped, with its reason in ``cache/index.json``; a manifest without any usable clip is an error.

Exact resume: the data order (``BatchPlan``) and every random draw of step ``s`` (posterior sample, timesteps,
noise, caption dropout) come from generators seeded by (seed, s, process), and the checkpoint holds model,
optimizer, LR schedule and RNG states, so a killed and resumed run ends with the same weights as an uninterrupted
one, bit for bit on CPU.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import torch
import yaml

from ophora.configs import PresetError, apply_overrides
from ophora.data import manifests
from ophora.data.atomic import atomic_path, atomic_write_text
from ophora.data.video import Strided, VideoDecodeError, read_video
from ophora.hashing import sha256_file
from ophora.registry import did_you_mean
from ophora.seeding import derive_seed

__all__ = ["DataSpec", "VaeSpec", "DiffusionSpec", "TrainSpec", "SamplingSpec", "load_spec", "spec_fingerprint",
           "TrainClip", "read_training_clips", "load_window", "resolve_pretrained", "resolve_weights", "build_vae",
           "LatentCache", "Recipe", "train_baseline", "generate_videos", "sample_latents", "decode_latents",
           "read_baseline_info", "compute_device", "diffusion_loss", "vlb_terms", "learned_log_variance",
           "INFO_NAME", "MODEL_NAME", "RUN_NAME"]

PRESET_DIR = Path(__file__).parent / "configs"
INFO_NAME, MODEL_NAME, RUN_NAME = "baseline_model.json", "model", "run.json"
CACHE, SHARDS = "cache", "shards"


# ---------------------------------------------------------------------------------------------------------
# Presets


@dataclass(frozen=True)
class DataSpec:
    """Clip geometry: ``frames`` frames taken every ``frame_interval`` source frames, ``height`` x ``width``
    pixels; generated videos are written at ``fps``."""

    frames: int = 16
    height: int = 128
    width: int = 128
    fps: float = 8.0
    frame_interval: int = 3

    def __post_init__(self):
        for name in ("frames", "height", "width", "frame_interval"):
            if getattr(self, name) < 1:
                raise PresetError(name, f"must be positive, got {getattr(self, name)}")
        if self.height % 2 or self.width % 2:
            raise PresetError("height", f"H.264 needs even sizes, got {self.height}x{self.width}")
        if self.fps <= 0:
            raise PresetError("fps", f"must be positive, got {self.fps}")


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
            raise PresetError("config", "a tiny VAE needs AutoencoderKL arguments (or set pretrained)")
        if self.pretrained is not None and (self.config or self.fit_steps):
            raise PresetError("pretrained", "give either pretrained or a tiny config (with fit_steps), not both")
        if self.fit_steps < 0 or self.fit_batch_size < 1 or self.fit_clips < 1:
            raise PresetError("fit_steps", "fit_steps must be >= 0, fit_batch_size and fit_clips >= 1")
        from diffusers import AutoencoderKL

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
    (both released recipes use a constant LR), so a run extended to more ``max_steps`` continues exactly."""

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

    def __post_init__(self):
        for name in ("learning_rate", "max_steps", "batch_size", "checkpoint_every", "shard_size"):
            if getattr(self, name) <= 0:
                raise PresetError(name, f"must be positive, got {getattr(self, name)}")
        if self.checkpoints_kept is not None and self.checkpoints_kept < 1:
            raise PresetError("checkpoints_kept", f"must be at least 1 or null, got {self.checkpoints_kept}")
        if self.max_grad_norm < 0 or self.lr_warmup_steps < 0 or self.weight_decay < 0:
            raise PresetError("max_grad_norm", "max_grad_norm, lr_warmup_steps and weight_decay must be >= 0")


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
            raise PresetError("steps", "steps and batch_size must be at least 1")
        if self.guidance_scale < 0:
            raise PresetError("guidance_scale", f"must not be negative, got {self.guidance_scale}")


def constructor_arguments(init) -> set[str]:
    """Keyword arguments a constructor accepts (for validating component arguments in presets)."""
    import inspect

    return {p for p in inspect.signature(init).parameters if p not in ("self", "kwargs")}


def config_arguments(config_cls) -> set[str]:
    """Keys a transformers config class knows (its defaults and attribute aliases)."""
    return set(config_cls().to_dict()) | set(getattr(config_cls, "attribute_map", {}))


def check_arguments(key: str, given: Mapping, accepted: set[str], what: str) -> None:
    """Raise :class:`PresetError` naming the first argument of ``given`` that ``what`` does not accept."""
    unknown = sorted(set(given) - accepted)
    if unknown:
        hint = did_you_mean(unknown[0], accepted)
        raise PresetError(f"{key}.{unknown[0]}", f"unknown {what} argument(s) {unknown}{'; ' + hint if hint else ''}")


def preset_names(generator: str) -> list[str]:
    """Presets shipped for ``generator`` (``baselines/configs/<generator>_<name>.yaml``)."""
    prefix = f"{generator}_"
    return sorted(p.stem[len(prefix):] for p in PRESET_DIR.glob(f"{prefix}*.yaml"))


def load_spec(cls, generator: str, preset: str | os.PathLike | Mapping, overrides: Mapping[str, Any] | None = None):
    """Validate a preset (a shipped name, a YAML path, or a mapping) with dotted ``overrides`` into ``cls``.

    Unknown keys and bad values raise :class:`PresetError` naming the dotted key and the file."""
    if isinstance(preset, Mapping):
        raw, source = dict(preset), "(mapping)"
    else:
        text = os.fspath(preset)
        path = PRESET_DIR / f"{generator}_{text}.yaml" if text in preset_names(generator) else Path(text)
        if not path.is_file():
            hint = did_you_mean(text, preset_names(generator))
            raise PresetError("(preset)", f"unknown {generator} preset {text!r}; expected one of "
                                          f"{preset_names(generator)} or a YAML file{'; ' + hint if hint else ''}")
        raw, source = yaml.safe_load(path.read_text(encoding="utf-8")), str(path)
        if not isinstance(raw, dict):
            raise PresetError("(file)", "expected a mapping at the top level", source)
    raw = {k: v for k, v in raw.items() if not str(k).startswith(".")}
    raw = apply_overrides(raw, dict(overrides or {}), source)
    from ophora.configs import build_config  # the suite's one dataclass validator (keys, types, did-you-mean)

    spec = build_config(cls, raw, source)
    if getattr(spec, "generator", generator) != generator:
        raise PresetError("generator", f"this preset is for {spec.generator!r}, not {generator!r}", source)
    return spec


_RUN_ONLY = {"train": ("max_steps", "checkpoint_every", "checkpoints_kept"), "sampling": None}


def spec_fingerprint(spec) -> str:
    """Short hash of what makes checkpoints compatible: everything but the run length, checkpoint cadence
    and sampler."""
    payload = dataclasses.asdict(spec)
    if not payload.get("diffusion", {}).get("learn_sigma", True):
        payload["diffusion"].pop("learn_sigma")  # fixed variance: the fingerprints from before the option
    for section, keys in _RUN_ONLY.items():
        if keys is None:
            payload.pop(section, None)
        else:
            payload[section] = {k: v for k, v in payload[section].items() if k not in keys}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# Clips


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
    video = read_video(path, select=Strided(data.frames, data.frame_interval))  # uint8 [T, H0, W0, 3]
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    scale = max(data.height / x.shape[2], data.width / x.shape[3])
    size = (max(data.height, round(x.shape[2] * scale)), max(data.width, round(x.shape[3] * scale)))
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - data.height) // 2, (size[1] - data.width) // 2
    return x[:, :, top:top + data.height, left:left + data.width].clamp(-1, 1).contiguous()


def _usable_windows(clips: list[TrainClip], data: DataSpec, limit: int) -> list[torch.Tensor]:
    """Up to ``limit`` loadable windows, evenly spaced over the clips (for fitting a tiny VAE)."""
    picks = sorted({round(i) for i in np.linspace(0, len(clips) - 1, min(limit, len(clips)))})
    windows = []
    for i in picks:
        try:
            windows.append(load_window(clips[i].path, data))
        except (VideoDecodeError, ValueError):
            continue
    return windows


# ---------------------------------------------------------------------------------------------------------
# Frozen parts


def resolve_pretrained(name_or_path: str) -> Path:
    """A pretrained folder: a weights-registry name (``python -m ophora.weights list``) or a local path."""
    from ophora import weights

    return resolve_weights(name_or_path, sorted(getattr(weights, "FOLDERS", {})), "pretrained weights",
                           "a pretrained folder of the weights registry", "path")


def resolve_weights(name_or_path: str | os.PathLike, registered: Sequence[str], what: str, registry_kind: str,
                    local_kind: str, is_file: bool = False) -> Path:
    """``name_or_path`` as one of the ``registered`` weights-registry names (found and checked by
    :func:`ophora.weights.resolve`) or an existing local path (a file when ``is_file``); otherwise a
    FileNotFoundError naming both, with the closest registered name."""
    from ophora import weights

    text = os.fspath(name_or_path)
    if text in registered:
        return weights.resolve(text)
    path = Path(text).expanduser()
    if not (path.is_file() if is_file else path.exists()):
        hint = did_you_mean(text, registered)
        raise FileNotFoundError(f"{what} {text!r}: neither {registry_kind} ({', '.join(registered)}"
                                f"{'; ' + hint if hint else ''}) nor an existing {local_kind} ({path.resolve()})")
    return path


def missing_pretrained(spec) -> list[tuple[str, str, str]]:
    """(asset, where it must be, how to get it) for each pretrained folder ``spec`` names (VAE, DINO prior, T5)
    that is not on this machine; tiny presets name none."""
    from ophora import weights

    missing = []
    for part in ("vae", "prior", "text"):
        name = getattr(getattr(spec, part, None), "pretrained", None)
        if not name:
            continue
        try:
            resolve_pretrained(name)
        except (FileNotFoundError, KeyError, RuntimeError):
            registered = name in getattr(weights, "FOLDERS", {})
            where = weights.candidate_paths(name)[0] if registered else Path(name).expanduser().resolve()
            how = (f"python -m ophora.weights fetch {name}  (prints the download command)" if registered else
                   "a local pretrained folder")
            missing.append((f"{part} weights ({name})", str(where), how))
    return missing


def _seeded(seed: int, build: Callable):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_vae(spec: VaeSpec, clips: list[TrainClip], data: DataSpec, folder: Path) -> tuple[Any, dict]:
    """The frozen VAE (eval, no gradients) and a record of how it was made. A tiny VAE is built, fitted and
    saved once under ``folder``; later calls load it."""
    from diffusers import AutoencoderKL

    if spec.pretrained is not None:
        vae = AutoencoderKL.from_pretrained(resolve_pretrained(spec.pretrained))
        return vae.eval().requires_grad_(False), {"pretrained": spec.pretrained}
    if (folder / "config.json").is_file():
        record = json.loads((folder / "fit.json").read_text())
        return AutoencoderKL.from_pretrained(folder).eval().requires_grad_(False), record
    vae = _seeded(spec.seed, lambda: AutoencoderKL(**spec.config))
    if spec.posterior_logvar is not None:
        _fix_posterior_logvar(vae, spec.posterior_logvar)
    record: dict[str, Any] = {"fit_steps": spec.fit_steps}
    if spec.fit_steps:
        record.update(_fit(vae, spec, clips, data))
    vae.eval().requires_grad_(False)
    from ophora.model.store import atomic_dir

    with atomic_dir(folder) as tmp:
        vae.save_pretrained(tmp)
        (tmp / "fit.json").write_text(json.dumps(record, indent=2) + "\n")
    return vae, record


def _fit(vae, spec: VaeSpec, clips: list[TrainClip], data: DataSpec) -> dict:
    from ophora.model.vae_fit import fit_vae

    windows = _usable_windows(clips, data, spec.fit_clips)
    if not windows:
        raise ValueError(f"no clip holds {data.frames} frames every {data.frame_interval} to fit the VAE on")
    frames = torch.cat(windows)  # [N*T, 3, H, W]
    losses = fit_vae(vae, frames, spec.fit_steps, learning_rate=spec.fit_learning_rate,
                     batch_size=spec.fit_batch_size, seed=spec.seed)
    tail = losses[-min(10, len(losses)):]
    return {"clips": len(windows), "frames": len(frames), "mse_first_step": losses[0],
            "mse_last_steps": sum(tail) / len(tail)}


@torch.no_grad()
def _fix_posterior_logvar(vae, logvar: float) -> None:
    """Make the encoder's log-variance channels (second half of ``conv_out``) output the constant ``logvar``."""
    conv = vae.encoder.conv_out
    half = conv.out_channels // 2
    conv.weight[half:].zero_()
    conv.bias[half:].fill_(logvar)


def vae_scaling(vae) -> float:
    return float(vae.config.scaling_factor)


# ---------------------------------------------------------------------------------------------------------
# Recipes: what differs between the baselines


class Recipe:
    """A baseline's parts. Subclasses set ``name``/``conditional`` and implement the methods below."""

    name: str = ""
    conditional: bool = False

    def frozen(self, spec, clips: list[TrainClip], base: Path) -> dict[str, Any]:
        """Build or load the frozen parts (``vae`` plus e.g. T5 or DINO) into a dict; record in ``"record"``."""
        raise NotImplementedError

    def clip_tensors(self, spec, frozen: dict, frames: torch.Tensor, text: str) -> dict[str, torch.Tensor]:
        """Extra tensors to cache for one clip (``frames`` float [T, 3, H, W] in [-1, 1])."""
        return {}

    def build_model(self, spec) -> torch.nn.Module:
        """The trainable module (seeded by the caller)."""
        raise NotImplementedError

    def loss(self, model, spec, scheduler, latents: torch.Tensor, extras: dict[str, torch.Tensor],
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss of a batch: ``latents`` [B, C, T, h, w] (scaled), ``extras`` the cached tensors."""
        raise NotImplementedError

    def save_model(self, model, spec, frozen: dict, folder: Path) -> None:
        """Write the trained weights and the frozen parts (or their references) into ``folder``."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------
# Latent cache


class LatentCache:
    """Per clip: ``mean``/``logvar`` [T, C, h, w] of the VAE posterior and the recipe's tensors, in shards."""

    def __init__(self, root: Path):
        self.root = root
        index = json.loads((root / "index.json").read_text())
        self.items, self.skipped = index["items"], index["skipped"]
        if not self.items:
            reasons = "; ".join(f"{s['key']}: {s['reason']}" for s in self.skipped[:5])
            raise ValueError(f"no usable clip in the manifest ({len(self.skipped)} skipped: {reasons})")

    def __len__(self) -> int:
        return len(self.items)

    @lru_cache(maxsize=32)
    def _handle(self, shard: int):
        from safetensors import safe_open

        return safe_open(str(self.root / SHARDS / f"{shard:05d}.safetensors"), "pt")

    def load(self, i: int) -> dict[str, torch.Tensor]:
        item = self.items[i]
        handle = self._handle(item["shard"])
        prefix = f"{item['key']}/"
        return {name[len(prefix):]: handle.get_tensor(name).float() for name in item["tensors"]}

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        parts = [self.load(i) for i in indices]
        return {name: torch.stack([p[name] for p in parts]) for name in parts[0]}


def _manifest_record(manifest: Path) -> dict[str, str]:
    return {"manifest": str(manifest.resolve()), "manifest_sha256": sha256_file(manifest)}


@torch.no_grad()
def build_cache(recipe: Recipe, spec, frozen: dict, clips: list[TrainClip], root: Path, record: dict,
                progress: bool = False) -> LatentCache:
    """Encode every clip once (resumable shard by shard); refuses a cache made by other frozen parts."""
    from safetensors.torch import save_file
    from tqdm import tqdm

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
            _encode_shard(recipe, spec, frozen, clips[shard * size:(shard + 1) * size], shard, root, save_file)
        part = json.loads(done.read_text())
        items += part["items"]
        skipped += part["skipped"]
    atomic_write_text(root / "index.json", json.dumps({"items": items, "skipped": skipped}, indent=1) + "\n")
    return LatentCache(root)


def _encode_shard(recipe: Recipe, spec, frozen: dict, clips: list[TrainClip], shard: int, root: Path,
                  save_file) -> None:
    tensors, items, skipped = {}, [], []
    vae = frozen["vae"]
    for clip in clips:
        try:
            frames = load_window(clip.path, spec.data)
        except (VideoDecodeError, ValueError) as err:
            skipped.append({"key": clip.key, "path": str(clip.path), "reason": str(err)})
            continue
        frames = frames.to(vae.device)
        dist = vae.encode(frames).latent_dist
        own = {"mean": dist.mean, "logvar": dist.logvar, **recipe.clip_tensors(spec, frozen, frames, clip.text)}
        tensors.update({f"{clip.key}/{k}": v.contiguous().float().cpu() for k, v in own.items()})
        items.append({"key": clip.key, "text": clip.text, "shard": shard, "tensors": [f"{clip.key}/{k}" for k in own]})
    folder = root / SHARDS
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{shard:05d}.safetensors") as tmp:
        save_file(tensors or {"empty": torch.zeros(1)}, str(tmp))
    atomic_write_text(folder / f"{shard:05d}.json", json.dumps({"items": items, "skipped": skipped}) + "\n")


# ---------------------------------------------------------------------------------------------------------
# Training


def _run_record(recipe: Recipe, spec, manifest: Path, kind: str) -> dict:
    learned = {"learn_sigma": True} if spec.diffusion.learn_sigma else {}  # absent: fixed variance (older runs)
    return {"generator": recipe.name, "preset": spec.name, "preset_fingerprint": spec_fingerprint(spec),
            "manifest_kind": kind, **learned, **_manifest_record(manifest)}


def _check_run_folder(out: Path, record: dict) -> None:
    path = out / RUN_NAME
    if not path.is_file():
        return
    found = json.loads(path.read_text())
    changed = {k: (found.get(k), v) for k, v in record.items() if found.get(k) != v}
    if changed:
        raise ValueError(f"{out} holds another run ({changed}; found vs requested): a run folder or checkpoint "
                         f"of another preset, generator or manifest cannot be resumed; choose another out folder")


def train_baseline(recipe: Recipe, manifest: str | os.PathLike, out: str | os.PathLike, spec,
                   stop_after: int | None = None, progress: bool = False) -> Path:
    """Train (or resume, or return at once when finished) a baseline on ``manifest`` into ``out``.

    Returns ``out/model``, or after ``stop_after`` steps of this call the latest checkpoint (a killed job)."""
    manifest, out = Path(manifest), Path(os.path.abspath(out))
    clips, kind = read_training_clips(manifest)
    record = _run_record(recipe, spec, manifest, kind)
    _check_run_folder(out, record)
    if (out / MODEL_NAME / INFO_NAME).is_file():
        return out / MODEL_NAME
    return _Session(recipe, spec, clips, out, record, progress).loop(stop_after)


class _Session:
    """One call of train: frozen parts, cache, model, optimizer, restored state."""

    def __init__(self, recipe: Recipe, spec, clips: list[TrainClip], out: Path, record: dict, progress: bool):
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler

        from ophora.results import write_json
        from ophora.training import checkpoint as ckpt
        from ophora.training.distributed import make_accelerator

        self.recipe, self.spec, self.out, self.record, self.progress = recipe, spec, out, record, progress
        train = spec.train
        self.acc = make_accelerator(mixed_precision=train.mixed_precision)
        with self.acc.main_process_first():
            self.frozen = recipe.frozen(spec, clips, out / "base")
            for part in self.frozen.values():
                if isinstance(part, torch.nn.Module):
                    part.to(self.acc.device)  # encode the cache on the accelerator
            cache_record = {"generator": recipe.name, "preset_fingerprint": record["preset_fingerprint"],
                            "manifest_sha256": record["manifest_sha256"], "frozen": self.frozen["record"]}
            self.cache = build_cache(recipe, spec, self.frozen, clips, out / CACHE, cache_record, progress)
        self.scheduler = DDPMScheduler(**spec.diffusion.scheduler_config())
        model = _seeded(derive_seed(train.seed, "init"), lambda: recipe.build_model(spec))
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=train.learning_rate, betas=(train.adam_beta1, train.adam_beta2),
                                      weight_decay=train.weight_decay)
        self.lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=train.lr_warmup_steps)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.acc.register_for_checkpointing(self.lr_schedule)
        if self.acc.is_main_process and not (out / RUN_NAME).is_file():
            write_json(out / RUN_NAME, {**record, "skipped_clips": self.cache.skipped}, config=spec, seed=train.seed)
        latest = ckpt.latest_checkpoint(out)
        self.start = ckpt.load_checkpoint(self.acc, latest)["step"] if latest else 0
        from ophora.training.data import BatchPlan  # data order: a pure function of (seed, step)

        self.plan = BatchPlan([(0, 0, 0)] * len(self.cache), train.batch_size * self.acc.num_processes, train.seed)

    def _step_loss(self, step: int) -> tuple[torch.Tensor, int]:
        acc, train = self.acc, self.spec.train
        rank = acc.process_index
        indices = self.plan.batch(step)[rank * train.batch_size:(rank + 1) * train.batch_size]
        batch = {k: v.to(acc.device) for k, v in self.cache.batch(indices).items()}
        generator = torch.Generator().manual_seed(derive_seed(train.seed, "local", step, rank))
        mean, logvar = batch.pop("mean"), batch.pop("logvar")
        noise = torch.randn(mean.shape, generator=generator).to(acc.device)
        sample = (mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise) * vae_scaling(self.frozen["vae"])
        latents = sample.permute(0, 2, 1, 3, 4).contiguous()  # [B, T, C, h, w] -> [B, C, T, h, w]
        shared = torch.Generator().manual_seed(derive_seed(train.seed, "shared", step))
        batch["timesteps"] = _timesteps(latents.shape[0], acc, self.scheduler, train, shared, generator)
        loss, _ = self.recipe.loss(self.model, self.spec, self.scheduler, latents, batch, generator)
        return loss, len(indices) * acc.num_processes

    def loop(self, stop_after: int | None) -> Path:
        from tqdm import tqdm

        from ophora.training import checkpoint as ckpt
        from ophora.training.logs import TrainLog, plot_loss

        acc, train, out = self.acc, self.spec.train, self.out
        log = TrainLog(out, self.start) if acc.is_main_process else None
        bar = tqdm(total=train.max_steps, initial=self.start, desc=self.recipe.name,
                   disable=not (self.progress and acc.is_local_main_process))
        tick = time.perf_counter()
        for step in range(self.start, train.max_steps):
            loss, samples = self._step_loss(step)
            acc.backward(loss)
            if train.max_grad_norm:
                acc.clip_grad_norm_(self.model.parameters(), train.max_grad_norm)
            lr = self.lr_schedule.get_last_lr()[0]
            self.optimizer.step()
            self.lr_schedule.step()
            self.optimizer.zero_grad(set_to_none=True)
            value, now = acc.reduce(loss.detach(), "mean").item(), time.perf_counter()
            if log:
                log.append(step + 1, value, lr, samples / (now - tick))
            tick = now
            bar.update(1)
            if (step + 1) % train.checkpoint_every == 0 or step + 1 == train.max_steps:
                ckpt.save_checkpoint(acc, out, step + 1, {**self.record, "config": dataclasses.asdict(self.spec)})
                if acc.is_main_process:
                    ckpt.prune_checkpoints(out, train.checkpoints_kept)
                    plot_loss(out)
            if stop_after is not None and step + 1 - self.start >= stop_after and step + 1 < train.max_steps:
                bar.close()
                return ckpt.latest_checkpoint(out)
        bar.close()
        return self._finish(train.max_steps)

    def _finish(self, step: int) -> Path:
        from ophora.model.store import atomic_dir
        from ophora.training.logs import plot_loss

        acc = self.acc
        acc.wait_for_everyone()
        if acc.is_main_process:
            model = acc.unwrap_model(self.model)
            with atomic_dir(self.out / MODEL_NAME) as tmp:
                self.recipe.save_model(model, self.spec, self.frozen, tmp)
                self.scheduler.save_pretrained(tmp / "scheduler")
                info = {**self.record, "step": step, "config": dataclasses.asdict(self.spec),
                        "variance": "learned_range" if self.spec.diffusion.learn_sigma else "fixed_small",
                        "frozen": self.frozen["record"], "clips": len(self.cache),
                        "skipped_clips": len(self.cache.skipped)}
                (tmp / INFO_NAME).write_text(json.dumps(info, indent=2, default=str) + "\n")
            plot_loss(self.out)
        acc.wait_for_everyone()
        return self.out / MODEL_NAME


def _timesteps(batch: int, acc, scheduler, train: TrainSpec, shared, local) -> torch.Tensor:
    from ophora.training.objective import sample_timesteps

    return sample_timesteps(batch, acc.process_index, acc.num_processes, scheduler.config.num_train_timesteps,
                            train.timestep_sampling == "stratified", shared, local).to(acc.device)


def epsilon_mse(prediction: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the predicted noise (per sample mean, then batch mean)."""
    error = (prediction.float() - noise.float()) ** 2
    return error.reshape(error.shape[0], -1).mean(dim=1).mean()


def diffusion_loss(output: torch.Tensor, noise: torch.Tensor, x_start: torch.Tensor, x_t: torch.Tensor,
                   timesteps: torch.Tensor, scheduler) -> tuple[torch.Tensor, dict[str, float]]:
    """The denoising loss of a batch and its parts. ``output`` [B, C, ...]: epsilon MSE; ``output``
    [B, 2C, ...] (learned variance): IDDPM's hybrid loss (LossType.MSE with LEARNED_RANGE, as Latte, DiT and
    Open-Sora 1.0 train): ``mean_b(mse_b + vlb_b)`` with the VLB in bits per dim on the epsilon half detached,
    so it trains the variance only."""
    channels = noise.shape[1]
    if output.shape[1] == channels:
        mse = epsilon_mse(output, noise)
        return mse, {"mse": mse.item()}
    if output.shape[1] != 2 * channels:
        raise ValueError(f"denoiser output has {output.shape[1]} channels; expected {channels} (epsilon) or "
                         f"{2 * channels} (epsilon + learned variance)")
    eps, v = output[:, :channels], output[:, channels:]
    mse = epsilon_mse(eps, noise)
    vlb = vlb_terms(scheduler, x_start, x_t, timesteps, eps.detach(), v).mean()
    return mse + vlb, {"mse": mse.item(), "vlb": vlb.item()}


def _diffusion_arrays(scheduler_or_betas) -> dict[str, np.ndarray]:
    """IDDPM's float64 schedule arrays for ``betas`` [N] (or a diffusers scheduler's ``betas``)."""
    betas = getattr(scheduler_or_betas, "betas", scheduler_or_betas)
    betas = np.asarray(betas.double().cpu() if isinstance(betas, torch.Tensor) else betas, dtype=np.float64)
    alphas = 1.0 - betas
    cumprod = np.cumprod(alphas)
    prev = np.append(1.0, cumprod[:-1])
    posterior = betas * (1.0 - prev) / (1.0 - cumprod)
    return {"betas": betas, "cumprod": cumprod, "posterior_log_variance_clipped":
            np.log(np.append(posterior[1], posterior[1:])) if len(betas) > 1 else np.log(betas),
            "coef_start": betas * np.sqrt(prev) / (1.0 - cumprod),
            "coef_t": (1.0 - prev) * np.sqrt(alphas) / (1.0 - cumprod)}


def learned_log_variance(scheduler_or_betas, timesteps: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """IDDPM's LEARNED_RANGE log variance: ``frac * log(beta_t) + (1 - frac) * log(posterior variance_t)``
    (clipped at t = 0), ``frac = (v + 1) / 2``; ``v`` [B, ...], ``timesteps`` [B] -> like ``v``."""
    return _learned_log_variance(_diffusion_arrays(scheduler_or_betas), timesteps, v)


def _learned_log_variance(arrays: dict[str, np.ndarray], timesteps: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    min_log = _gather(arrays["posterior_log_variance_clipped"], timesteps, v)
    max_log = _gather(np.log(arrays["betas"]), timesteps, v)
    frac = (v.float() + 1) / 2
    return frac * max_log + (1 - frac) * min_log


def _gather(array: np.ndarray, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``array[timesteps]`` as float32 shaped [B, 1, ...] to broadcast against ``like``."""
    values = torch.from_numpy(array).to(like.device)[timesteps.long()].float()
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def _normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _discretized_gaussian_log_likelihood(x, means, log_scales) -> torch.Tensor:
    """log P(x) of x (data in [-1, 1], bins of 2/255) under N(means, e^(2 log_scales)), elementwise, in nats;
    the edge bins take the tails (IDDPM's decoder at t = 0)."""
    centered, inv_std = x - means, torch.exp(-log_scales)
    cdf_plus = _approx_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def vlb_terms(scheduler_or_betas, x_start: torch.Tensor, x_t: torch.Tensor, timesteps: torch.Tensor,
              mean_eps: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """IDDPM's ``_vb_terms_bpd`` per sample, in bits per dim: [B].

    ``x_start``, ``x_t``, ``mean_eps`` (the predicted epsilon that sets the model mean; pass it detached to
    train only the variance, as IDDPM's ``frozen_out``) and ``v`` (the variance interpolation in [-1, 1]) are
    [B, C, ...]; ``timesteps`` [B] index the schedule (``betas`` [N] or a scheduler's). t > 0: KL(q(x_{t-1} |
    x_t, x_0) || p(x_{t-1} | x_t)); t == 0: the discretized Gaussian NLL of ``x_start`` (bins 2/255)."""
    arrays = _diffusion_arrays(scheduler_or_betas)
    x_start, x_t, mean_eps = x_start.float(), x_t.float(), mean_eps.float()
    cumprod = _gather(arrays["cumprod"], timesteps, x_t)
    coef_start, coef_t = _gather(arrays["coef_start"], timesteps, x_t), _gather(arrays["coef_t"], timesteps, x_t)
    true_mean = coef_start * x_start + coef_t * x_t
    true_log_variance = _gather(arrays["posterior_log_variance_clipped"], timesteps, x_t)
    pred_start = torch.sqrt(1.0 / cumprod) * x_t - torch.sqrt(1.0 / cumprod - 1.0) * mean_eps
    model_mean = coef_start * pred_start + coef_t * x_t
    model_log_variance = _learned_log_variance(arrays, timesteps, v)
    kl = _normal_kl(true_mean, true_log_variance, model_mean, model_log_variance)
    nll = -_discretized_gaussian_log_likelihood(x_start, model_mean, 0.5 * model_log_variance)
    per_dim = torch.where(timesteps.reshape(-1, *([1] * (x_t.ndim - 1))) == 0, nll, kl)
    return per_dim.reshape(per_dim.shape[0], -1).mean(dim=1) / math.log(2.0)


# ---------------------------------------------------------------------------------------------------------
# Model folders and sampling


def read_baseline_info(model: str | os.PathLike, generator: str) -> dict:
    """``baseline_model.json`` of a model folder ``train`` wrote for ``generator``; clear errors otherwise."""
    path = Path(model) / INFO_NAME
    if not path.is_file():
        raise FileNotFoundError(f"not a {generator} model folder: expected {path.resolve()} (the model/ folder "
                                f"that {generator}'s train returns)")
    info = json.loads(path.read_text())
    if info.get("generator") != generator:
        raise ValueError(f"{model} holds a {info.get('generator')!r} model, not a {generator!r} one")
    return info


def sampling_scheduler(model_dir: Path, sampling: SamplingSpec):
    """The sampler of ``sampling`` on the model's training noise schedule; a learned-variance model's saved
    schedule holds ``variance_type="learned_range"``, so its DDPM sampler draws with the learned variance."""
    from diffusers import DDIMScheduler, DDPMScheduler

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
    from diffusers import DDPMScheduler

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
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def generate_videos(generator: str, model_dir: str | os.PathLike, prompts, out: str | os.PathLike,
                    videos_per_prompt: int, seed: int, settings: dict[str, Any], batch_size: int, fps: float,
                    render: Callable[[list], np.ndarray], progress: bool = False) -> list[Path]:
    """Write the missing videos into ``out`` like :func:`ophora.generation.sampler.generate`: ``iiiii_kk.mp4``
    with seed ``derive_seed(seed, i, k)``, written then renamed, then one ``manifest.jsonl`` line; a
    ``generation.json`` refuses other settings. ``render(jobs)`` -> uint8 [B, T, H, W, 3]."""
    from ophora.generation.sampler import write_videos
    from ophora.model import transformer_sha256

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
