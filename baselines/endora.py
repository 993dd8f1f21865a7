"""Endora (CUHK-AIM-Group/Endora, MICCAI 2024): unconditional endoscopy video generation.

What is matched from the released code (``models/EnDora.py``, ``diffusion/gaussian_diffusion.py``, ``train.py``,
``configs/col/col_train.yaml``, ``col_sample.yaml``):

- **Denoiser**: a Latte-style spatio-temporal transformer (alternating spatial and temporal blocks, adaLN
  timestep conditioning, sin-cos spatial and temporal position embeddings, patch 2) on SD-VAE latents scaled by
  0.18215. Here it is diffusers' ``LatteTransformer3DModel`` with ``video_length`` = the latent frame count and
  ``cross_attention_dim: null``, so its spatial blocks have no cross-attention (Endora is unconditional); the
  caption projection Latte always runs gets a constant zero input and is frozen (it reaches nothing).
  EnDora-XL/2 (28 blocks = 14 spatial + 14 temporal, width 1152, 16 heads) is ``num_layers: 14`` here.
- **DINO prior** (``L_prr``), ``prior.projection``:

  - ``conv`` (the release, ``train.py`` ``special_list = [2, 5, 8, 11]``): four layer pairs, DINO block
    ``prior.dino_layers[k]`` against the denoiser's spatial block ``prior.layers[k]``; each pair's DINO patch
    features, average-pooled on their 2-D grid to the denoiser's token grid, pass through a trainable
    ``Conv2d(DINO width, denoiser width, 1)``; the pair's term is ``mean(1 - Pearson)`` over frames, the
    correlation taken over each frame's tokens x channels; the prior is the mean over pairs.
  - ``mlp`` (the suite's earlier form): one pair, the denoiser's hidden states of spatial block ``prior.layer``
    through a small MLP (D -> hidden -> DINO width), both sides averaged over channels, Pearson across tokens.

  ``loss = mse + 0.5 * prior``. DINO is frozen and sees clean frames only, so its pooled features are computed
  once per clip and cached with the latents (Endora pools the flattened token sequence with
  ``AdaptiveAvgPool1d(64)``; here the 2-D grid is pooled).
- **Joint image-video training** (``data.image_num``, Endora's ``use_image_num: 8``): each sample's video is
  denoised together with ``image_num`` single frames of random clips at the sample's timestep; the images pass
  the spatial blocks only (Latte's image branch: ``enable_temporal_attentions=False``), and the loss is taken over
  the video's and the images' frames together. The prior sees the video frames only.
- **Diffusion**: DDPM with a linear beta schedule (1e-4 .. 0.02, 1000 steps), epsilon MSE, uniform timesteps,
  AdamW lr 1e-4 without weight decay, constant LR; sampling DDPM with 250 steps, no guidance.
- **Data, VAE and EMA** (``datasets/__init__.py`` ``col_img``, ``train.py``): a random window of ``frames``
  frames every ``frame_interval`` (``TemporalRandomCrop``; ``data.window: random``), horizontal flips of the
  video (``data.flip``), the VAE ``sd-vae-ft-mse``, an EMA at 0.9999 that the checkpoints keep and the sampler
  loads: the model folder holds it (``train.ema_decay``). ``window: first``, ``flip: false``, ``image_num: 0``,
  ``projection: mlp``, ``sd-vae-ft-ema`` and ``ema_decay: null`` are the suite's earlier choices.
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
from typing import Any, Literal, Mapping, Sequence

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
           "pearson_prior", "pearson_pairs"]


@dataclass(frozen=True)
class PriorSpec:
    """The DINO feature prior: ``weight`` (0.5 in Endora; 0 turns it off), the frozen ViT (``pretrained``:
    a weights-registry name such as ``dino-vits8`` or a transformers ViT folder; null: a seeded random
    ``ViTConfig(**config)``) and the ``projection`` (module docstring). ``conv``: DINO blocks ``dino_layers``
    (0-based: the output of that block) paired with the denoiser's spatial blocks ``layers``. ``mlp``: DINO's
    hidden state ``dino_layer`` (-1: last), the denoiser's spatial block ``layer`` and the MLP's ``hidden``
    width."""

    weight: float = 0.5
    pretrained: str | None = None
    config: dict = field(default_factory=dict)
    seed: int = 0
    projection: Literal["conv", "mlp"] = "mlp"
    layers: tuple = ()
    dino_layers: tuple = ()
    dino_layer: int = -1
    layer: int = 0
    hidden: int = 256

    def __post_init__(self):
        if self.weight < 0:
            raise ConfigError("weight", f"must not be negative, got {self.weight}")
        if self.projection == "conv" and (not self.layers or len(self.layers) != len(self.dino_layers)):
            raise ConfigError("layers", f"the conv prior pairs layers with dino_layers one to one, got "
                                        f"{list(self.layers)} and {list(self.dino_layers)}")
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
        blocks = self.transformer.get("num_layers", 1)
        used = self.prior.layers if self.prior.projection == "conv" else (self.prior.layer,)
        if not all(0 <= layer < blocks for layer in used):
            raise ConfigError("prior.layers" if self.prior.projection == "conv" else "prior.layer",
                              f"must name spatial blocks in [0, {blocks}), got {list(used)}")
        if self.prior.projection == "conv" and self.prior.config:
            depth = self.prior.config.get("num_hidden_layers", 12)
            if not all(0 <= layer < depth for layer in self.prior.dino_layers):
                raise ConfigError("prior.dino_layers", f"must name DINO blocks in [0, {depth}), "
                                                       f"got {list(self.prior.dino_layers)}")


def load_endora_spec(preset: str | os.PathLike | Mapping = "tiny", overrides: Mapping[str, Any] | None = None):
    """A shipped preset (``tiny``, ``paper``) or YAML file with dotted ``overrides``, validated."""
    return load_spec(EndoraSpec, "endora", preset, overrides)


def _latent_geometry(spec: EndoraSpec, vae_config: Mapping) -> tuple[int, int]:
    """(latent channels, latent side) of ``spec``'s VAE."""
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    return int(vae_config["latent_channels"]), spec.data.height // factor


