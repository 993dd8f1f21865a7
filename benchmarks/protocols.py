"""Named, versioned metric protocols: every choice that changes a number, in one frozen dataclass each.

A protocol says which frames of a video are read (:meth:`frame_indices`), how they are turned into the
detector's input inside a DataLoader worker (:meth:`prepare`), how the detector is called
(:meth:`detector_features`) and how the set's statistics are formed (covariance divisor, kernel, clamp).
``dataclasses.asdict`` of a protocol goes into every result beside the detector's identifier and sha256 and N real / N fake, so two
numbers are comparable exactly when their protocol dictionaries and detector hashes are equal.

========================  =========================================================================================
``fid/pytorch-fid``       pytorch-fid's FID Inception (2048-d pool3) on frames in [0, 1], bilinear 299
                          (align_corners=False) and 2x-1 as its module does; k uniformly spaced frames or all
                          frames per video, every frame one sample; covariance divisor N-1 (numpy.cov).
``fvd/stylegan-v``        StyleGAN-V: the I3D TorchScript called with ``rescale=True, resize=True,
                          return_features=True`` on uint8 [B, 3, T, H, W]; 16 consecutive frames; generated
                          videos: their first 16 frames; real videos: one clip at a seeded random offset; 400-d;
                          divisor N.
``fvd/tf``                google-research's TF FVD preprocessing: TF1 ``resize_bilinear`` to 224x224 (no crop,
                          align_corners=False, half_pixel_centers=False), 2x/255-1, then the same I3D network
                          with ``rescale=False, resize=False``; divisor N-1. With the PyTorch I3D port this
                          reproduces the TF protocol's preprocessing and divisor, not TF-hub's weights (which
                          differ from the released I3D weights that the port carries).
``clipscore/open_clip``   per video, the mean over k uniformly spaced frames of 100 * cos(image, text) with the
                          model's own preprocessing and tokenizer; the set's score is max(mean over videos, 0),
                          clamped after averaging as torchmetrics does; truncated prompts are counted.
``kid``                   unbiased polynomial-kernel MMD^2 ((x.y / d + 1)^3) on the FID features (same frames),
                          mean and std over 100 subsets of min(1000, N_real, N_fake) rows.
========================  =========================================================================================

Short videos: a video with fewer frames than a protocol needs (16 for FVD) is not padded, looped or
dropped silently: it is recorded under ``failed`` with its frame count, for that metric only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from ophora.data.video import AllFrames, Consecutive, Uniform
from ophora.registry import lookup
from ophora.seeding import rng

__all__ = ["FIDProtocol", "FVDProtocol", "ClipScoreProtocol", "KIDProtocol", "Protocol", "ShortVideoError",
           "PROTOCOLS", "DEFAULT_PROTOCOL", "get_protocol", "protocol_for", "real_clip_offset",
           "tf1_resize_bilinear", "describe"]


class ShortVideoError(ValueError):
    """A video has fewer frames than the protocol reads."""


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


# ---------------------------------------------------------------------------------------------------------


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
        from benchmarks.detectors.inception import fid_features

        flat = batch.reshape(-1, *batch.shape[2:])
        return fid_features(flat, detector, batch_size=max(len(flat), 1))

    def rows_per_video(self, batch: torch.Tensor) -> int:
        return int(batch.shape[1])


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


FVD_TF = FVDProtocol(
    name="fvd/tf", version="1",
    input="float32 [B, 3, T, 224, 224] in [-1, 1]",
    preprocess="TF1 tf.image.resize_bilinear to 224x224 (align_corners=False, half_pixel_centers=False), "
               "no crop, then 2x/255 - 1 (google-research frechet_video_distance.preprocess), in the workers; "
               "the same I3D network as fvd/stylegan-v (PyTorch port: reproduces the TF protocol's "
               "preprocessing and divisor, not TF-hub's weights)",
    rescale=False, resize=False, divisor="N-1")


@dataclass(frozen=True)
class ClipScoreProtocol:
    """CLIPScore of generated videos against their prompts with an open_clip model."""

    name: str = "clipscore/open_clip"
    version: str = "1"
    metric: str = "clipscore"
    model: str = "ViT-L-14"
    pretrained_tag: str = "openai"
    preprocess: str = "open_clip val transform on PIL (bicubic shortest-side resize, centre crop, CLIP " \
                      "mean/std); embeddings L2-normalised"
    frames: str = "uniform"
    frames_per_video: int = 8
    per_video: str = "mean over the frames of 100 * cos(image embedding, text embedding)"
    aggregate: str = "max(mean over videos, 0): clamped at 0 after averaging (torchmetrics CLIPScore)"
    scale: float = 100.0
    truncation: str = "prompts longer than the text context (77 tokens incl. start/end) are truncated by " \
                      "the tokenizer and counted (n_truncated)"

    def __post_init__(self) -> None:
        if self.frames_per_video < 1:
            raise ValueError(f"{self.name}: frames_per_video must be at least 1, got {self.frames_per_video}")

    def frame_indices(self, num_frames: int, role: str, seed: int, key: str) -> np.ndarray:
        if num_frames < 1:
            raise ShortVideoError("has no frames")
        return Uniform(self.frames_per_video).indices(num_frames, 1.0)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [k, H, W, 3] unchanged: the open_clip transform runs on PIL images in the main process."""
        return torch.from_numpy(frames)

    def rows_per_video(self, batch: torch.Tensor) -> int:
        return 1


