"""Table 2's video classifiers by name: SlowFast-R50 (pytorchvideo) and MViTv2-S (torchvision), full or tiny.

Every classifier takes one float video ``[B, 3, T, H, W]`` (normalised, T = the recipe's frames) and returns
logits ``[B, num_classes]``. SlowFast builds its slow pathway inside the wrapper (every ``alpha``-th frame,
PySlowFast's PackPathway) and hands pytorchvideo a fresh ``[slow, fast]`` list each call, because
pytorchvideo's multipathway blocks overwrite that list in place.

Kinetics-400 weights come only through the weights registry (:mod:`ophora.weights`, which declares
them with their public sources; ``python -m ophora.weights fetch kinetics400:mvit_v2_s``). ``weights``:
``"auto"`` loads them when present and otherwise trains from scratch, saying so in the returned record;
``"kinetics"`` requires them; ``"none"`` starts from scratch; a path loads that file. The classification head
never loads (Kinetics has 400 classes). Tiny variants (few channels, 8 frames at 32-64 px) run on a CPU in
seconds and always start from scratch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ophora import weights as weights_registry
from ophora.registry import lookup

__all__ = ["ClassifierSpec", "ARCHS", "build_classifier", "SlowFastClassifier", "KINETICS_WEIGHTS",
           "load_backbone", "count_parameters", "describe"]

KINETICS_WEIGHTS = {"slowfast_r50": "kinetics400:slowfast_r50", "mvit_v2_s": "kinetics400:mvit_v2_s"}

@dataclass(frozen=True)
class ClassifierSpec:
    """``arch``: a key of :data:`ARCHS`; ``size``: full or tiny; ``frames``/``crop``: the input the model is
    built for (T and H = W in pixels); ``alpha``: SlowFast's fast/slow frame ratio; ``weights``: see module."""

    arch: str
    size: str = "full"
    frames: int = 16
    crop: int = 224
    alpha: int = 4
    weights: str = "auto"
    dropout: float = 0.5


