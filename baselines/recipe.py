"""What differs between the latent-video baselines: a :class:`Recipe` per baseline (``baselines.endora``,
``baselines.bora``) gives the frozen parts, the per-clip tensors to cache, the denoiser, its loss and how the
model folder is written; :mod:`baselines.training` runs any recipe."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from baselines.clips import TrainClip

__all__ = ["Recipe"]


class Recipe:
    """A baseline's parts. Subclasses set ``name``/``conditional`` and implement the methods below."""

    name: str = ""
    conditional: bool = False
    per_frame: tuple[str, ...] = ()  # which of clip_tensors' tensors are per frame (time first): cut to the window

    def frozen(self, spec, clips: list[TrainClip], base: Path) -> dict[str, Any]:
        """Build or load the frozen parts (``vae`` plus e.g. T5 or DINO) into a dict; record in ``"record"``."""
        raise NotImplementedError

    def clip_tensors(self, spec, frozen: dict, frames: torch.Tensor, text: str) -> dict[str, torch.Tensor]:
        """Extra tensors to cache for one clip (``frames`` float [T, 3, H, W] in [-1, 1]); those named in
        ``per_frame`` have time first and are cut to the step's window."""
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

