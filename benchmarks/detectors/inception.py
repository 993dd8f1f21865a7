"""The FID Inception of pytorch-fid, used through that library's own module.

``pytorch_fid.inception.InceptionV3([3])`` (``use_fid_inception=True``, ``resize_input=True``,
``normalize_input=True``) builds the TF-compatible Inception (1008 classes, FID-patched blocks) and fetches
its weights with ``pytorch_fid.inception.load_state_dict_from_url``. We patch only that function: to return a
local, verified file's state dict (published weights) or a seeded state dict of the same architecture
(``random-init``), so nothing is ever downloaded and the module's forward pass is pytorch-fid's own:
bilinear resize to 299x299 (align_corners=False), then 2x - 1, then pool3 features [N, 2048, 1, 1].

StyleGAN-V's FID detector (``fid/stylegan-v``): NVIDIA's TorchScript translation of TensorFlow's
``inception-2015-12-05`` (``inception-2015-12-05.pt``, from stylegan2-ada-pytorch, used unchanged by
StyleGAN-V's ``frechet_inception_distance.py``). It is loaded with ``torch.jit.load`` and called as StyleGAN-V
calls it, ``detector(images, return_features=True)`` on uint8 [N, 3, H, W] at the frames' own size. Inside the
archive (``forward(img, return_features=False, use_fp16=False, no_output_bias=False)``): the frames are cast
to float32 and resampled to 299x299 with ``affine_grid``/``grid_sample`` (bilinear, border padding,
align_corners=False) whose translation ``1/W - 1/299`` (and ``1/H - 1/299``) places output pixel i at input
coordinate ``i * W / 299``, i.e. TF1's ``resize_bilinear`` without half-pixel centres; then ``(x - 128) / 128``,
the Inception layers, and the 2048-d pool3 features (``return_features``) or the softmax over 1008 classes.
The random-init stand-in :class:`StyleGANVInception` has that forward and those steps around the FID
Inception layers of pytorch-fid (the same TensorFlow 2015-12-05 network) with seeded weights; it is not the
published file and its features compare with nothing.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from pytorch_fid import inception as pfi
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
from ophora.weights import jit_load, resolve

__all__ = ["ENTRY", "PROTOCOL", "fid_template_state_dict", "load_fid_inception", "fid_features",
           "STYLEGAN_V_ENTRY", "STYLEGAN_V_PROTOCOL", "StyleGANVInception", "build_random_stylegan_inception",
           "load_stylegan_inception", "stylegan_inception_features"]

ENTRY = "pytorch-fid-inception"
PROTOCOL = "pytorch-fid InceptionV3 pool3 (2048-d): [0,1] -> bilinear 299 (align_corners=False) -> 2x-1"


def fid_template_state_dict() -> dict[str, torch.Tensor]:
    """Names, shapes and dtypes (meta tensors) of the FID Inception's state dict.

    pytorch-fid's FID blocks subclass torchvision's Inception blocks with the same constructor arguments, so
    torchvision's Inception3(num_classes=1008, aux_logits=False) has exactly the FID state-dict layout; the
    strict ``load_state_dict`` inside ``fid_inception_v3`` checks it on every build.
    """
    with torch.device("meta"):
        model = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False,
                                                init_weights=False)
    return model.state_dict()


def _build(state_dict: dict[str, torch.Tensor]) -> pfi.InceptionV3:
    """pytorch-fid's InceptionV3 (pool3 block) with ``state_dict`` as its 'downloaded' FID weights."""
    def offline_loader(url, *args, **kwargs):
        return state_dict

    with mock.patch.object(pfi, "load_state_dict_from_url", offline_loader):
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
                                normalize_input=True, use_fid_inception=True)
    return model.eval()


