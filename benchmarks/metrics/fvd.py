"""FVD: the Fréchet distance between video features (I3D, or another video network) of one 16-frame clip per real
and generated video.

========================  =========================================================================================
``fvd/stylegan-v``        StyleGAN-V: the I3D TorchScript called with ``rescale=True, resize=True,
                          return_features=True`` on uint8 [B, 3, T, H, W]; 16 consecutive frames; generated
                          videos: their first 16 frames; real videos: one clip at a seeded random offset; 400-d;
                          divisor N.
``fvd/tf``                google-research's TF FVD preprocessing: TF1 ``resize_bilinear`` to 224x224 (no crop,
                          align_corners=False, half_pixel_centers=False), 2x/255-1, then the same I3D network
                          with ``rescale=False, resize=False``; divisor N-1. With the PyTorch I3D port this
                          reproduces the TF protocol's preprocessing and divisor, not TF-hub's weights (which
                          differ from the released I3D weights that the port carries).
``fvd/ophsim-surgical``   the same clips (16 frames: first 16 of generated videos, a seeded offset in real ones) on
                          the 128-d features of the surgical (2+1)D video classifier
                          (:mod:`benchmarks.detectors.surgical`: phases, operations and temporal order, trained
                          on OphSim; shipped in the package), input x/255 resized to 64x64; divisor N-1. Not
                          comparable with any published FVD.
``fvd/videomae``          content-debiased FVD (cd-fvd, Ge et al. CVPR 2024): one 16-frame clip at a seeded random
                          offset in every video (real and generated), cd-fvd's resizes (shorter side to 256 with
                          antialiasing, centre crop, uint8 truncation, bilinear to 224) and the [0, 1] input of
                          VideoMAE-v2 ViT-g/14 (SSv2 fine-tuned; :mod:`benchmarks.detectors.videomae`, as
                          ``transformers.VideoMAEModel`` + ``fc_norm``); 1408-d; divisor N. Its checkpoint is
                          not in the weights registry: ``--detector fvd=FILE`` scores with it.
========================  =========================================================================================

Short videos: a video with fewer than 16 frames is not padded, looped or dropped silently: it is recorded under
``failed`` with its frame count, for FVD only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.detectors.i3d import load_i3d
from benchmarks.detectors.surgical import load_surgical, to_input, video_features
from benchmarks.metrics.base import ShortVideoError
from benchmarks.metrics.fd import FrechetMetric, FrechetState
from ophora.data.video import Consecutive
from ophora.seeding import rng

__all__ = ["FVDProtocol", "FVD_TF", "SurgicalFVDProtocol", "VideoMAEFVDProtocol", "FVD", "real_clip_offset",
           "tf1_resize_bilinear"]


def real_clip_offset(seed: int, key: str, num_frames: int, clip_length: int) -> int:
    """Start frame of the one clip read from a real video: uniform in [0, num_frames - clip_length].

    Derived from (``seed``, ``key`` = the video's path relative to its set) only, so it does not depend on
    the order of the videos, the number of processes or the DataLoader workers.
    """
    if num_frames < clip_length:
        raise ShortVideoError(f"has {num_frames} frames; needs {clip_length} consecutive frames")
    return int(rng(seed, "fvd-real-offset", key).integers(0, num_frames - clip_length + 1))


def tf1_resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1 ``tf.image.resize_bilinear`` (align_corners=False, half_pixel_centers=False) of float [N, C, H, W].

    Source coordinate of output pixel i is i * in / out (no half-pixel offset), the neighbour after the last
    pixel is clamped; interpolates along x, then y, in float32 as TensorFlow's kernel does. -> [N, C, h, w].
    """
    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(n_out, dtype=torch.float32) * np.float32(n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        return lo, (lo + 1).clamp(max=n_in - 1), src - lo.float()

    y0, y1, fy = axis(x.shape[2], size[0])
    x0, x1, fx = axis(x.shape[3], size[1])
    left, right = x[..., x0], x[..., x1]
    rows = left + (right - left) * fx  # [N, C, H, w]
    top, bottom = rows[:, :, y0], rows[:, :, y1]
    return top + (bottom - top) * fy[:, None]


@dataclass(frozen=True)
class FVDProtocol:
    """FVD on one 16-frame clip per video with the StyleGAN-V I3D (TorchScript) detector."""

    name: str = "fvd/stylegan-v"
    version: str = "1"
    metric: str = "fvd"
    detector: str = "stylegan-v-i3d: i3d_torchscript.pt (Kinetics-400 I3D, PyTorch port)"
    input: str = "uint8 [B, 3, T, H, W] at the video's own size"
    preprocess: str = "inside the detector: x / 255 * 2 - 1, resize to 224x224"
    rescale: bool = True
    resize: bool = True
    return_features: bool = True
    features: str = "400 Kinetics logits before the softmax"
    dim: int = 400
    clip_length: int = 16
    subsample_factor: int = 1
    fake_clip: str = "first 16 frames"
    real_clip: str = "one clip per video at a seeded random offset, uniform in [0, T - 16] " \
                     "(ophora.seeding.rng(seed, 'fvd-real-offset', relative path))"
    short_videos: str = "fewer than 16 frames: listed under failed with the frame count, excluded"
    samples: str = "videos"
    divisor: str = "N"

    def frame_indices(self, num_frames: int, role: str, seed: int, key: str) -> np.ndarray:
        """16 consecutive frames: from frame 0 for generated videos, at a seeded offset for real ones."""
        if num_frames < self.clip_length:
            raise ShortVideoError(f"has {num_frames} frames; {self.name} needs {self.clip_length} "
                                  "consecutive frames")
        offset = real_clip_offset(seed, key, num_frames, self.clip_length) if role == "real" else 0
        return Consecutive(self.clip_length, offset).indices(num_frames, 1.0)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> uint8 [3, T, H, W], or for fvd/tf float32 [3, T, 224, 224] in [-1, 1]."""
        x = torch.from_numpy(frames)
        if self.resize:
            return x.permute(3, 0, 1, 2).contiguous()
        x = tf1_resize_bilinear(x.permute(0, 3, 1, 2).float(), (224, 224))  # [T, 3, 224, 224]
        return (2.0 * x / 255.0 - 1.0).permute(1, 0, 2, 3).contiguous()

    def detector_features(self, detector: Any, batch: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> float32 [B, 400], the detector called with this protocol's flags."""
        device = next(detector.parameters()).device
        with torch.inference_mode():
            out = detector(batch.to(device), rescale=self.rescale, resize=self.resize,
                           return_features=self.return_features)
        return out.float().cpu()

    def rows_per_video(self, batch: torch.Tensor) -> int:
        return 1

    def weights_entry(self, cfg: Any) -> str | None:
        """Weights-registry entry of the published detector (None for the tiny random-init I3D)."""
        return None if cfg.tiny_i3d else "stylegan-v-i3d"

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        return load_i3d(weights, cfg.detector_seed, tiny=cfg.tiny_i3d)


@dataclass(frozen=True)
class SurgicalFVDProtocol(FVDProtocol):
    """FVD on the features of the surgical video classifier (shipped weights); the clips of fvd/stylegan-v."""

    shipped_weights: ClassVar[bool] = True

    name: str = "fvd/ophsim-surgical"
    version: str = "1"
    detector: str = "ophsim-surgical:video: benchmarks.detectors.surgical.VideoNet ((2+1)D, width 32), trained on " \
                    "OphSim worlds 7001-7004 (python -m benchmarks.detectors.train_surgical)"
    input: str = "float32 [B, 16, 3, 64, 64] in [0, 1]"
    preprocess: str = "x / 255, bilinear with antialiasing to 64x64 (benchmarks.detectors.surgical.to_input), in " \
                      "the DataLoader workers; (x - 0.45) / 0.25 inside the network"
    rescale: bool = False
    resize: bool = False
    return_features: bool = False
    features: str = "mean-pooled last (2+1)D block (the phase, operation and temporal-order heads' input), 128-d"
    dim: int = 128
    divisor: str = "N-1"
    comparable: str = "not comparable with any published FVD (a surgical-domain detector)"

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [16, H, W, 3] -> float32 [16, 3, 64, 64] in [0, 1] (worker side)."""
        return to_input(frames)

    def detector_features(self, detector: Any, batch: torch.Tensor) -> torch.Tensor:
        """[B, 16, 3, 64, 64] -> float32 [B, 128]."""
        return video_features(detector, batch)

    def weights_entry(self, cfg: Any) -> str | None:
        return "ophsim-surgical:video"

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        return load_surgical("video", weights, cfg.detector_seed, self.name)


@dataclass(frozen=True)
class VideoMAEFVDProtocol(FVDProtocol):
    """Content-debiased FVD (cd-fvd): VideoMAE-v2 ViT-g features of one random 16-frame clip per video."""

    name: str = "fvd/videomae"
    version: str = "1"
    definition: str = "cd-fvd 0.1 (Ge et al., CVPR 2024), model 'videomae'"
    detector: str = "cd-fvd-videomae: VideoMAE-v2 ViT-g/14 fine-tuned on SSv2 (vit_g_hybrid_pt_1200e_ssv2_ft.pth) as " \
                    "transformers.VideoMAEModel + fc_norm of the mean token (benchmarks.detectors.videomae)"
    input: str = "float32 [B, 3, 16, 224, 224] in [0, 1]"
    preprocess: str = "cd-fvd's VideoDataset + preprocess_videomae, in the workers: x / 255; shorter side to " \
                      "resolution (bilinear, antialias, align_corners=False; the other side ceil), centre crop " \
                      "resolution x resolution; x 255 truncated to uint8 (.byte()); x / 255; bilinear to 224x224 " \
                      "(align_corners=False, no antialias); no mean/std normalisation"
    resolution: int = 256
    rescale: bool = False
    resize: bool = False
    return_features: bool = False
    features: str = "fc_norm(mean of the last block's tokens): forward_features, 1408-d (tiny: 64-d)"
    dim: int = 1408
    fake_clip: str = "one clip per video at a seeded random offset (cd-fvd draws a random clip from every video, " \
                     "real and generated alike)"
    real_clip: str = "the same rule (ophora.seeding.rng(seed, 'fvd-real-offset', relative path))"
    divisor: str = "N"
    comparable: str = "comparable with cd-fvd's VideoMAE FVD only with its checkpoint given as --detector fvd=FILE"

    def frame_indices(self, num_frames: int, role: str, seed: int, key: str) -> np.ndarray:
        """16 consecutive frames at a seeded random offset, for real and generated videos alike."""
        return super().frame_indices(num_frames, "real", seed, key)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [16, H, W, 3] -> float32 [3, 16, 224, 224] in [0, 1] (cd-fvd's two resizes and its quantisation)."""
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0  # [T, 3, H, W]
        h, w = x.shape[-2:]
        scale = self.resolution / min(h, w)
        size = (self.resolution, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), self.resolution)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        top, left = (x.shape[-2] - self.resolution) // 2, (x.shape[-1] - self.resolution) // 2
        x = x[..., top:top + self.resolution, left:left + self.resolution]
        x = (x * 255).to(torch.uint8).float() / 255.0
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        return x.permute(1, 0, 2, 3).contiguous()

    def detector_features(self, detector: Any, batch: torch.Tensor) -> torch.Tensor:
        """[B, 3, 16, 224, 224] -> float32 [B, 1408]."""
        device = next(detector.parameters()).device
        with torch.inference_mode():
            return detector(batch.to(device)).float().cpu()

    def weights_entry(self, cfg: Any) -> str | None:
        return None

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        """``--tiny-i3d`` (FVD's tiny-detector switch) selects the tiny VideoMAE (64-d) here."""
        from benchmarks.detectors.videomae import load_videomae

        return load_videomae(weights, cfg.detector_seed, cfg.tiny_i3d, self.name)


FVD_TF = FVDProtocol(
    name="fvd/tf", version="1",
    input="float32 [B, 3, T, 224, 224] in [-1, 1]",
    preprocess="TF1 tf.image.resize_bilinear to 224x224 (align_corners=False, half_pixel_centers=False), "
               "no crop, then 2x/255 - 1 (google-research frechet_video_distance.preprocess), in the workers; "
               "the same I3D network as fvd/stylegan-v (PyTorch port: reproduces the TF protocol's "
               "preprocessing and divisor, not TF-hub's weights)",
    rescale=False, resize=False, divisor="N-1")


class FVD(FrechetMetric):
    """Fréchet Video Distance over one clip per video (lower is better)."""

    name = "fvd"
    display_name = "FVD"
    protocols = (FVDProtocol(), FVD_TF, SurgicalFVDProtocol(), VideoMAEFVDProtocol())

    def detector_weights(self, cfg: Any) -> str | None:
        return self.protocol.weights_entry(cfg)

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        return self.protocol.load_detector(weights, cfg)

    def new_state(self, *, video_set: Any = None, detector: Any = None, rows_path: Any = None) -> FrechetState:
        """The protocol's feature size, or the detector's where it declares one (the tiny VideoMAE: 64-d)."""
        dim = getattr(detector, "dim", None)
        return FrechetState(dim if isinstance(dim, int) else self.protocol.dim, self.protocol.divisor, rows_path)
