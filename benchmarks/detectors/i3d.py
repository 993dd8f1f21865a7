"""The StyleGAN-V FVD detector: Kinetics-400 I3D as TorchScript, and a seeded random-init stand-in.

Published path (StyleGAN-V ``src/metrics/frechet_video_distance.py`` / ``metric_utils.py``): the file
``i3d_torchscript.pt`` is loaded with ``torch.jit.load`` and called as
``detector(videos, rescale=True, resize=True, return_features=True)`` on uint8 videos [B, 3, T, H, W]
(StyleGAN-V passes the uint8 tensor itself). Inside the archive (class ``src.i3dpt_jit.I3D``, a port of
DeepMind's I3D with TF "SAME" padding): ``rescale`` maps [0, 255] to [-1, 1] as ``x / 255 * 2 - 1`` (stated by
the StyleGAN-V author, universome/fvd-comparison#4); ``resize`` brings frames to 224x224, which we implement
as trilinear interpolation to (T, 224, 224) with align_corners=False, i.e. per-frame bilinear. That
interpolation mode is our reading, not confirmed from a public source: check it with
``print(jit_load(path).code)`` once the real file is available. ``return_features=True`` returns the 400
Kinetics logits before the softmax (StyleGAN-V: "raw features before the softmax layer").

Random-init path: :class:`InceptionI3d` below (same architecture, TF-SAME padding computed at run time),
wrapped in :class:`StyleGANVI3D` with the same forward signature and scriptable, so
:func:`export_random_i3d` writes a TorchScript file that goes through the very same ``torch.jit.load`` path.
``tiny=True`` divides every channel count by 8: for fast tests and demos only, its features compare with
nothing.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.detectors import (
    DetectorInfo,
    custom_info,
    file_info,
    random_info,
    read_state_dict,
    seeded_state_dict,
    weights_mode,
)
from ophora.weights import jit_load, jit_save, resolve

__all__ = ["ENTRY", "PROTOCOL", "DETECTOR_KWARGS", "InceptionI3d", "StyleGANVI3D", "build_random_i3d",
           "export_random_i3d", "load_i3d", "i3d_features"]

ENTRY = "stylegan-v-i3d"
PROTOCOL = "StyleGAN-V FVD I3D: uint8 [B,3,T,H,W], rescale x/255*2-1, resize 224x224, 400 logits"
DETECTOR_KWARGS = dict(rescale=True, resize=True, return_features=True)

# Inception-v1 "Mixed" blocks: (branch0, branch1 reduce, branch1, branch2 reduce, branch2, branch3 pool proj)
_MIXED = {
    "mixed_3b": (192, (64, 96, 128, 16, 32, 32)), "mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "mixed_4b": (480, (192, 96, 208, 16, 48, 64)), "mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "mixed_4d": (512, (128, 128, 256, 24, 64, 64)), "mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "mixed_4f": (528, (256, 160, 320, 32, 128, 128)), "mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def _same_pad(x: torch.Tensor, kernel: List[int], stride: List[int]) -> torch.Tensor:
    """Zero-pad [B, C, T, H, W] as TensorFlow's SAME: output size ceil(in / stride), extra pixel after."""
    pads: List[int] = []
    for axis in [4, 3, 2]:  # F.pad lists the last dimension first
        size = x.shape[axis]
        k = kernel[axis - 2]
        s = stride[axis - 2]
        total = max((size + s - 1) // s * s - s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (TF-SAME, no bias) + BatchNorm3d (eps 1e-3) + ReLU; or a plain biased conv for the logits."""

    def __init__(self, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int] = (1, 1, 1),
                 logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.logits = list(kernel), list(stride), logits
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=logits)
        self.bn = nn.Identity() if logits else nn.BatchNorm3d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv3d(_same_pad(x, self.kernel, self.stride)))
        return x if self.logits else F.relu(x)