class EndoraDenoiser(nn.Module):
    """Latte transformer + the prior's projection (``conv``: one ``Conv2d(DINO width, width, 1)`` per layer pair;
    ``mlp``: one MLP), with hooks that keep the hidden states ([B*T, N, D]) of the prior's spatial blocks from the
    last forward pass."""

    def __init__(self, transformer, prior: PriorSpec, dino_width: int):
        super().__init__()
        self.transformer, self.projection = transformer, prior.projection
        width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        if prior.projection == "conv":
            self.prior_head = nn.ModuleList(nn.Conv2d(dino_width, width, 1) for _ in prior.layers)
            layers = list(prior.layers)
        else:
            self.prior_head = nn.Sequential(nn.Linear(width, prior.hidden), nn.SiLU(),
                                            nn.Linear(prior.hidden, dino_width))
            layers = [prior.layer]
        self.transformer.caption_projection.requires_grad_(False)
        self._hidden: dict[int, torch.Tensor] = {}
        for k, layer in enumerate(layers):
            self.transformer.transformer_blocks[layer].register_forward_hook(self._keeper(k))

    def _keeper(self, k: int):
        def keep(module, args, output):
            self._hidden[k] = output
        return keep

    def denoise(self, latents: torch.Tensor, timesteps: torch.Tensor, temporal: bool = True) -> torch.Tensor:
        """Latte's output for ``latents`` [B, C, T, h, w]; ``temporal`` False: frames as independent images."""
        null = latents.new_zeros(latents.shape[0], 1, 1)
        return self.transformer(latents, timestep=timesteps, encoder_hidden_states=null,
                                enable_temporal_attentions=temporal, return_dict=False)[0]

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, images: torch.Tensor | None = None):
        """``latents`` [B, C, T, h, w] (and ``images`` [B, C, n, h, w], denoised as images at the same
        timesteps) -> (epsilon like latents, or [B, 2C, T, h, w] epsilon + variance ``v`` with learn_sigma, the
        images' output appended on the frame axis; the prior's denoiser side for the video: ``mlp``, projected
        features [B*T, N, dino width]; ``conv``, the kept hidden states, a list of [B*T, N, D])."""
        first = self.denoise(images, timesteps, temporal=False) if images is not None else None
        eps = self.denoise(latents, timesteps)  # last, so the hooks hold the video's hidden states
        if first is not None:
            eps = torch.cat([eps, first], dim=2)
        if self.projection == "conv":
            return eps, [self._hidden[k] for k in range(len(self.prior_head))]
        return eps, self.prior_head(self._hidden[0])


