"""FID: the Fréchet distance between Inception features of real and generated frames.

``fid/pytorch-fid``: pytorch-fid's FID Inception (2048-d pool3) on frames in [0, 1], bilinear 299
(align_corners=False) and 2x-1 as its module does; k uniformly spaced frames or all frames per video, every
frame one sample; covariance divisor N-1 (numpy.cov).

``fid/ophsim-surgical``: the same frames and Fréchet distance on the 128-d features of the surgical frame
classifier (:mod:`benchmarks.detectors.surgical`, trained on OphSim phases, operations, instruments and
anatomy; shipped in the package). Not comparable with any published FID.

``fid/stylegan-v``: StyleGAN-V's ``fid50k_full`` (``src/metrics/frechet_inception_distance.py`` and
``metric_utils.py``), the FID behind Endora's published numbers: NVIDIA's ``inception-2015-12-05.pt``
TorchScript called as ``detector(images, return_features=True)`` on uint8 [N, 3, H, W] frames at their own
size (the archive resamples to 299x299 TF1-style and scales by (x - 128) / 128 itself); every frame of every
real video (``max_real=None``) and of every generated video, up to 50,000 generated frames (``num_gen``);
float64 sums of x and x x^T, covariance divisor N (``FeatureStats.get_mean_cov``); the distance
``|mu_g - mu_r|^2 + tr(S_g + S_r - 2 sqrtm(S_g S_r))``. StyleGAN-V takes its 50,000 generated frames in
file-name order when a set has more; this suite does not pick that subset and refuses a generated set of more
than 50,000 frames instead of scoring a different one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.detectors.surgical import frame_features, load_surgical, to_input
from benchmarks.metrics.base import ShortVideoError
from benchmarks.metrics.fd import FrechetMetric
from ophora.data.video import AllFrames, Uniform

__all__ = ["FIDProtocol", "SurgicalFIDProtocol", "StyleGANVFIDProtocol", "FID"]


@dataclass(frozen=True)
class FIDProtocol:
    """FID with pytorch-fid's Inception; every selected frame of every video is one sample."""

    name: str = "fid/pytorch-fid"
    version: str = "1"
    metric: str = "fid"
    detector: str = "pytorch-fid-inception: pytorch_fid.inception.InceptionV3 (FID weights, pool3 block)"
    input: str = "float32 [N, 3, H, W] in [0, 1] (uint8 / 255)"
    resize: str = "bilinear to 299x299, align_corners=False (pytorch-fid's call; run in the DataLoader " \
                  "workers, so the module's own resize is the identity)"
    normalise: str = "2x - 1 (inside pytorch-fid's module)"
    features: str = "pool3 average, 2048-d"
    dim: int = 2048
    frames: str = "uniform"  # "uniform": frames_per_video uniformly spaced (first to last); "all"
    frames_per_video: int | None = 8
    samples: str = "frames"
    divisor: str = "N-1"

    def __post_init__(self) -> None:
        if self.frames not in ("uniform", "all"):
            raise ValueError(f"{self.name}: frames must be 'uniform' or 'all', got {self.frames!r}")
        if self.frames == "uniform" and (self.frames_per_video is None or self.frames_per_video < 1):
            raise ValueError(f"{self.name}: frames_per_video must be at least 1, got {self.frames_per_video}")

    def frame_indices(self, num_frames: int, role: str, seed: int, key: str) -> np.ndarray:
        """Frames read from a video of ``num_frames`` frames (same rule for real and generated videos)."""
        if num_frames < 1:
            raise ShortVideoError("has no frames")
        selection = AllFrames() if self.frames == "all" else Uniform(int(self.frames_per_video))
        return selection.indices(num_frames, 1.0)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [k, H, W, 3] -> float32 [k, 3, 299, 299] in [0, 1] (worker side)."""
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
        return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)

    def detector_features(self, detector: Any, batch: torch.Tensor) -> torch.Tensor:
        """[B, k, 3, 299, 299] -> pool3 features float32 [B * k, 2048] (video-major)."""
        from benchmarks.detectors.inception import fid_features  # pytorch-fid: imported when scoring

        flat = batch.reshape(-1, *batch.shape[2:])
        return fid_features(flat, detector, batch_size=max(len(flat), 1))

    def rows_per_video(self, batch: torch.Tensor) -> int:
        return int(batch.shape[1])

    def weights_entry(self, cfg: Any) -> str | None:
        """Weights-registry entry of the published detector."""
        return "pytorch-fid-inception"

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        """pytorch-fid's Inception: random-init, pretrained, a verified file or a user's state dict."""
        from benchmarks.detectors.inception import load_fid_inception

        return load_fid_inception(weights, cfg.detector_seed)


@dataclass(frozen=True)
class SurgicalFIDProtocol(FIDProtocol):
    """FID on the features of the surgical frame classifier (shipped weights); same frames as fid/pytorch-fid."""

    shipped_weights: ClassVar[bool] = True

    name: str = "fid/ophsim-surgical"
    version: str = "1"
    detector: str = "ophsim-surgical:frame: benchmarks.detectors.surgical.FrameNet (4 conv blocks, width 32), " \
                    "trained on OphSim worlds 7001-7004 (python -m benchmarks.detectors.train_surgical)"
    input: str = "uint8 [k, H, W, 3]"
    resize: str = "x / 255, bilinear with antialiasing to 64x64 (benchmarks.detectors.surgical.to_input), in the " \
                  "DataLoader workers"
    normalise: str = "(x - 0.45) / 0.25 (inside the network)"
    features: str = "mean-pooled last conv block (the classification heads' input), 128-d"
    dim: int = 128
    comparable: str = "not comparable with any published FID (a surgical-domain detector)"

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [k, H, W, 3] -> float32 [k, 3, 64, 64] in [0, 1] (worker side)."""
        return to_input(frames)

    def detector_features(self, detector: Any, batch: torch.Tensor) -> torch.Tensor:
        """[B, k, 3, 64, 64] -> float32 [B * k, 128] (video-major)."""
        return frame_features(detector, batch.reshape(-1, *batch.shape[2:]))

    def weights_entry(self, cfg: Any) -> str | None:
        return "ophsim-surgical:frame"

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        return load_surgical("frame", weights, cfg.detector_seed, self.name)


