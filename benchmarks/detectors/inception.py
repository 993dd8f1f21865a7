"""The FID Inception of pytorch-fid, used through that library's own module.

``pytorch_fid.inception.InceptionV3([3])`` (``use_fid_inception=True``, ``resize_input=True``,
``normalize_input=True``) builds the TF-compatible Inception (1008 classes, FID-patched blocks) and fetches
its weights with ``pytorch_fid.inception.load_state_dict_from_url``. We patch only that function: to return a
local, verified file's state dict (published weights) or a seeded state dict of the same architecture
(``random-init``), so nothing is ever downloaded and the module's forward pass is pytorch-fid's own:
bilinear resize to 299x299 (align_corners=False), then 2x - 1, then pool3 features [N, 2048, 1, 1].
"""
from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torchvision
from pytorch_fid import inception as pfi

from benchmarks.detectors import (
    DetectorInfo,
    custom_info,
    file_info,
    random_info,
    read_state_dict,
    seeded_state_dict,
    weights_mode,
)
from ophora.weights import resolve

__all__ = ["ENTRY", "PROTOCOL", "fid_template_state_dict", "load_fid_inception", "fid_features"]

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