def pearson_prior(projected: torch.Tensor, dino_map: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The ``mlp`` prior: ``mean(1 - r)`` with r the Pearson correlation across tokens, per frame, of the
    channel-averaged ``projected`` features [F, N, D] and the DINO map [F, N]. (Endora layer-normalises both
    maps over tokens first; Pearson's r is invariant to that, so it is left out.)"""
    return _one_minus_pearson(projected.float().mean(dim=-1), dino_map.float(), eps)


def _one_minus_pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``mean(1 - r)`` over rows, r the Pearson correlation of each row of ``a`` and ``b`` ([F, M])."""
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    r = (a * b).sum(dim=1) / torch.sqrt((a * a).sum(dim=1) * (b * b).sum(dim=1) + eps)
    return (1.0 - r).mean()


def pearson_pairs(hidden: list[torch.Tensor], dino: torch.Tensor, convs: nn.ModuleList,
                  eps: float = 1e-6) -> torch.Tensor:
    """The ``conv`` prior: the mean over layer pairs ``k`` of ``mean(1 - r)``, r per frame the Pearson
    correlation over tokens x channels of the denoiser's ``hidden[k]`` [F, N, D] and ``convs[k]`` applied to
    DINO's pooled features ``dino[:, k]`` [F, N, D_dino] (N a square token grid)."""
    frames, _, tokens, width = dino.shape
    side = int(round(tokens ** 0.5))
    terms = []
    for k, conv in enumerate(convs):
        grid = dino[:, k].float().transpose(1, 2).reshape(frames, width, side, side)
        target = conv(grid).flatten(2).transpose(1, 2)  # [F, N, D]
        terms.append(_one_minus_pearson(hidden[k].float().flatten(1), target.flatten(1), eps))
    return torch.stack(terms).mean()


def prior_loss(model: EndoraDenoiser, noisy: torch.Tensor, timesteps: torch.Tensor, dino: torch.Tensor,
               images: torch.Tensor | None = None):
    """(denoiser output, prior term) of one batch; ``dino`` [B, T, N] (``mlp``) or [B, T, P, N, D] (``conv``);
    ``images``: noisy images [B, C, n, h, w] of joint training, their output appended on the frame axis."""
    eps, side = model(noisy, timesteps, images)
    inner = model.module if hasattr(model, "module") else model
    if inner.projection == "conv":
        return eps, pearson_pairs(side, dino.flatten(0, 1), inner.prior_head)
    return eps, pearson_prior(side, dino.reshape(-1, dino.shape[-1]))


class EndoraRecipe(Recipe):
    name, conditional, per_frame = "endora", False, ("dino",)

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
        if spec.prior.projection == "conv":
            layers = [layer + 1 for layer in spec.prior.dino_layers]  # hidden_states[k + 1]: block k's output
            return {"dino": dino_features(frozen["dino"], frames, layers, frozen["side"] // patch)}
        return {"dino": dino_maps(frozen["dino"], frames, spec.prior.dino_layer, frozen["side"] // patch)}

    def build_model(self, spec: EndoraSpec) -> EndoraDenoiser:
        """Needs :meth:`frozen` first (latent geometry and DINO width)."""
        transformer = _latte(spec, self._geometry)
        if spec.train.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        return EndoraDenoiser(transformer, spec.prior, self._dino_width)

    def loss(self, model, spec: EndoraSpec, scheduler, latents, extras, generator):
        t = extras["timesteps"]
        if "images" in extras:  # joint training: the images and the video concatenated on the frame axis
            latents = torch.cat([latents, extras["images"]], dim=2)
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        noisy = scheduler.add_noise(latents, noise, t)
        frames = spec.data.frames
        images = noisy[:, :, frames:] if "images" in extras else None
        output, prior = prior_loss(model, noisy[:, :, :frames], t, extras["dino"], images)
        denoising, parts = diffusion_loss(output, noise, latents, noisy, t, scheduler)
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
def dino_features(dino, frames: torch.Tensor, layers: Sequence[int], tokens_side: int) -> torch.Tensor:
    """DINO patch features of ``frames`` (float [T, 3, H, W] in [-1, 1]) at hidden states ``layers``, each
    average-pooled on the patch grid to ``tokens_side`` x ``tokens_side``: float [T, len(layers), side**2, D]."""
    hidden = _dino_hidden(dino, frames)
    return torch.stack([_pooled_grid(dino, hidden[layer], frames, tokens_side).flatten(2).transpose(1, 2)
                        for layer in layers], dim=1)


def _dino_hidden(dino, frames: torch.Tensor):
    mean = torch.tensor(_IMAGENET_MEAN, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, device=frames.device).view(1, 3, 1, 1)
    pixels = ((frames + 1) / 2 - mean) / std
    return dino(pixel_values=pixels, output_hidden_states=True, interpolate_pos_encoding=True).hidden_states


def _pooled_grid(dino, states: torch.Tensor, frames: torch.Tensor, tokens_side: int) -> torch.Tensor:
    """Patch tokens (CLS dropped) [T, 1 + M, D] -> [T, D, side, side], average-pooled on the 2-D grid."""
    patch = dino.config.patch_size
    grid = states[:, 1:].transpose(1, 2).reshape(len(frames), -1, frames.shape[2] // patch, frames.shape[3] // patch)
    return torch.nn.functional.adaptive_avg_pool2d(grid, tokens_side)


@torch.no_grad()
def dino_maps(dino, frames: torch.Tensor, layer: int, tokens_side: int) -> torch.Tensor:
    """Channel-averaged DINO patch features of ``frames`` (float [T, 3, H, W] in [-1, 1]), average-pooled on
    the patch grid to ``tokens_side`` x ``tokens_side``: float [T, tokens_side**2]."""
    pooled = _pooled_grid(dino, _dino_hidden(dino, frames)[layer], frames, tokens_side)  # [T, D, s, s]
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