@dataclass(frozen=True)
class KIDProtocol:
    """KID on the FID features (the same frames as FID)."""

    name: str = "kid"
    version: str = "1"
    metric: str = "kid"
    features: str = "the FID protocol's pool3 features, one row per frame"
    kernel: str = "polynomial (gamma x.y + coef0)^degree"
    degree: int = 3
    gamma: str = "1/d"
    coef0: float = 1.0
    estimator: str = "unbiased MMD^2 (diagonals excluded)"
    subsets: int = 100
    subset_size: int = 1000
    subset_rule: str = "m = min(subset_size, N_real rows, N_fake rows), drawn without replacement; " \
                       "subset draws seeded by ophora.seeding.derive_seed(seed, 'kid')"
    spread: str = "population std (ddof 0) over subsets"


Protocol = Union[FIDProtocol, FVDProtocol, ClipScoreProtocol, KIDProtocol]

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (FIDProtocol(), FVDProtocol(), FVD_TF, ClipScoreProtocol(),
                                                       KIDProtocol())}
DEFAULT_PROTOCOL = {"fid": "fid/pytorch-fid", "fvd": "fvd/stylegan-v", "clipscore": "clipscore/open_clip",
                    "kid": "kid"}


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name``; unknown names raise KeyError with close matches."""
    return lookup(PROTOCOLS, name, "protocol")


def protocol_for(metric: str, name: str | None = None, **changes: Any) -> Protocol:
    """The protocol of ``metric`` (its default, or ``name``), with fields replaced by ``changes``.

    e.g. ``frames_per_video=4`` for FID, or ``frames="all", frames_per_video=None``. Unknown fields raise.
    """
    protocol = get_protocol(name or lookup(DEFAULT_PROTOCOL, metric, "metric"))
    if protocol.metric != metric:
        raise ValueError(f"protocol {protocol.name!r} is a {protocol.metric} protocol, not one for {metric!r}")
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(protocol)})
    if unknown:
        raise TypeError(f"protocol {protocol.name!r} has no field(s) {unknown}")
    return dataclasses.replace(protocol, **changes) if changes else protocol


def describe(protocol: Protocol) -> dict[str, Any]:
    """Every field of ``protocol`` as a JSON-ready dict (what results record)."""
    return dataclasses.asdict(protocol)
