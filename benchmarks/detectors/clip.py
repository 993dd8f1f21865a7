"""open_clip models for CLIPScore: the model, its own image preprocessing and its own tokenizer.

Published weights: ``open_clip.create_model_and_transforms(name, pretrained=<local verified file>)``, with
the architecture flags of the matching open_clip pretrained tag (QuickGELU for OpenAI weights). Random init:
``pretrained=None`` under a fixed torch seed. ``ophora-tiny-clip`` is a registered custom config (2-layer ViT
on 32x32 images, 2-layer text tower, 64-d embeddings) with open_clip's bundled BPE tokenizer, which works
offline: for tests and demos only, its scores compare with nothing.

Images go through open_clip's validation transform on PIL images (resize shortest side, bicubic, centre
crop, CLIP mean/std). Prompts longer than the context (77 tokens incl. start/end) are truncated by the
tokenizer; :meth:`ClipDetector.token_counts` counts tokens before truncation so CLIPScore can report them.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.detectors import DetectorInfo, custom_info, file_info, random_info, read_state_dict, weights_mode
from ophora.weights import get_entry, resolve

__all__ = ["TINY_MODEL", "PROTOCOL", "register_tiny_clip", "ClipDetector", "load_clip"]

TINY_MODEL = "ophora-tiny-clip"
PROTOCOL = "open_clip: val transform on PIL (bicubic shortest-side resize, centre crop, CLIP mean/std); " \
           "L2-normalised embeddings; SimpleTokenizer truncation at context length"
_TINY_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def register_tiny_clip() -> str:
    """Register the ``ophora-tiny-clip`` config with open_clip (idempotent); return its name."""
    if TINY_MODEL not in open_clip.list_models():
        with tempfile.TemporaryDirectory() as folder:  # open_clip reads config files when they are added
            path = Path(folder) / f"{TINY_MODEL}.json"
            path.write_text(json.dumps(_TINY_CONFIG))
            open_clip.add_model_config(path)
    return TINY_MODEL


@dataclass
class ClipDetector:
    """A CLIP model with its preprocessing and tokenizer. Embeddings are float32, L2-normalised, [N, D]."""

    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Any
    info: DetectorInfo

    @property
    def context_length(self) -> int:
        """Tokens per prompt the text tower reads, start and end tokens included (77 for CLIP)."""
        return int(self.tokenizer.context_length)

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        """Tokens of each prompt before truncation, start and end tokens included."""
        return [len(self.tokenizer.encode(p)) + 2 for p in prompts]

    def truncated(self, prompts: Sequence[str]) -> list[bool]:
        """Whether each prompt is longer than the context and loses its tail."""
        return [n > self.context_length for n in self.token_counts(prompts)]

    @torch.inference_mode()
    def image_features(self, frames: np.ndarray | torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Embeddings float32 [N, D] (on the CPU) of uint8 frames [N, H, W, 3] (RGB)."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
        out = []
        for i in range(0, len(frames), batch_size):
            pixels = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames[i:i + batch_size]])
            out.append(F.normalize(self.model.encode_image(pixels.to(self._device())).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, self._dim())

    @torch.inference_mode()
    def text_features(self, prompts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Embeddings float32 [N, D] of prompts (truncated to the context length by the tokenizer)."""
        out = []
        for i in range(0, len(prompts), batch_size):
            tokens = self.tokenizer(list(prompts[i:i + batch_size]))
            out.append(F.normalize(self.model.encode_text(tokens.to(self._device())).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, self._dim())

    def _device(self) -> torch.device:
        """Where the model's weights live (inputs are moved there; embeddings come back on the CPU)."""
        return next(self.model.parameters()).device

    def _dim(self) -> int:
        return int(self.model.text_projection.shape[1])


def load_clip(model_name: str = "ViT-L-14", weights: str | os.PathLike = "random-init", seed: int = 0,
              tag: str = "openai") -> ClipDetector:
    """An open_clip model in eval mode with its val transform, tokenizer and :class:`DetectorInfo`.

    ``weights``: ``"random-init"`` (seeded, offline), ``"pretrained"`` (registry entry
    ``open_clip:<model_name>/<tag>`` via $OPHORA_WEIGHTS_DIR or the cache dir) or an explicit file path
    verified against that entry, or :class:`~benchmarks.detectors.CustomWeights`: a user's state dict for
    ``model_name`` (safetensors or ``torch.load(weights_only=True)``), recorded as ``custom:<file>``.
    ``model_name`` may be :data:`TINY_MODEL`.
    """
    if model_name == TINY_MODEL:
        register_tiny_clip()
    mode = weights_mode(weights)
    quick_gelu = bool(open_clip.get_pretrained_cfg(model_name, tag).get("quick_gelu", False))
    if mode == "random-init":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, force_quick_gelu=quick_gelu)
        info = random_info("open_clip", model_name, seed, model, PROTOCOL)
    elif mode == "custom":
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, force_quick_gelu=quick_gelu)
        model.load_state_dict(read_state_dict(weights.path))
        info = custom_info("open_clip", weights.path, PROTOCOL)
    else:
        entry_name = f"open_clip:{model_name}/{tag}"
        path = resolve(entry_name, None if mode == "pretrained" else Path(weights))
        # OpenAI's files are TorchScript archives, which torch.load only opens with weights_only=False;
        # their bytes were verified against the publisher's sha256 above.
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=str(path), force_quick_gelu=quick_gelu,
            weights_only=get_entry(entry_name).loader != "torchscript")
        info = file_info("open_clip", entry_name, path, PROTOCOL)
    return ClipDetector(model.eval(), preprocess, open_clip.get_tokenizer(model_name), info)
