"""The baselines' frozen parts: pretrained folders by registry name or path, and the per-frame VAE.

A pretrained part (SD's VAE, DINO, T5, an Open-Sora checkpoint) is a weights-registry name
(:mod:`ophora.weights`) or a local path (:func:`resolve_weights`); :func:`missing_pretrained` lists what a preset
needs that is not on this machine. Tiny presets build their parts with seeded random weights instead; the tiny
VAE is fitted to the training clips once and saved (:func:`build_vae`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from diffusers import AutoencoderKL

from baselines.clips import TrainClip, usable_windows
from baselines.presets import DataSpec, VaeSpec
from ophora import weights
from ophora.data.atomic import atomic_dir
from ophora.model.vae_fit import fit_vae
from ophora.registry import did_you_mean

__all__ = ["resolve_pretrained", "resolve_weights", "missing_pretrained", "seeded", "build_vae", "vae_scaling"]


def resolve_pretrained(name_or_path: str) -> Path:
    """A pretrained folder: a weights-registry name (``python -m ophora.weights list``) or a local path."""
    return resolve_weights(name_or_path, sorted(getattr(weights, "FOLDERS", {})), "pretrained weights",
                           "a pretrained folder of the weights registry", "path")


def resolve_weights(name_or_path: str | os.PathLike, registered: Sequence[str], what: str, registry_kind: str,
                    local_kind: str, is_file: bool = False) -> Path:
    """``name_or_path`` as one of the ``registered`` weights-registry names (found and checked by
    :func:`ophora.weights.resolve`) or an existing local path (a file when ``is_file``); otherwise a
    FileNotFoundError naming both, with the closest registered name."""
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


def seeded(seed: int, build: Callable):
    """``build()`` with torch's global generator seeded by ``seed`` (its state restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_vae(spec: VaeSpec, clips: list[TrainClip], data: DataSpec, folder: Path) -> tuple[Any, dict]:
    """The frozen VAE (eval, no gradients) and a record of how it was made. A tiny VAE is built, fitted and
    saved once under ``folder``; later calls load it."""
    if spec.pretrained is not None:
        vae = AutoencoderKL.from_pretrained(resolve_pretrained(spec.pretrained))
        return vae.eval().requires_grad_(False), {"pretrained": spec.pretrained}
    if (folder / "config.json").is_file():
        record = json.loads((folder / "fit.json").read_text())
        return AutoencoderKL.from_pretrained(folder).eval().requires_grad_(False), record
    vae = seeded(spec.seed, lambda: AutoencoderKL(**spec.config))
    if spec.posterior_logvar is not None:
        _fix_posterior_logvar(vae, spec.posterior_logvar)
    record: dict[str, Any] = {"fit_steps": spec.fit_steps}
    if spec.fit_steps:
        record.update(_fit(vae, spec, clips, data))
    vae.eval().requires_grad_(False)
    with atomic_dir(folder) as tmp:
        vae.save_pretrained(tmp)
        (tmp / "fit.json").write_text(json.dumps(record, indent=2) + "\n")
    return vae, record


def _fit(vae, spec: VaeSpec, clips: list[TrainClip], data: DataSpec) -> dict:
    windows = usable_windows(clips, data, spec.fit_clips)
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
    """The factor between the VAE's posterior sample and the denoiser's latents (0.18215 for SD's VAE)."""
    return float(vae.config.scaling_factor)