def load_fid_inception(weights: str | os.PathLike = "random-init", seed: int = 0,
                       entry_name: str = ENTRY) -> tuple[pfi.InceptionV3, DetectorInfo]:
    """The FID Inception in eval mode, and its :class:`DetectorInfo`.

    ``weights``: ``"random-init"`` (seeded, offline), ``"pretrained"`` (registry entry ``entry_name`` found via
    $OPHORA_WEIGHTS_DIR or the cache dir), an explicit file path (verified against ``entry_name``) or
    :class:`~benchmarks.detectors.CustomWeights`: a user's state dict for the same architecture (safetensors or
    ``torch.load(weights_only=True)``; a wrong layout fails naming the keys), recorded as ``custom:<file>``.
    """
    mode = weights_mode(weights)
    if mode == "custom":
        model = _build(read_state_dict(weights.path))
        return model, custom_info(ENTRY, weights.path, PROTOCOL)
    if mode == "random-init":
        model = _build(seeded_state_dict(fid_template_state_dict(), seed))
        return model, random_info(ENTRY, "fid-inception-v3", seed, model, PROTOCOL)
    path = resolve(entry_name, None if mode == "pretrained" else Path(weights))
    model = _build(torch.load(path, map_location="cpu", weights_only=True))
    return model, file_info(ENTRY, entry_name, path, PROTOCOL)


def _as_unit_float(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W] in [0, 1] (x / 255, as pytorch-fid's ToTensor);
    float [N, 3, H, W] already in [0, 1] is passed through as float32."""
    x = torch.as_tensor(frames)
    if x.dtype == torch.uint8:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be [N, H, W, 3], got {tuple(x.shape)}")
        return x.permute(0, 3, 1, 2).float().div_(255.0)
    if not x.is_floating_point() or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"float frames must be [N, 3, H, W] in [0, 1], got {x.dtype} {tuple(x.shape)}")
    return x.float()


@torch.inference_mode()
def fid_features(frames: np.ndarray | torch.Tensor, model: pfi.InceptionV3, batch_size: int = 32) -> torch.Tensor:
    """Pool3 features float32 [N, 2048] of ``frames`` (uint8 [N, H, W, 3] or float [N, 3, H, W] in [0, 1]).

    Resizing and scaling are the module's own (resize_input, normalize_input); nothing is duplicated here.
    """
    x = _as_unit_float(frames)
    device = next(model.parameters()).device
    chunks = [model(x[i:i + batch_size].to(device))[0].squeeze(3).squeeze(2).float().cpu()
              for i in range(0, len(x), batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 2048)


# ---------------------------------------------------------------------------------------------------------
# StyleGAN-V's FID detector (NVIDIA's inception-2015-12-05 TorchScript)

STYLEGAN_V_ENTRY = "stylegan-v-inception"
STYLEGAN_V_PROTOCOL = "StyleGAN-V FID Inception (NVIDIA TorchScript): uint8 [N,3,H,W], TF1 bilinear 299 " \
                      "(affine_grid/grid_sample, border), (x-128)/128, pool3 2048-d (return_features=True)"


class StyleGANVInception(nn.Module):
    """The call of NVIDIA's ``inception-2015-12-05.pt``: ``forward(img, return_features, use_fp16,
    no_output_bias)`` on [N, 3, H, W] in [0, 255] (uint8 or float), around the FID Inception layers ``net``
    (a torchvision Inception3 with pytorch-fid's FID blocks, 1008 classes).

    Returns pool3 features float32 [N, 2048] when ``return_features``, else softmax probabilities [N, 1008]
    (without the output bias when ``no_output_bias``, as the Inception Score call asks).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @staticmethod
    def resample(x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] float -> [N, C, 299, 299]: output pixel i samples input coordinate i * W / 299 (TF1's
        resize_bilinear, align_corners=False, no half-pixel centres), neighbours clamped at the border."""
        n, c, h, w = x.shape
        theta = torch.eye(2, 3, device=x.device)
        theta[0, 2] += theta[0, 0] / w - theta[0, 0] / 299
        theta[1, 2] += theta[1, 1] / h - theta[1, 1] / 299
        grid = F.affine_grid(theta.to(x.dtype).unsqueeze(0).repeat(n, 1, 1), [n, c, 299, 299], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        """Inception layers on [N, 3, 299, 299] in [-1, 1] -> pool3 [N, 2048]."""
        net = self.net
        x = F.max_pool2d(net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(x))), kernel_size=3, stride=2)
        x = F.max_pool2d(net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        for block in (net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c,
                      net.Mixed_6d, net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {tuple(img.shape)}")
        x = self.resample(img.to(torch.float16 if use_fp16 else torch.float32))
        features = self.pool3((x - 128) / 128).to(torch.float32)
        if return_features:
            return features
        logits = features @ self.net.fc.weight.t()
        if not no_output_bias:
            logits = logits + self.net.fc.bias
        return F.softmax(logits, dim=1)


def _fid_inception_net(state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """pytorch-fid's FID Inception (torchvision Inception3 with the FID blocks) holding ``state_dict``."""
    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *args, **kwargs: state_dict):
        return pfi.fid_inception_v3().eval()