class MaxPoolSame(nn.Module):
    """MaxPool3d with TF-SAME zero padding (inputs are post-ReLU, so zeros never win over real values)."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int]):
        super().__init__()
        self.kernel, self.stride = list(kernel), list(stride)
        self.pool = nn.MaxPool3d(self.kernel, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(_same_pad(x, self.kernel, self.stride))


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1->3x3x3 | 1x1->3x3x3 | maxpool 3x3x3 -> 1x1, concatenated on channels."""

    def __init__(self, cin: int, c: tuple[int, ...]):
        super().__init__()
        self.branch_0 = Unit3D(cin, c[0], [1, 1, 1])
        self.branch_1 = nn.Sequential(Unit3D(cin, c[1], [1, 1, 1]), Unit3D(c[1], c[2], [3, 3, 3]))
        self.branch_2 = nn.Sequential(Unit3D(cin, c[3], [1, 1, 1]), Unit3D(c[3], c[4], [3, 3, 3]))
        self.branch_3 = nn.Sequential(MaxPoolSame([3, 3, 3], [1, 1, 1]), Unit3D(cin, c[5], [1, 1, 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], 1)


class InceptionI3d(nn.Module):
    """I3D (Carreira & Zisserman 2017), RGB stream: [B, 3, T, H, W] in [-1, 1] -> logits [B, num_classes].

    At 16x224x224 the spatio-temporal output before the logits is 2x7x7, average-pooled (VALID, 2x7x7) and
    then averaged over time, as in DeepMind's kinetics-i3d. Needs T >= 9. ``channel_div`` > 1 shrinks every
    layer (tiny variant).
    """

    def __init__(self, num_classes: int = 400, channel_div: int = 1):
        super().__init__()
        d = lambda c: max(c // channel_div, 1)  # noqa: E731
        self.conv3d_1a_7x7 = Unit3D(3, d(64), [7, 7, 7], [2, 2, 2])
        self.maxpool_2a = MaxPoolSame([1, 3, 3], [1, 2, 2])
        self.conv3d_2b_1x1 = Unit3D(d(64), d(64), [1, 1, 1])
        self.conv3d_2c_3x3 = Unit3D(d(64), d(192), [3, 3, 3])
        self.maxpool_3a = MaxPoolSame([1, 3, 3], [1, 2, 2])
        blocks = {name: Mixed(d(cin), tuple(d(c) for c in cs)) for name, (cin, cs) in _MIXED.items()}
        self.mixed_3 = nn.Sequential(blocks["mixed_3b"], blocks["mixed_3c"])
        self.maxpool_4a = MaxPoolSame([3, 3, 3], [2, 2, 2])
        self.mixed_4 = nn.Sequential(*(blocks[f"mixed_4{k}"] for k in "bcdef"))
        self.maxpool_5a = MaxPoolSame([2, 2, 2], [2, 2, 2])
        self.mixed_5 = nn.Sequential(blocks["mixed_5b"], blocks["mixed_5c"])
        self.avg_pool = nn.AvgPool3d([2, 7, 7], [1, 1, 1])
        self.logits = Unit3D(d(384) + d(384) + d(128) + d(128), num_classes, [1, 1, 1], logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool_3a(self.conv3d_2c_3x3(self.conv3d_2b_1x1(self.maxpool_2a(self.conv3d_1a_7x7(x)))))
        x = self.maxpool_5a(self.mixed_4(self.maxpool_4a(self.mixed_3(x))))
        x = self.logits(self.avg_pool(self.mixed_5(x)))  # [B, classes, T', H', W'], H' = W' = 1 at 224
        return x.squeeze(4).squeeze(3).mean(2)


class StyleGANVI3D(nn.Module):
    """An I3D with the StyleGAN-V TorchScript's call: ``forward(x, rescale, resize, return_features)``.

    ``x``: [B, 3, T, H, W], uint8 or float, in [0, 255] when ``rescale`` else already in [-1, 1].
    Returns logits [B, 400] when ``return_features`` else softmax probabilities [B, 400].
    """

    def __init__(self, net: InceptionI3d):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.to(torch.float32)
        if rescale:
            x = x / 255.0 * 2.0 - 1.0
        if resize:
            x = F.interpolate(x, size=[x.shape[2], 224, 224], mode="trilinear", align_corners=False)
        logits = self.net(x)
        return logits if return_features else F.softmax(logits, dim=1)


def build_random_i3d(seed: int = 0, tiny: bool = False) -> StyleGANVI3D:
    """Seeded random-init :class:`StyleGANVI3D` in eval mode (full, or tiny with channels / 8)."""
    net = InceptionI3d(400, channel_div=8 if tiny else 1)
    net.load_state_dict(seeded_state_dict(net.state_dict(), seed))
    return StyleGANVI3D(net).eval()


def export_random_i3d(path: str | os.PathLike, seed: int = 0, tiny: bool = False) -> Path:
    """Write the seeded random I3D as a TorchScript archive at ``path`` (atomically); return the path."""
    return jit_save(build_random_i3d(seed, tiny), path)


def load_i3d(weights: str | os.PathLike = "random-init", seed: int = 0, tiny: bool = False,
             entry_name: str = ENTRY) -> tuple[nn.Module, DetectorInfo]:
    """The FVD detector and its :class:`DetectorInfo`.

    ``weights``: ``"random-init"`` (seeded :class:`StyleGANVI3D`; ``tiny`` for the small variant),
    ``"pretrained"`` (registry entry ``entry_name`` via $OPHORA_WEIGHTS_DIR or the cache dir) or an explicit
    TorchScript file verified against ``entry_name``. Files are loaded with ``torch.jit.load``.
    :class:`~benchmarks.detectors.CustomWeights`: a user's TorchScript archive with StyleGAN-V's call signature,
    or a state dict of the full :class:`InceptionI3d` (400 classes), recorded as ``custom:<file>``.
    """
    mode = weights_mode(weights)
    if mode == "custom":
        return _custom_i3d(Path(weights.path)), custom_info(ENTRY, weights.path, PROTOCOL)
    if mode == "random-init":
        model = build_random_i3d(seed, tiny)
        return model, random_info(ENTRY, "i3d-tiny" if tiny else "i3d", seed, model, PROTOCOL)
    path = resolve(entry_name, None if mode == "pretrained" else Path(weights))
    return jit_load(path), file_info(ENTRY, entry_name, path, PROTOCOL)


def _custom_i3d(path: Path) -> nn.Module:
    """A user's I3D: TorchScript (a zip archive holding ``code/``) as is, else a state dict of InceptionI3d."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any("/code/" in n or n.startswith("code/") for n in archive.namelist()):
                return jit_load(path)
    net = InceptionI3d(400)
    net.load_state_dict(read_state_dict(path))
    return StyleGANVI3D(net).eval()


@torch.inference_mode()
def i3d_features(videos: np.ndarray | torch.Tensor, detector: nn.Module, batch_size: int = 4) -> torch.Tensor:
    """FVD features float32 [B, 400] of uint8 videos [B, T, H, W, 3] (any H, W; T >= 9, 16 in the protocol).

    The detector receives uint8 [B, 3, T, H, W] with StyleGAN-V's flags, exactly as StyleGAN-V calls it.
    About 28 GMACs per 16x224x224 clip for the full I3D.
    """
    x = torch.as_tensor(videos)
    if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"videos must be uint8 [B, T, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    x = x.permute(0, 4, 1, 2, 3)
    device = next(detector.parameters()).device
    chunks = [detector(x[i:i + batch_size].contiguous().to(device), **DETECTOR_KWARGS).float().cpu()
              for i in range(0, len(x), batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 400)