@dataclass(frozen=True)
class StyleGANVFIDProtocol(FIDProtocol):
    """StyleGAN-V's fid50k_full: NVIDIA's Inception TorchScript on every frame, divisor N, at most 50k generated."""

    name: str = "fid/stylegan-v"
    version: str = "1"
    detector: str = "stylegan-v-inception: inception-2015-12-05.pt (NVIDIA's TorchScript translation of " \
                    "TensorFlow's inception-2015-12-05, as StyleGAN-V loads it)"
    input: str = "uint8 [N, 3, H, W] at the frames' own size (StyleGAN-V's ImageFolderDataset gives uint8 CHW); " \
                 "grey frames are not expected (decoded video is RGB)"
    resize: str = "inside the detector: affine_grid/grid_sample to 299x299, bilinear, border padding, " \
                  "align_corners=False, offset 1/W - 1/299 (TF1 resize_bilinear without half-pixel centres); " \
                  "StyleGAN-V's loader expects square frames of one size, other aspects are squashed to 299x299"
    normalise: str = "(x - 128) / 128 (inside the detector)"
    call: str = "detector(images, return_features=True), 64 frames per call (StyleGAN-V's dataset batch)"
    features: str = "pool3, 2048-d (return_features=True: raw features before the softmax layer)"
    frames: str = "all"
    frames_per_video: int | None = None
    max_real_frames: int | None = None
    max_fake_frames: int | None = 50_000
    flip: str = "none (fid50k_full sets xflip=False on both sets)"
    divisor: str = "N"
    distance: str = "|mu_g - mu_r|^2 + tr(S_g + S_r - 2 sqrtm(S_g S_r)) in float64 (the suite's float64 matrix " \
                    "root; StyleGAN-V: scipy.linalg.sqrtm, real part)"

    def __post_init__(self) -> None:
        if self.frames != "all" or self.frames_per_video is not None:
            raise ValueError(f"{self.name} reads every frame of every video (StyleGAN-V's fid50k_full); a frame "
                             f"count per video (fid_frames={self.frames_per_video or self.frames!r}) does not apply: "
                             f"leave fid_frames unset, or choose fid/pytorch-fid")
        if self.max_fake_frames is not None and self.max_fake_frames < 1:
            raise ValueError(f"{self.name}: max_fake_frames must be at least 1 or None, got {self.max_fake_frames}")
        super().__post_init__()

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [k, H, W, 3] -> uint8 [k, 3, H, W] (the detector resizes; nothing is done in the workers)."""
        return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()

    def detector_features(self, detector: Any, batch: torch.Tensor) -> torch.Tensor:
        """[B, k, 3, H, W] uint8 -> pool3 features float32 [B * k, 2048] (video-major)."""
        from benchmarks.detectors.inception import stylegan_inception_features

        return stylegan_inception_features(batch.reshape(-1, *batch.shape[2:]), detector)

    def weights_entry(self, cfg: Any) -> str | None:
        return "stylegan-v-inception"

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        """NVIDIA's Inception TorchScript: random-init stand-in, pretrained, a verified file or a user's file."""
        from benchmarks.detectors.inception import load_stylegan_inception

        return load_stylegan_inception(weights, cfg.detector_seed)


class FID(FrechetMetric):
    """Fréchet Inception Distance over the frames of the videos (lower is better)."""

    name = "fid"
    display_name = "FID"
    protocols = (FIDProtocol(), SurgicalFIDProtocol(), StyleGANVFIDProtocol())

    @classmethod
    def options(cls, cfg: Any) -> dict[str, Any]:
        """``cfg.fid_frames``: frames per video (an int) or ``"all"``; None keeps the protocol's."""
        if cfg.fid_frames == "all":
            return {"frames": "all", "frames_per_video": None}
        return {} if cfg.fid_frames is None else {"frames": "uniform", "frames_per_video": int(cfg.fid_frames)}

    def detector_weights(self, cfg: Any) -> str | None:
        return self.protocol.weights_entry(cfg)

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        return self.protocol.load_detector(weights, cfg)

    def compute(self, real: Any, fake: Any, *, n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
        """The Fréchet result; a set beyond the protocol's frame limits (``max_real_frames``,
        ``max_fake_frames``: fid/stylegan-v's 50,000 generated frames) is refused with an error, not scored."""
        for role, state, limit in (("real", real, getattr(self.protocol, "max_real_frames", None)),
                                   ("generated", fake, getattr(self.protocol, "max_fake_frames", None))):
            if limit is not None and state.stats.count > limit:
                return {"value": None, "n_real": real.videos, "n_fake": fake.videos,
                        "n_real_rows": real.stats.count, "n_fake_rows": fake.stats.count,
                        "error": f"the {role} set has {state.stats.count} frames; {self.protocol.name} scores at "
                                 f"most {limit} (StyleGAN-V takes the first {limit} in file-name order, which "
                                 f"this suite does not select): score a set of at most {limit} frames"}
        return super().compute(real, fake, n_boot=n_boot, seed=seed)