def build_random_stylegan_inception(seed: int = 0) -> StyleGANVInception:
    """Seeded random-init :class:`StyleGANVInception` in eval mode (offline)."""
    return StyleGANVInception(_fid_inception_net(seeded_state_dict(fid_template_state_dict(), seed))).eval()


def load_stylegan_inception(weights: str | os.PathLike = "random-init", seed: int = 0,
                            entry_name: str = STYLEGAN_V_ENTRY) -> tuple[nn.Module, DetectorInfo]:
    """StyleGAN-V's FID detector and its :class:`DetectorInfo`.

    ``weights``: ``"random-init"`` (seeded :class:`StyleGANVInception`), ``"pretrained"`` (registry entry
    ``entry_name``, NVIDIA's ``inception-2015-12-05.pt``, via $OPHORA_WEIGHTS_DIR or the cache dir) or an
    explicit file checked against ``entry_name``; files are loaded with ``torch.jit.load``.
    :class:`~benchmarks.detectors.CustomWeights`: a user's TorchScript archive with the same call, or a state dict
    of the FID Inception architecture (wrapped in :class:`StyleGANVInception`), recorded as ``custom:<file>``.
    """
    mode = weights_mode(weights)
    if mode == "custom":
        path = Path(weights.path)
        return _custom_stylegan_inception(path), custom_info(STYLEGAN_V_ENTRY, path, STYLEGAN_V_PROTOCOL)
    if mode == "random-init":
        model = build_random_stylegan_inception(seed)
        return model, random_info(STYLEGAN_V_ENTRY, "stylegan-v-inception", seed, model, STYLEGAN_V_PROTOCOL)
    path = resolve(entry_name, None if mode == "pretrained" else Path(weights))
    return jit_load(path), file_info(STYLEGAN_V_ENTRY, entry_name, path, STYLEGAN_V_PROTOCOL)


def _custom_stylegan_inception(path: Path) -> nn.Module:
    """A user's file: TorchScript (a zip archive holding ``code/``) as is, else a state dict of the FID Inception."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any("/code/" in n or n.startswith("code/") for n in archive.namelist()):
                return jit_load(path)
    return StyleGANVInception(_fid_inception_net(read_state_dict(path))).eval()


@torch.inference_mode()
def stylegan_inception_features(images: torch.Tensor, detector: nn.Module, batch_size: int = 64) -> torch.Tensor:
    """Pool3 features float32 [N, 2048] of uint8 images [N, 3, H, W]: ``detector(x, return_features=True)`` on
    chunks of ``batch_size`` images (StyleGAN-V's dataset batch), as StyleGAN-V calls it."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    device = next(detector.parameters()).device
    chunks = [detector(images[i:i + batch_size].to(device), return_features=True).float().cpu()
              for i in range(0, len(images), batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0, 2048)
