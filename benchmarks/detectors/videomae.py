"""The VideoMAE detector of content-debiased FVD (``fvd/videomae``; Ge et al., CVPR 2024; the ``cd-fvd`` package).

cd-fvd scores with VideoMAE-v2's ViT-g/14 fine-tuned on SSv2 (``vit_g_hybrid_pt_1200e_ssv2_ft.pth``: 40 blocks of
width 1408, 16 heads, MLP 6144, tubelets of 2 frames x 14 x 14 px at 224 px, sinusoidal positions, LayerNorm eps
1e-6, qkv biases for q and v only, no layer scale) and takes ``forward_features``: the mean of every token after
the last block through ``fc_norm`` -> 1408-d. Here the same network is ``transformers.VideoMAEModel`` (whose blocks,
positions and patch embedding are that architecture) plus that ``fc_norm``: :class:`VideoMAEFeatures`. A cd-fvd
checkpoint (VideoMAE-v2 key names: ``patch_embed.proj``, ``blocks.N.attn.qkv`` with ``q_bias``/``v_bias``, ...)
is converted by :func:`from_videomae_v2` and loaded strictly; the classification head is dropped.

Weights: ``random-init`` (seeded, the full network or, ``tiny``, 2 blocks of width 64 for tests and demos) or the
user's own cd-fvd checkpoint (``--detector fvd=PATH``, recorded as custom). The suite has no registry entry for the
4 GB file, so ``pretrained`` says where to get it instead of downloading anything.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from benchmarks.detectors import (
    DetectorInfo,
    custom_info,
    random_info,
    read_state_dict,
    seeded_state_dict,
    weights_mode,
)
from ophora.weights import WeightsNotFoundError

__all__ = ["VIT_G", "TINY", "VideoMAEFeatures", "from_videomae_v2", "read_checkpoint", "load_videomae", "CHECKPOINT"]

CHECKPOINT = "vit_g_hybrid_pt_1200e_ssv2_ft.pth"
CHECKPOINT_URL = "https://huggingface.co/OpenGVLab/InternVideoMAE_models/resolve/main/mae-g/" + CHECKPOINT
VIT_G = dict(hidden_size=1408, num_hidden_layers=40, num_attention_heads=16, intermediate_size=6144)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


class VideoMAEFeatures(nn.Module):
    """VideoMAE encoder + ``fc_norm`` of the mean token: float [B, 3, T, 224, 224] in [0, 1] -> [B, width]."""

    def __init__(self, size: Mapping[str, int] = VIT_G, num_frames: int = 16):
        super().__init__()
        from transformers import VideoMAEConfig, VideoMAEModel

        config = VideoMAEConfig(image_size=224, patch_size=14, num_channels=3, num_frames=num_frames, tubelet_size=2,
                                qkv_bias=True, use_mean_pooling=True, layer_norm_eps=1e-6, hidden_act="gelu",
                                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **size)
        self.encoder = VideoMAEModel(config)
        self.fc_norm = nn.LayerNorm(config.hidden_size, eps=1e-6)

    @property
    def dim(self) -> int:
        return self.fc_norm.normalized_shape[0]

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(pixel_values=videos.permute(0, 2, 1, 3, 4)).last_hidden_state  # [B, T', width]
        return self.fc_norm(tokens.mean(1))


def read_checkpoint(path: Any) -> Mapping[str, torch.Tensor]:
    """A VideoMAE-v2 checkpoint as cd-fvd loads it (its state dict under ``model`` or ``module``, or flat),
    read with ``torch.load(weights_only=True)`` (``.safetensors``: flat), refused naming the file otherwise."""
    if str(path).endswith(".safetensors"):
        return read_state_dict(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's file's problem
        raise ValueError(f"{path}: not a checkpoint readable with torch.load(weights_only=True) "
                         f"({type(err).__name__})") from None
    for wrapper in ("model", "module"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a VideoMAE-v2 state dict (names -> tensors), found {type(state).__name__}")
    return state


def from_videomae_v2(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A VideoMAE-v2 fine-tuned state dict (cd-fvd's checkpoint, optionally under ``model``/``module``) -> the
    state dict of :class:`VideoMAEFeatures` (qkv split into query, key, value; head dropped)."""
    for wrapper in ("model", "module"):
        if isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("head.") or key == "pos_embed":
            continue  # classification head; sinusoidal positions are rebuilt by transformers
        if key.startswith("fc_norm."):
            out[key] = value
        elif key.startswith("patch_embed.proj."):
            out["encoder.embeddings.patch_embeddings.projection." + key.split(".")[-1]] = value
        elif key.startswith("blocks."):
            out.update(_block(key, value))
        else:
            raise KeyError(f"unexpected key {key!r} in a VideoMAE-v2 checkpoint")
    return out


_BLOCK_NAMES = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
                "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense", "attn.q_bias": "attention.attention.query",
                "attn.v_bias": "attention.attention.value"}


def _block(key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    _, index, rest = key.split(".", 2)
    prefix = f"encoder.encoder.layer.{index}."
    if rest == "attn.qkv.weight":
        q, k, v = value.chunk(3, dim=0)
        return {prefix + "attention.attention.query.weight": q, prefix + "attention.attention.key.weight": k,
                prefix + "attention.attention.value.weight": v}
    if rest in ("attn.q_bias", "attn.v_bias"):
        return {prefix + _BLOCK_NAMES[rest] + ".bias": value}
    module, _, leaf = rest.rpartition(".")
    if module not in _BLOCK_NAMES:
        raise KeyError(f"unexpected key {key!r} in a VideoMAE-v2 checkpoint")
    return {prefix + _BLOCK_NAMES[module] + "." + leaf: value}


def load_videomae(weights: Any, seed: int, tiny: bool, protocol: str) -> tuple[VideoMAEFeatures, DetectorInfo]:
    """The content-debiased FVD detector and its :class:`DetectorInfo` (see the module docstring)."""
    mode = weights_mode(weights)
    model = VideoMAEFeatures(TINY if tiny else VIT_G)
    if mode == "random-init":
        model.load_state_dict(seeded_state_dict(model.state_dict(), seed))
        return model.eval(), random_info("cd-fvd-videomae", "videomae-tiny" if tiny else "videomae-vit-g", seed,
                                         model, protocol)
    if mode == "custom":  # the declared architecture (tiny: the test-sized one), loaded strictly
        model.load_state_dict(from_videomae_v2(read_checkpoint(weights.path)))
        return model.eval(), custom_info("cd-fvd-videomae", weights.path, protocol)
    raise WeightsNotFoundError(f"{protocol}: the suite has no registry entry for cd-fvd's {CHECKPOINT} (about 4 GB, "
                               f"{CHECKPOINT_URL}); fetch it yourself and pass --detector fvd=PATH")

