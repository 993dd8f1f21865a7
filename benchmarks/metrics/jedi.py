"""JEDi: the JEPA Embedding Distance (Luo et al., "Beyond FVD"): JEDi's polynomial MMD on V-JEPA clip features.

``jedi/v-jepa2``: one 16-frame clip per video (FVD's rule: the first 16 frames of a generated video, a seeded
offset in a real one); shorter side to 292 px (bilinear, antialiased), centre crop 256 x 256, x / 255, ImageNet
mean and std (JEDi's ``Normalize``); features: the attentive probe's pooler output of V-JEPA 2 ViT-L/16 with its
SSv2 probe (:mod:`benchmarks.detectors.vjepa`; ``transformers`` has no V-JEPA 1 class, so V-JEPA 2 stands in for
JEDi's ViT-H/16 and the protocol is named for it); distance: JEDi's released formula,
``mmd_poly(real, fake, degree=2, coef0=0) * 100`` (:data:`benchmarks.metrics.kvd.KVD_JEDI`), interval over
videos. The state keeps every video's row (the MMD needs them); reference rows are cached like statistics.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.metrics.base import Metric, ShortVideoError
from benchmarks.metrics.fd import FrechetState
from benchmarks.metrics.fvd import real_clip_offset
from benchmarks.metrics.kvd import KVD, KVD_JEDI
from ophora.data.video import Consecutive

__all__ = ["JEDiProtocol", "JEDi"]

_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class JEDiProtocol:
    """JEDi with V-JEPA 2 ViT-L/16 (SSv2 probe) standing in for V-JEPA ViT-H/16."""

    name: str = "jedi/v-jepa2"
    version: str = "1"
    metric: str = "jedi"
    definition: str = "videojedi 0.0.1 (Luo et al., Beyond FVD): V-JEPA SSv2-probe pooler features, " \
                      "mmd_poly(degree=2, coef0=0) * 100"
    detector: str = "jedi-vjepa2: transformers.VJEPA2ForVideoClassification (facebook/vjepa2-vitl-fpc16-256-ssv2), " \
                    "the attentive probe's pooler output; stands in for JEDi's V-JEPA ViT-H/16 + SSv2 probe"
    model: str = "vit-l"  # "tiny": 2 blocks of width 64 (tests, demos; --tiny-i3d)
    clip_length: int = 16
    clip: str = "16 consecutive frames: the first 16 of a generated video, a seeded offset in a real one (FVD's)"
    preprocess: str = "x / 255; shorter side to 292 (bilinear, antialias, align_corners=False), centre crop 256; " \
                      "(x - ImageNet mean) / ImageNet std; in the workers"
    crop: int = 256
    resize_to: int = 292
    features: str = "attentive pooler output of the SSv2 probe, 1024-d (tiny: 64-d)"
    dim: int = 1024
    kernel: str = KVD_JEDI.kernel
    divisor: str = "N"  # of the cached statistics only; the value uses every row

    def frame_indices(self, num_frames: int, role: str, seed: int, key: str) -> np.ndarray:
        if num_frames < self.clip_length:
            raise ShortVideoError(f"has {num_frames} frames; {self.name} needs {self.clip_length} consecutive frames")
        offset = real_clip_offset(seed, key, num_frames, self.clip_length) if role == "real" else 0
        return Consecutive(self.clip_length, offset).indices(num_frames, 1.0)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [16, H, W, 3] -> float32 [16, 3, 256, 256], ImageNet-normalised (worker side)."""
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        h, w = x.shape[-2:]
        scale = self.resize_to / min(h, w)
        size = (self.resize_to, round(w * scale)) if h <= w else (round(h * scale), self.resize_to)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        top, left = (x.shape[-2] - self.crop) // 2, (x.shape[-1] - self.crop) // 2
        x = x[..., top:top + self.crop, left:left + self.crop]
        mean, std = torch.tensor(_MEAN).view(1, 3, 1, 1), torch.tensor(_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()


class JEDi(Metric):
    """JEPA Embedding Distance (lower is better)."""

    name = "jedi"
    display_name = "JEDi"
    higher_is_better = False
    protocols = (JEDiProtocol(),)
    result_fields = KVD.result_fields

    @classmethod
    def options(cls, cfg: Any) -> dict[str, Any]:
        """``cfg.tiny_i3d`` (the tiny video detectors) selects the tiny V-JEPA 2."""
        return {"model": "tiny"} if cfg.tiny_i3d else {}

    def needs_rows(self, n_boot: int) -> bool:
        return True

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        from benchmarks.detectors.vjepa import load_vjepa2

        return load_vjepa2(weights, cfg.detector_seed, self.protocol.model == "tiny", self.protocol.name)

    def new_state(self, *, video_set: Any = None, detector: Any = None,
                  rows_path: str | Path | None = None) -> FrechetState:
        dim = getattr(detector, "dim", None)
        return FrechetState(dim if isinstance(dim, int) else self.protocol.dim, self.protocol.divisor, rows_path)

    def restore_state(self, arrays: dict[str, Any], videos: int) -> FrechetState:
        return FrechetState.from_arrays(arrays, divisor=self.protocol.divisor, videos=videos)

    def update(self, state: FrechetState, detector: Any, positions: list[int], batch: Any) -> None:
        device = next(detector.parameters()).device
        with torch.inference_mode():
            features = detector(batch.to(device)).float().cpu()
        state.update(features, np.asarray(positions))

    def compute(self, real: FrechetState, fake: FrechetState, *, n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
        """JEDi's value (biased polynomial MMD x 100 over every video) and its interval over videos."""
        return KVD(KVD_JEDI).compute(real, fake, n_boot=n_boot, seed=seed)
