"""The V-JEPA detector of JEDi (``jedi/v-jepa2``; Luo et al., "Beyond FVD"; the ``videojedi`` package).

JEDi embeds a clip with V-JEPA's ViT-H/16 and takes the output of its SSv2 attentive probe's pooler (a learned
query cross-attending to every token: ``classifier.module.pooler(encoder(x))``). V-JEPA 1 has no class in
``transformers``; its successor does, so here the stand-in is ``transformers.VJEPA2ForVideoClassification``
(V-JEPA 2 ViT-L/16, 16 frames at 256 px, with its SSv2 attentive probe: ``facebook/vjepa2-vitl-fpc16-256-ssv2``)
and the feature is that probe's pooler output (1024-d), computed before its classifier.

Weights: ``random-init`` (seeded; ``tiny``: 2 blocks of width 64 for tests and demos) or the user's own copy of the
checkpoint in ``transformers`` format (``--detector jedi=FOLDER/model.safetensors``, ``config.json`` beside it,
loaded with ``local_files_only=True``: nothing is downloaded), recorded as custom.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.detectors import DetectorInfo, custom_info, random_info, seeded_state_dict, weights_mode
from ophora.weights import WeightsNotFoundError

__all__ = ["VITL_SSV2", "TINY", "VJEPA2Features", "load_vjepa2", "CHECKPOINT"]

CHECKPOINT = "facebook/vjepa2-vitl-fpc16-256-ssv2"
VITL_SSV2 = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, num_pooler_layers=3,
                 num_labels=174)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_pooler_layers=1, num_labels=174,
            pred_hidden_size=32, pred_num_hidden_layers=1, pred_num_attention_heads=4)


class VJEPA2Features(nn.Module):
    """V-JEPA 2 encoder + its attentive probe's pooler: float [B, 16, 3, 256, 256] (ImageNet-normalised) -> [B, d]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @classmethod
    def build(cls, size: dict[str, int]) -> "VJEPA2Features":
        from transformers import VJEPA2Config, VJEPA2ForVideoClassification

        config = VJEPA2Config(crop_size=256, frames_per_clip=16, patch_size=16, tubelet_size=2, **size)
        return cls(VJEPA2ForVideoClassification(config))

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        tokens = self.model.vjepa2(pixel_values_videos=videos, skip_predictor=True).last_hidden_state
        return self.model.pooler(tokens)


def load_vjepa2(weights: Any, seed: int, tiny: bool, protocol: str) -> tuple[VJEPA2Features, DetectorInfo]:
    """The JEDi detector and its :class:`DetectorInfo` (see the module docstring)."""
    mode = weights_mode(weights)
    if mode == "random-init":
        model = VJEPA2Features.build(TINY if tiny else VITL_SSV2)
        model.load_state_dict(seeded_state_dict(model.state_dict(), seed))
        return model.eval(), random_info("jedi-vjepa2", "vjepa2-tiny" if tiny else "vjepa2-vitl-ssv2", seed, model,
                                         protocol)
    if mode == "custom":
        from transformers import VJEPA2ForVideoClassification

        folder = Path(weights.path).parent
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder / 'config.json'} not found: --detector jedi=FILE takes the "
                                    "model.safetensors of a transformers checkpoint folder (config.json beside it)")
        model = VJEPA2ForVideoClassification.from_pretrained(folder, local_files_only=True)
        return VJEPA2Features(model).eval(), custom_info("jedi-vjepa2", weights.path, protocol)
    raise WeightsNotFoundError(f"{protocol}: the suite has no registry entry for {CHECKPOINT}; save it yourself "
                               "(transformers save_pretrained) and pass --detector jedi=FOLDER/model.safetensors")