class SlowFastClassifier(nn.Module):
    """pytorchvideo SlowFast taking a single fast-pathway video [B, 3, T, H, W]."""

    def __init__(self, net: nn.Module, alpha: int):
        super().__init__()
        self.net, self.alpha = net, alpha

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        frames = video.shape[2]
        slow_index = torch.linspace(0, frames - 1, frames // self.alpha, device=video.device).long()
        slow = video.index_select(2, slow_index)
        return self.net([slow, video])  # a fresh list: the network overwrites it in place


def _slowfast(spec: ClassifierSpec, num_classes: int) -> nn.Module:
    from pytorchvideo.models.slowfast import create_slowfast

    if spec.frames % spec.alpha or spec.crop % 32:
        raise ValueError(f"SlowFast needs frames divisible by alpha ({spec.alpha}) and crop divisible by 32, "
                         f"got frames={spec.frames}, crop={spec.crop}")
    side = spec.crop // 32
    pool = ((spec.frames // spec.alpha, side, side), (spec.frames, side, side))
    kwargs: dict[str, Any] = dict(model_num_class=num_classes, dropout_rate=spec.dropout, head_pool_kernel_sizes=pool,
                                  slowfast_fusion_conv_stride=(spec.alpha, 1, 1))
    if spec.size == "tiny":
        kwargs.update(model_depth=18, stem_dim_outs=(8, 2), slowfast_channel_reduction_ratio=(4,),
                      slowfast_fusion_conv_kernel_size=(3, 1, 1), stem_conv_kernel_sizes=((1, 3, 3), (3, 3, 3)))
    return SlowFastClassifier(create_slowfast(**kwargs), spec.alpha)


def _tiny_mvit_blocks():
    from torchvision.models.video.mvit import MSBlockConfig

    def block(heads, cin, cout, stride_q, stride_kv):
        return MSBlockConfig(num_heads=heads, input_channels=cin, output_channels=cout, kernel_q=[3, 3, 3],
                             kernel_kv=[3, 3, 3], stride_q=stride_q, stride_kv=stride_kv)

    return [block(1, 16, 16, [1, 1, 1], [1, 4, 4]), block(1, 16, 32, [1, 1, 1], [1, 2, 2]),
            block(2, 32, 32, [1, 2, 2], [1, 2, 2]), block(2, 32, 32, [1, 1, 1], [1, 1, 1])]


def _mvit(spec: ClassifierSpec, num_classes: int) -> nn.Module:
    from torchvision.models.video import mvit_v2_s
    from torchvision.models.video.mvit import MViT

    if spec.size == "tiny":  # patches of crop/8 px: an 8x8 token grid per frame pair at any crop
        if spec.crop % 8 or spec.frames % 2:
            raise ValueError(f"tiny MViT needs crop divisible by 8 and even frames, got {spec.crop}, {spec.frames}")
        patch = spec.crop // 8
        return MViT(spatial_size=(spec.crop, spec.crop), temporal_size=spec.frames, block_setting=_tiny_mvit_blocks(),
                    residual_pool=True, residual_with_cls_embed=False, rel_pos_embed=True, proj_after_attn=True,
                    dropout=spec.dropout, stochastic_depth_prob=0.1, num_classes=num_classes,
                    patch_embed_kernel=(3, patch, patch), patch_embed_stride=(2, patch, patch),
                    patch_embed_padding=(1, 0, 0))
    if (spec.frames, spec.crop) != (16, 224):
        raise ValueError(f"MViTv2-S is built for 16 frames at 224x224 (torchvision mvit_v2_s), got "
                         f"{spec.frames} frames at {spec.crop}")
    return mvit_v2_s(num_classes=num_classes, dropout=spec.dropout)


ARCHS: dict[str, Callable[[ClassifierSpec, int], nn.Module]] = {"slowfast_r50": _slowfast, "mvit_v2_s": _mvit}


def build_classifier(spec: ClassifierSpec, num_classes: int) -> tuple[nn.Module, dict]:
    """The classifier and a record of its initialisation (``init``: kinetics/scratch, ``weights``, ``note``)."""
    if spec.size not in ("full", "tiny"):
        raise ValueError(f"classifier size must be 'full' or 'tiny', got {spec.size!r}")
    model = lookup(ARCHS, spec.arch, "classifier")(spec, num_classes)
    return model, _initialise(model, spec)


def _initialise(model: nn.Module, spec: ClassifierSpec) -> dict:
    if spec.size == "tiny" or spec.weights == "none":
        return {"init": "scratch", "weights": None, "note": "tiny variant" if spec.size == "tiny" else "weights: none"}
    name = KINETICS_WEIGHTS[spec.arch]
    explicit = None if spec.weights in ("auto", "kinetics") else spec.weights
    try:
        state = weights_registry.load(name, explicit)
    except weights_registry.WeightsNotFoundError as err:
        if spec.weights != "auto":
            raise
        return {"init": "scratch", "weights": name, "note": f"Kinetics weights not found, trained from scratch: {err}"}
    loaded = load_backbone(model, state)
    return {"init": "kinetics", "weights": name, "path": str(weights_registry.resolve(name, explicit, check=False)),
            **loaded}


def load_backbone(model: nn.Module, state: dict) -> dict:
    """Load every tensor of ``state`` whose name and shape match (the 400-class head does not); return counts."""
    if "model_state" in state:  # PySlowFast / pytorchvideo checkpoints wrap the state dict
        state = state["model_state"]
    target = model.net if isinstance(model, SlowFastClassifier) else model
    own = target.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    target.load_state_dict(matched, strict=False)
    return {"loaded_tensors": len(matched), "skipped_tensors": sorted(set(state) - set(matched)),
            "not_loaded": sorted(set(own) - set(matched))[:20]}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(spec: ClassifierSpec) -> str:
    return f"{spec.arch} ({spec.size}, {spec.frames}x{spec.crop}x{spec.crop}, weights={spec.weights})"
