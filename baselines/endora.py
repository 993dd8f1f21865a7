"""Endora (CUHK-AIM-Group/Endora, MICCAI 2024): unconditional endoscopy video generation.

What is matched from the released code (``models/EnDora.py``, ``diffusion/gaussian_diffusion.py``, ``train.py``,
``configs/col/col_train.yaml``, ``col_sample.yaml``):

- **Denoiser**: a Latte-style spatio-temporal transformer (alternating spatial and temporal blocks, adaLN
  timestep conditioning, sin-cos spatial and temporal position embeddings, patch 2) on SD-VAE latents scaled by
  0.18215. Here it is diffusers' ``LatteTransformer3DModel`` with ``video_length`` = the latent frame count and
  ``cross_attention_dim: null``, so its spatial blocks have no cross-attention (Endora is unconditional); the
  caption projection Latte always runs gets a constant zero input and is frozen (it reaches nothing).
  EnDora-XL/2 (28 blocks = 14 spatial + 14 temporal, width 1152, 16 heads) is ``num_layers: 14`` here.
- **DINO prior** (``L_prr``): Endora's loss compares channel-averaged feature maps of the denoiser and of a
  frozen DINO ViT-S/8 run on the clean frames: both are averaged over channels, layer-normalised over tokens,
  and the prior is ``mean(1 - Pearson(a, b))`` over frames, the correlation taken across spatial tokens;
  ``loss = mse + 0.5 * prior``. Here the denoiser's hidden states after spatial block ``prior.layer``
  (``[B*T, N, D]``) pass through a small MLP (D -> hidden -> DINO width) before the channel average; DINO's
  patch features (layer ``prior.dino_layer``) are average-pooled on their 2-D grid to the denoiser's token grid
  (Endora pools the flattened token sequence with ``AdaptiveAvgPool1d(64)``). DINO is frozen and sees clean
  frames only, so its channel-averaged maps are computed once per clip and cached with the latents.
- **Diffusion**: DDPM with a linear beta schedule (1e-4 .. 0.02, 1000 steps), epsilon MSE, uniform timesteps,
  AdamW lr 1e-4 without weight decay, constant LR; sampling DDPM with 250 steps, no guidance.
- **Learned variance** (``diffusion.learn_sigma: true`` in the ``paper`` preset, as Endora's ``learn_sigma=True``
  with IDDPM's ``LossType.MSE``): Latte's ``out_channels`` is 2C, epsilon first then IDDPM's variance
  interpolation ``v`` (Latte's own layout, which diffusers' ``LattePipeline`` splits the same way); the loss is
  ``mse + vlb + 0.5 * prior`` (:func:`baselines.diffusion.diffusion_loss`) and DDPM sampling draws with the
  learned variance. The ``tiny`` preset keeps the fixed variance (``learn_sigma: false``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from baselines.diffusion import diffusion_loss
from baselines.frozen import build_vae, missing_pretrained, resolve_pretrained, seeded
from baselines.presets import (
    DataSpec,
    DiffusionSpec,
    SamplingSpec,
    TrainSpec,
    VaeSpec,
    check_arguments,
    config_arguments,
    constructor_arguments,
    load_spec,
)
from baselines.recipe import Recipe
from baselines.sampling import (
    base_settings,
    compute_device,
    decode_latents,
    generate_videos,
    sample_latents,
    sampling_scheduler,
)
from baselines.training import read_baseline_info, train_baseline
from ophora.configs import ConfigError

__all__ = ["EndoraSpec", "PriorSpec", "EndoraGenerator", "EndoraDenoiser", "load_endora_spec", "prior_loss",
           "pearson_prior"]


@dataclass(frozen=True)
class PriorSpec:
    """The DINO feature prior: ``weight`` (0.5 in Endora; 0 turns it off), the frozen ViT (``pretrained``:
    a weights-registry name such as ``dino-vits8`` or a transformers ViT folder; null: a seeded random
    ``ViTConfig(**config)``), its hidden ``dino_layer`` (-1: last), the denoiser's spatial block ``layer``
    whose output is aligned, and the projection MLP's ``hidden`` width."""

    weight: float = 0.5
    pretrained: str | None = None
    config: dict = field(default_factory=dict)
    seed: int = 0
    dino_layer: int = -1
    layer: int = 0
    hidden: int = 256

    def __post_init__(self):
        if self.weight < 0:
            raise ConfigError("weight", f"must not be negative, got {self.weight}")
        if self.pretrained is None and not self.config:
            raise ConfigError("config", "a random DINO needs ViTConfig arguments (or set pretrained)")
        from transformers import ViTConfig

        check_arguments("config", self.config, config_arguments(ViTConfig), "ViTConfig")


