"""Bora (Weixiang-Sun/Bora): text-to-video for biomedical video, Open-Sora 1.0's STDiT fine-tuned on medical data.

What is matched from the released code (``configs/train.py``, ``configs/infer.py``) and Open-Sora 1.0's
``opensora/models/stdit/stdit.py`` that Bora builds on:

- **Denoiser** (:class:`baselines.stdit.STDiT`): patch embedding (1x2x2) of per-frame SD-VAE latents, fixed
  sin-cos spatial (``space_scale`` 0.5) and temporal (``time_scale`` 1.0) position embeddings, the temporal one
  added before the first block's temporal attention; ``depth`` STDiT blocks, each: adaLN-single modulated spatial
  self-attention, temporal self-attention (same gate), cross-attention to the caption tokens (with the T5
  padding mask), modulated MLP; a T2I final layer. The timestep MLP feeds one shared 6xD modulation
  (``t_block``) plus a learned per-block table. Captions: T5 embeddings (max 120 tokens) through a two-layer
  GELU MLP; during training a caption is replaced by a learned null caption with probability
  ``class_dropout_prob`` (0.1), which classifier-free guidance uses at sampling. STDiT-XL/2: depth 28, width
  1152, 16 heads.
- **Diffusion**: IDDPM's linear schedule (1e-4 .. 0.02, 1000 steps), epsilon MSE with uniform timesteps,
  AdamW lr 1e-5, batch 4, gradient clipping 1.0, bf16; sampling: 100 respaced DDPM steps with guidance 7
  applied to the first 3 latent channels (``cfg_channel=3``).
- **Learned variance** (``diffusion.learn_sigma: true`` in the ``paper`` preset, as Open-Sora 1.0's IDDPM:
  ``learn_sigma=True``, ``rescale_learned_sigmas=False``): the STDiT head outputs 2C channels (epsilon, then
  IDDPM's variance interpolation ``v``), the loss is epsilon MSE + the VLB term with the mean detached
  (:func:`baselines.diffusion.diffusion_loss`), DDPM sampling draws with the learned variance, and guidance
  touches only the first ``cfg_channels`` (null: the C epsilon channels) while the other channels, the
  variance included, are the conditional prediction (Open-Sora's ``forward_with_cfg``). The ``tiny`` preset
  keeps the fixed variance.
- **Data and EMA** (``scripts/train.py``: Open-Sora 1.0's ``DatasetFromCSV``, ``get_transforms_video``,
  ``update_ema``): a random window of ``frames`` frames every ``frame_interval`` (``data.window: random``),
  horizontal flips (``data.flip``), an EMA at 0.9999 kept in every checkpoint and written as the model, so
  sampling uses it (``train.ema_decay``); ``window: first``, ``flip: false`` and ``ema_decay: null`` are the
  suite's earlier choices.
- **Start**: like Bora, from Open-Sora 1.0's released STDiT-XL/2 when ``init_from`` names one (a weights-registry
  name such as ``opensora-v1-hq-16x256x256``, the ``paper`` preset's, or a file): :mod:`baselines.opensora`
  converts it (fused qkv split, Conv3d patch kernel, the learned-sigma head: all 2C rows with learn_sigma, its
  epsilon half without, the null caption) and the model folder's ``init_from.json`` records the file and its
  sha256; otherwise random init.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from baselines.diffusion import diffusion_loss
from baselines.frozen import build_vae, missing_pretrained, resolve_pretrained, seeded
from baselines.opensora import init_stdit_from_opensora, missing_opensora, resolve_opensora
from baselines.presets import (
    DataSpec,
    DiffusionSpec,
    SamplingSpec,
    TrainSpec,
    VaeSpec,
    check_arguments,
    config_arguments,
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
from baselines.stdit import STDiT
from baselines.training import read_baseline_info, train_baseline
from ophora.configs import ConfigError
from ophora.model.tokenizer import builtin_corpus, train_t5_tokenizer

__all__ = ["BoraSpec", "TextSpec", "BoraGenerator", "load_bora_spec"]


@dataclass(frozen=True)
class TextSpec:
    """The frozen T5 encoder: ``pretrained`` (a weights-registry name such as ``t5-v1_1-xxl`` or a folder
    holding a T5 encoder and its tokenizer) or, when null, a seeded random ``T5Config(**config)`` encoder with
    a Unigram tokenizer of ``tokenizer_vocab_size`` pieces trained offline on the built-in ophthalmic corpus
    (ophora.model.tokenizer). ``max_length``: tokens per caption (120 in Bora)."""

    pretrained: str | None = None
    config: dict = field(default_factory=dict)
    tokenizer_vocab_size: int = 256
    max_length: int = 120
    seed: int = 0

    def __post_init__(self):
        if self.max_length < 2:
            raise ConfigError("max_length", f"must be at least 2 tokens, got {self.max_length}")
        if self.pretrained is None and not self.config:
            raise ConfigError("config", "a random T5 needs T5Config arguments (or set pretrained)")
        from transformers import T5Config

        check_arguments("config", self.config, config_arguments(T5Config) - {"vocab_size"}, "T5Config")


@dataclass(frozen=True)
class BoraSpec:
    name: str
    generator: str = "bora"
    description: str = ""
    data: DataSpec = field(default_factory=lambda: DataSpec(frames=40, height=256, width=256))
    vae: VaeSpec = field(default_factory=lambda: VaeSpec(pretrained="sd-vae-ft-ema"))
    text: TextSpec = field(default_factory=lambda: TextSpec(pretrained="t5-v1_1-xxl"))
    transformer: dict = field(default_factory=dict)
    class_dropout_prob: float = 0.1
    diffusion: DiffusionSpec = field(default_factory=DiffusionSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    init_from: str | None = None  # Open-Sora 1.0 STDiT checkpoint: weights-registry name or file (None: random)

    def __post_init__(self):
        import inspect

        accepted = set(inspect.signature(STDiT.__init__).parameters) - {"self"}
        fixed = {"in_channels", "out_channels", "input_size", "num_frames", "caption_channels", "model_max_length"}
        unknown = sorted(set(self.transformer) - (accepted - fixed))
        if unknown:
            where = "set from data, vae and text; leave it out" if unknown[0] in fixed else \
                f"unknown STDiT argument(s) {unknown}; known: {sorted(accepted - fixed)}"
            raise ConfigError(f"transformer.{unknown[0]}", where)
        if not 0 <= self.class_dropout_prob < 1:
            raise ConfigError("class_dropout_prob", f"must lie in [0, 1), got {self.class_dropout_prob}")
        if self.data.image_num:
            raise ConfigError("data.image_num", "joint image-video training is Endora's; Bora trains on videos only")


def load_bora_spec(preset: str | os.PathLike | Mapping = "tiny", overrides: Mapping[str, Any] | None = None):
    """A shipped preset (``tiny``, ``paper``) or YAML file with dotted ``overrides``, validated."""
    return load_spec(BoraSpec, "bora", preset, overrides)



def _build_text(text: TextSpec, folder: Path) -> tuple[Any, Any, dict]:
    """(tokenizer, frozen T5 encoder, record). A random T5 and its tokenizer are built and saved once."""
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    if text.pretrained is not None:
        root = resolve_pretrained(text.pretrained)
        tokenizer = AutoTokenizer.from_pretrained(root)
        encoder = T5EncoderModel.from_pretrained(root)
        return tokenizer, encoder.eval().requires_grad_(False), {"pretrained": text.pretrained}
    if (folder / "text_encoder" / "config.json").is_file():
        from transformers import T5TokenizerFast

        tokenizer = T5TokenizerFast.from_pretrained(folder / "tokenizer")
        encoder = T5EncoderModel.from_pretrained(folder / "text_encoder")
    else:
        tokenizer = train_t5_tokenizer(builtin_corpus(), text.tokenizer_vocab_size)
        config = T5Config(vocab_size=len(tokenizer), **text.config)
        encoder = seeded(text.seed, lambda: T5EncoderModel(config))
        tokenizer.save_pretrained(folder / "tokenizer")
        encoder.save_pretrained(folder / "text_encoder")
    record = {"random_init": dict(text.config), "seed": text.seed, "tokenizer_vocab_size": text.tokenizer_vocab_size}
    return tokenizer, encoder.eval().requires_grad_(False), record


@torch.no_grad()
def encode_captions(tokenizer, encoder, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """T5 embeddings [N, L, D] and attention masks [N, L] (1: token), padded/truncated to ``max_length``."""
    tokens = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True,
                       add_special_tokens=True, return_tensors="pt")
    ids, mask = tokens.input_ids.to(encoder.device), tokens.attention_mask.to(encoder.device)
    return encoder(input_ids=ids, attention_mask=mask).last_hidden_state.float(), mask.float()



class BoraRecipe(Recipe):
    name, conditional = "bora", True

    def frozen(self, spec: BoraSpec, clips, base: Path) -> dict[str, Any]:
        vae, vae_record = build_vae(spec.vae, clips, spec.data, base / "vae")
        tokenizer, encoder, text_record = _build_text(spec.text, base)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self._args = _stdit_args(spec, vae.config.latent_channels, factor, encoder.config.d_model)
        return {"vae": vae, "tokenizer": tokenizer, "text_encoder": encoder,
                "record": {"vae": vae_record, "text": text_record,
                           "vae_config": {k: v for k, v in vae.config.items() if not k.startswith("_")}}}

    def clip_tensors(self, spec: BoraSpec, frozen: dict, frames: torch.Tensor, text: str) -> dict:
        hidden, mask = encode_captions(frozen["tokenizer"], frozen["text_encoder"], [text], spec.text.max_length)
        return {"caption": hidden[0], "caption_mask": mask[0]}

    def build_model(self, spec: BoraSpec):
        """Needs :meth:`frozen` first (latent geometry, T5 width). ``spec.init_from``: start from that Open-Sora
        1.0 checkpoint (recorded in ``init_from.json`` of the model folder)."""
        model = STDiT(**self._args)
        self._init_record = None
        if spec.init_from:
            self._init_record = {"init_from": spec.init_from,
                                 **init_stdit_from_opensora(model, resolve_opensora(spec.init_from))}
        model.gradient_checkpointing = spec.train.gradient_checkpointing
        return model

    def loss(self, model, spec: BoraSpec, scheduler, latents, extras, generator):
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        noisy = scheduler.add_noise(latents, noise, extras["timesteps"])
        captions, mask = extras["caption"], extras["caption_mask"]
        drop = (torch.rand(len(captions), generator=generator) < spec.class_dropout_prob).to(latents.device)
        null = _unwrap(model).null_caption[None].expand_as(captions)
        captions = torch.where(drop[:, None, None], null, captions)
        mask = torch.where(drop[:, None], torch.ones_like(mask), mask)
        output = model(noisy, extras["timesteps"], captions, mask)
        return diffusion_loss(output, noise, latents, noisy, extras["timesteps"], scheduler)

    def save_model(self, model, spec: BoraSpec, frozen: dict, folder: Path) -> None:
        model.save_pretrained(folder / "transformer")
        if getattr(self, "_init_record", None):
            import json

            (folder / "init_from.json").write_text(json.dumps(self._init_record, indent=2) + "\n")
        if spec.vae.pretrained is None:
            frozen["vae"].save_pretrained(folder / "vae")
        if spec.text.pretrained is None:
            frozen["tokenizer"].save_pretrained(folder / "tokenizer")
            frozen["text_encoder"].save_pretrained(folder / "text_encoder")


def _unwrap(model):
    return getattr(model, "module", model)


def _stdit_args(spec: BoraSpec, channels: int, factor: int, text_width: int) -> dict[str, Any]:
    if spec.data.height % factor or spec.data.width % factor:
        raise ConfigError("data.height", f"must be a multiple of the VAE factor {factor}")
    learned = {"out_channels": 2 * channels} if spec.diffusion.learn_sigma else {}
    return {"patch_size": 2, **spec.transformer, "in_channels": channels, **learned, "num_frames": spec.data.frames,
            "input_size": (spec.data.height // factor, spec.data.width // factor), "caption_channels": text_width,
            "model_max_length": spec.text.max_length}


class BoraGenerator:
    """Bora behind :class:`baselines.registry.VideoGenerator` (text-conditioned)."""

    name, conditional, stages = "bora", True, ("train",)
    shards_generation = True  # under accelerate launch / torchrun each process makes its share

    def missing_assets(self, preset: str = "tiny",
                       overrides: Mapping[str, Any] | None = None) -> list[tuple[str, str, str]]:
        """Pretrained parts ``preset`` needs that are missing here: (asset, expected at, how to get it)."""
        spec = load_bora_spec(preset, overrides)
        return missing_pretrained(spec) + missing_opensora(spec.init_from)

    def train(self, manifest: str | os.PathLike, out: str | os.PathLike, *, stage: str | None = None,
              preset: str = "tiny", init: str | os.PathLike | None = None,
              overrides: Mapping[str, Any] | None = None, progress: bool = False,
              stop_after: int | None = None) -> Path:
        """Train on ``manifest`` (instructions or raw captions as text) into ``out``; returns ``out/model``.
        ``stop_after`` leaves after that many steps (a killed job; calling again resumes)."""
        if stage not in (None, *self.stages):
            raise ValueError(f"bora has the single stage {self.stages}, not {stage!r}")
        if init is not None:
            raise ValueError("bora takes no init folder; to start from Open-Sora's pretrained STDiT set the "
                             "preset's init_from (e.g. overrides={'init_from': 'opensora-v1-hq-16x256x256'})")
        spec = preset if isinstance(preset, BoraSpec) else load_bora_spec(preset, overrides)
        return train_baseline(BoraRecipe(), manifest, out, spec, stop_after=stop_after, progress=progress)

    def generate(self, model: str | os.PathLike, prompts: Sequence, out: str | os.PathLike, *,
                 videos_per_prompt: int = 1, seed: int = 0, overrides: Mapping[str, Any] | None = None,
                 progress: bool = False) -> list[Path]:
        """Write ``out/iiiii_kk.mp4`` (+ ``manifest.jsonl``) for every prompt x ``videos_per_prompt``."""
        model = Path(model)
        info = read_baseline_info(model, self.name)
        spec = load_bora_spec(info["config"], overrides)
        loaded = _load_for_sampling(model, spec)
        settings = {**base_settings(spec, model, conditional=True), "max_text_length": spec.text.max_length}
        return generate_videos(self.name, model, prompts, out, videos_per_prompt, seed, settings,
                                  spec.sampling.batch_size, spec.data.fps, lambda jobs: _render(loaded, spec, jobs),
                                  progress)


def _load_for_sampling(model: Path, spec: BoraSpec) -> dict:
    from diffusers import AutoencoderKL

    vae_dir = model / "vae" if spec.vae.pretrained is None else resolve_pretrained(spec.vae.pretrained)
    if spec.text.pretrained is None:
        from transformers import T5EncoderModel, T5TokenizerFast

        tokenizer = T5TokenizerFast.from_pretrained(model / "tokenizer")
        encoder = T5EncoderModel.from_pretrained(model / "text_encoder").eval()
    else:
        tokenizer, encoder, _ = _build_text(spec.text, model)
    device = compute_device()
    return {"transformer": STDiT.from_pretrained(model / "transformer").eval().to(device), "tokenizer": tokenizer,
            "text_encoder": encoder.to(device), "vae": AutoencoderKL.from_pretrained(vae_dir).eval().to(device),
            "scheduler": sampling_scheduler(model, spec.sampling), "device": device}


def _guided(transformer, captions, mask, scale: float, channels: int | None):
    """The denoiser output at (x, t) with classifier-free guidance against the null caption on the first
    ``channels`` (null: all epsilon channels, i.e. the first C of a learned-variance model's 2C); the other
    channels (and the variance ``v``) are the conditional prediction, as Open-Sora's ``forward_with_cfg``."""
    null = transformer.null_caption[None].expand_as(captions)
    both_captions = torch.cat([captions, null])
    both_masks = torch.cat([mask, torch.ones_like(mask)])

    def predict(x, t):
        if scale == 1.0:
            return transformer(x, t, captions, mask)
        cond, uncond = transformer(torch.cat([x, x]), torch.cat([t, t]), both_captions, both_masks).chunk(2)
        guided = uncond + scale * (cond - uncond)
        limit = x.shape[1] if channels is None else channels
        if limit >= cond.shape[1]:
            return guided
        return torch.cat([guided[:, :limit], cond[:, limit:]], dim=1)

    return predict


def _render(loaded: dict, spec: BoraSpec, jobs) -> np.ndarray:
    transformer, config = loaded["transformer"], loaded["transformer"].config
    captions, mask = encode_captions(loaded["tokenizer"], loaded["text_encoder"], [j.prompt.text for j in jobs],
                                     spec.text.max_length)
    predict = _guided(transformer, captions, mask, spec.sampling.guidance_scale, spec.sampling.cfg_channels)
    h, w = config.input_size
    shape = (len(jobs), config.in_channels, config.num_frames, h, w)
    generators = [torch.Generator().manual_seed(job.seed) for job in jobs]
    latents = sample_latents(predict, loaded["scheduler"], spec.sampling.steps, shape, generators,
                                loaded["device"])
    return decode_latents(loaded["vae"], latents)