@dataclass(frozen=True)
class EndoraSpec:
    name: str
    generator: str = "endora"
    description: str = ""
    data: DataSpec = field(default_factory=DataSpec)
    vae: VaeSpec = field(default_factory=lambda: VaeSpec(pretrained="sd-vae-ft-ema"))
    transformer: dict = field(default_factory=dict)
    prior: PriorSpec = field(default_factory=lambda: PriorSpec(pretrained="dino-vits8"))
    diffusion: DiffusionSpec = field(default_factory=DiffusionSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    sampling: SamplingSpec = field(default_factory=SamplingSpec)

    def __post_init__(self):
        if self.data.height != self.data.width:
            raise ConfigError("data.height", f"Latte's position embedding is square: height must equal width, "
                                             f"got {self.data.height}x{self.data.width}")
        from diffusers import LatteTransformer3DModel

        check_arguments("transformer", self.transformer, constructor_arguments(LatteTransformer3DModel.__init__),
                           "LatteTransformer3DModel")
        fixed = {"sample_size", "video_length", "in_channels", "out_channels", "cross_attention_dim",
                 "caption_channels"}
        if set(self.transformer) & fixed:
            raise ConfigError(f"transformer.{sorted(set(self.transformer) & fixed)[0]}",
                              "set from data and vae (latent size, frames, channels); leave it out")
        if not 0 <= self.prior.layer < self.transformer.get("num_layers", 1):
            layers = self.transformer.get("num_layers", 1)
            raise ConfigError("prior.layer", f"must name a spatial block in [0, {layers})")


def load_endora_spec(preset: str | os.PathLike | Mapping = "tiny", overrides: Mapping[str, Any] | None = None):
    """A shipped preset (``tiny``, ``paper``) or YAML file with dotted ``overrides``, validated."""
    return load_spec(EndoraSpec, "endora", preset, overrides)


def _latent_geometry(spec: EndoraSpec, vae_config: Mapping) -> tuple[int, int]:
    """(latent channels, latent side) of ``spec``'s VAE."""
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    return int(vae_config["latent_channels"]), spec.data.height // factor


class EndoraDenoiser(nn.Module):
    """Latte transformer + the prior's projection MLP, with a hook that keeps the hidden states of spatial
    block ``layer`` ([B*T, N, D]) of the last forward pass."""

    def __init__(self, transformer, prior: PriorSpec, dino_width: int):
        super().__init__()
        self.transformer = transformer
        width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        self.prior_head = nn.Sequential(nn.Linear(width, prior.hidden), nn.SiLU(), nn.Linear(prior.hidden, dino_width))
        self.transformer.caption_projection.requires_grad_(False)
        self._hidden = None
        self.transformer.transformer_blocks[prior.layer].register_forward_hook(self._keep)

    def _keep(self, module, args, output):
        self._hidden = output

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``latents`` [B, C, T, h, w] -> (epsilon like latents, or [B, 2C, T, h, w] epsilon + variance ``v``
        with learn_sigma; projected features [B*T, N, dino width])."""
        null = latents.new_zeros(latents.shape[0], 1, 1)
        eps = self.transformer(latents, timestep=timesteps, encoder_hidden_states=null, return_dict=False)[0]
        return eps, self.prior_head(self._hidden)


def pearson_prior(projected: torch.Tensor, dino_map: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Endora's prior: ``mean(1 - r)`` with r the Pearson correlation across tokens, per frame, of the
    channel-averaged ``projected`` features [F, N, D] and the DINO map [F, N]. (Endora layer-normalises both
    maps over tokens first; Pearson's r is invariant to that, so it is left out.)"""
    a = projected.float().mean(dim=-1)
    a, b = a - a.mean(dim=1, keepdim=True), dino_map.float() - dino_map.float().mean(dim=1, keepdim=True)
    r = (a * b).sum(dim=1) / torch.sqrt((a * a).sum(dim=1) * (b * b).sum(dim=1) + eps)
    return (1.0 - r).mean()


def prior_loss(model: EndoraDenoiser, noisy: torch.Tensor, timesteps: torch.Tensor, dino_map: torch.Tensor):
    """(denoiser output, prior term) of one batch; ``dino_map`` [B, T, N]."""
    eps, projected = model(noisy, timesteps)
    return eps, pearson_prior(projected, dino_map.reshape(-1, dino_map.shape[-1]))


class EndoraRecipe(Recipe):
    name, conditional = "endora", False

    def frozen(self, spec: EndoraSpec, clips, base: Path) -> dict[str, Any]:
        vae, vae_record = build_vae(spec.vae, clips, spec.data, base / "vae")
        dino, dino_record = _build_dino(spec.prior, base / "dino")
        channels, side = _latent_geometry(spec, vae.config)
        self._geometry, self._dino_width = (channels, side), dino.config.hidden_size  # for build_model
        return {"vae": vae, "dino": dino, "channels": channels, "side": side,
                "record": {"vae": vae_record, "dino": dino_record,
                           "vae_config": {k: v for k, v in vae.config.items() if not k.startswith("_")}}}

    @torch.no_grad()
    def clip_tensors(self, spec: EndoraSpec, frozen: dict, frames: torch.Tensor, text: str) -> dict:
        patch = spec.transformer.get("patch_size", 2)
        return {"dino": dino_maps(frozen["dino"], frames, spec.prior.dino_layer, frozen["side"] // patch)}

    def build_model(self, spec: EndoraSpec) -> EndoraDenoiser:
        """Needs :meth:`frozen` first (latent geometry and DINO width)."""
        transformer = _latte(spec, self._geometry)
        if spec.train.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        return EndoraDenoiser(transformer, spec.prior, self._dino_width)

    def loss(self, model, spec: EndoraSpec, scheduler, latents, extras, generator):
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        noisy = scheduler.add_noise(latents, noise, extras["timesteps"])
        output, prior = prior_loss(model, noisy, extras["timesteps"], extras["dino"])
        denoising, parts = diffusion_loss(output, noise, latents, noisy, extras["timesteps"], scheduler)
        return denoising + spec.prior.weight * prior, {**parts, "prior": prior.item()}

    def save_model(self, model: EndoraDenoiser, spec: EndoraSpec, frozen: dict, folder: Path) -> None:
        from safetensors.torch import save_file

        model.transformer.save_pretrained(folder / "transformer")
        save_file({k: v.contiguous() for k, v in model.prior_head.state_dict().items()},
                  str(folder / "prior_head.safetensors"))
        _save_vae(spec, frozen, folder)


def _save_vae(spec, frozen: dict, folder: Path) -> None:
    """Tiny VAEs are copied into the model folder; pretrained ones are referenced by name in its info."""
    if spec.vae.pretrained is None:
        frozen["vae"].save_pretrained(folder / "vae")


def _latte(spec: EndoraSpec, geometry: tuple[int, int]):
    from diffusers import LatteTransformer3DModel

    channels, side = geometry
    args = {"norm_type": "ada_norm_single", "num_embeds_ada_norm": 1000, "activation_fn": "gelu-approximate",
            "attention_bias": True, "patch_size": 2, **spec.transformer, "in_channels": channels,
            "out_channels": channels * (2 if spec.diffusion.learn_sigma else 1), "sample_size": side,
            "video_length": spec.data.frames, "cross_attention_dim": None, "caption_channels": 1}
    return LatteTransformer3DModel(**args)


def _build_dino(prior: PriorSpec, folder: Path):
    """The frozen DINO ViT (transformers ``ViTModel``, no pooler) and a record of where it came from."""
    from transformers import ViTConfig, ViTModel

    if prior.pretrained is not None:
        model = ViTModel.from_pretrained(resolve_pretrained(prior.pretrained), add_pooling_layer=False)
        return model.eval().requires_grad_(False), {"pretrained": prior.pretrained}
    if (folder / "config.json").is_file():
        model = ViTModel.from_pretrained(folder, add_pooling_layer=False)
    else:
        model = seeded(prior.seed, lambda: ViTModel(ViTConfig(**prior.config), add_pooling_layer=False))
        model.save_pretrained(folder)
    return model.eval().requires_grad_(False), {"random_init": dict(prior.config), "seed": prior.seed}


_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@torch.no_grad()
def dino_maps(dino, frames: torch.Tensor, layer: int, tokens_side: int) -> torch.Tensor:
    """Channel-averaged DINO patch features of ``frames`` (float [T, 3, H, W] in [-1, 1]), average-pooled on
    the patch grid to ``tokens_side`` x ``tokens_side``: float [T, tokens_side**2]."""
    mean = torch.tensor(_IMAGENET_MEAN, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, device=frames.device).view(1, 3, 1, 1)
    pixels = ((frames + 1) / 2 - mean) / std
    out = dino(pixel_values=pixels, output_hidden_states=True, interpolate_pos_encoding=True)
    patches = out.hidden_states[layer][:, 1:]  # drop CLS: [T, M, D]
    patch = dino.config.patch_size
    grid = patches.transpose(1, 2).reshape(len(frames), -1, frames.shape[2] // patch, frames.shape[3] // patch)
    pooled = torch.nn.functional.adaptive_avg_pool2d(grid, tokens_side)  # [T, D, s, s]
    return pooled.mean(dim=1).flatten(1)


class EndoraGenerator:
    """Endora behind :class:`baselines.registry.VideoGenerator` (unconditional: prompts only count and name
    the videos)."""

    name, conditional, stages = "endora", False, ("train",)
    shards_generation = True  # under accelerate launch / torchrun each process makes its share

    def missing_assets(self, preset: str = "tiny",
                       overrides: Mapping[str, Any] | None = None) -> list[tuple[str, str, str]]:
        """Pretrained parts ``preset`` needs that are missing here: (asset, expected at, how to get it)."""
        return missing_pretrained(load_endora_spec(preset, overrides))

    def train(self, manifest: str | os.PathLike, out: str | os.PathLike, *, stage: str | None = None,
              preset: str = "tiny", init: str | os.PathLike | None = None,
              overrides: Mapping[str, Any] | None = None, progress: bool = False,
              stop_after: int | None = None) -> Path:
        """Train on ``manifest`` into ``out``; returns ``out/model``. ``stop_after`` leaves after that many
        steps (a killed job; calling again resumes). ``init`` is not supported (Endora trains from scratch)."""
        _check_stage(self, stage, init)
        spec = preset if isinstance(preset, EndoraSpec) else load_endora_spec(preset, overrides)
        recipe = EndoraRecipe()
        return train_baseline(recipe, manifest, out, spec, stop_after=stop_after, progress=progress)

    def generate(self, model: str | os.PathLike, prompts: Sequence, out: str | os.PathLike, *,
                 videos_per_prompt: int = 1, seed: int = 0, overrides: Mapping[str, Any] | None = None,
                 progress: bool = False) -> list[Path]:
        """Write ``out/iiiii_kk.mp4`` (+ ``manifest.jsonl``) for every prompt x ``videos_per_prompt``."""
        model = Path(model)
        info = read_baseline_info(model, self.name)
        spec = load_endora_spec(info["config"], overrides)
        loaded = _load_for_sampling(model, spec)
        settings = base_settings(spec, model, conditional=False)
        return generate_videos(self.name, model, prompts, out, videos_per_prompt, seed, settings,
                                  spec.sampling.batch_size, spec.data.fps, lambda jobs: _render(loaded, spec, jobs),
                                  progress)


def _check_stage(generator, stage: str | None, init) -> None:
    if stage not in (None, *generator.stages):
        raise ValueError(f"{generator.name} has the single stage {generator.stages}, not {stage!r}")
    if init is not None:
        raise ValueError(f"{generator.name} trains from scratch as published; init={init!r} is not supported")


def _load_for_sampling(model: Path, spec: EndoraSpec) -> dict:
    from diffusers import AutoencoderKL, LatteTransformer3DModel

    device = compute_device()
    transformer = LatteTransformer3DModel.from_pretrained(model / "transformer").eval().to(device)
    vae_dir = model / "vae" if spec.vae.pretrained is None else resolve_pretrained(spec.vae.pretrained)
    vae = AutoencoderKL.from_pretrained(vae_dir).eval().to(device)
    return {"transformer": transformer, "vae": vae, "scheduler": sampling_scheduler(model, spec.sampling),
            "device": device}


def _render(loaded: dict, spec: EndoraSpec, jobs):
    """uint8 frames [B, T, H, W, 3] of a batch of jobs."""
    transformer, vae = loaded["transformer"], loaded["vae"]
    config = transformer.config
    shape = (len(jobs), config.in_channels, config.video_length, config.sample_size, config.sample_size)

    def predict(x, t):
        null = x.new_zeros(x.shape[0], 1, 1)
        return transformer(x, timestep=t, encoder_hidden_states=null, return_dict=False)[0]

    generators = [torch.Generator().manual_seed(job.seed) for job in jobs]
    latents = sample_latents(predict, loaded["scheduler"], spec.sampling.steps, shape, generators,
                                loaded["device"])
    return decode_latents(vae, latents)
