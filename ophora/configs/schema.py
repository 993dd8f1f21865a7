"""Typed presets: the dataclasses a YAML preset is validated into.

A preset says everything that changes what a run makes: which model (a diffusers CogVideoX directory or Hub id,
or tiny components built from their constructor arguments), the clip geometry, how clips are encoded, the
two training recipes (TPT, P2FT) and the sampler. Every field is checked when the preset loads; a bad value
raises :class:`~ophora.configs.loader.ConfigError` naming the key (``train.tpt.learning_rate``) and the file.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Literal

from ophora.configs.loader import ConfigError
from ophora.registry import did_you_mean

__all__ = ["ModelConfig", "DataConfig", "PrepareConfig", "StageConfig", "TrainConfig",
           "SamplingConfig", "Preset", "TEMPORAL_COMPRESSION", "SIZE_MULTIPLE"]

TEMPORAL_COMPRESSION = 4  # CogVideoX's causal VAE: 4k+1 frames -> k+1 latent frames
SIZE_MULTIPLE = 16  # spatial VAE factor 8 x transformer patch 2


def _fail(key: str, message: str) -> None:
    raise ConfigError(key, message)


def check_frames(frames: int, key: str = "frames") -> None:
    """Raise :class:`ConfigError` unless ``frames`` is 4k+1 (what the causal VAE can take)."""
    if frames < 1 or (frames - 1) % TEMPORAL_COMPRESSION:
        below = (frames - 1) // TEMPORAL_COMPRESSION * TEMPORAL_COMPRESSION + 1
        _fail(key, f"frame count must be 4k+1 (the VAE compresses time by 4 after the first frame), got "
                   f"{frames}; use {max(below, 1)} or {below + TEMPORAL_COMPRESSION}")


def check_size(height: int, width: int, key: str = "") -> None:
    """Raise :class:`ConfigError` unless both sides are positive multiples of 16 pixels."""
    for name, value in (("height", height), ("width", width)):
        if value < SIZE_MULTIPLE or value % SIZE_MULTIPLE:
            _fail(f"{key}.{name}" if key else name,
                  f"must be a positive multiple of {SIZE_MULTIPLE} (VAE factor 8 x patch 2), got {value}")


def _did_you_mean(name: str, known) -> str:
    hint = did_you_mean(name, known)
    return f"; {hint}" if hint else ""


def _component_arguments() -> dict[str, set[str]]:
    """Constructor arguments each tiny component accepts."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config

    def names(fn) -> set[str]:
        return {p for p in inspect.signature(fn).parameters if p not in ("self", "kwargs")}

    t5 = names(T5Config.__init__) | set(T5Config.attribute_map) | set(T5Config().to_dict())
    return {"transformer": names(CogVideoXTransformer3DModel.__init__), "vae": names(AutoencoderKLCogVideoX.__init__),
            "text_encoder": t5 - {"vocab_size"}, "scheduler": names(CogVideoXDPMScheduler.__init__)}


@dataclass(frozen=True)
class ModelConfig:
    """Either ``pretrained`` (a local diffusers CogVideoX directory or a Hub id) or tiny components.

    Tiny components are constructor arguments: ``transformer`` for CogVideoXTransformer3DModel, ``vae`` for
    AutoencoderKLCogVideoX, ``text_encoder`` for T5Config (its vocab size comes from the tokenizer), and
    ``tokenizer_vocab_size`` for a Unigram tokenizer trained offline on the built-in corpus. ``scheduler`` holds
    CogVideoXDPMScheduler arguments (the noise schedule used for training and sampling). ``seed`` initialises
    the tiny weights. ``max_text_length`` is the T5 token count (226 for CogVideoX). ``tiny_vae_logvar`` fixes
    the random VAE's posterior log-variance (a trained VAE's posterior is nearly deterministic; a random one's
    has unit variance, which would bury the clips under sampling noise); null leaves it random.
    """

    pretrained: str | None = None
    transformer: dict = field(default_factory=dict)
    vae: dict = field(default_factory=dict)
    text_encoder: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=dict)
    tokenizer_vocab_size: int = 256
    max_text_length: int = 226
    seed: int = 0
    tiny_vae_logvar: float | None = None

    @property
    def is_tiny(self) -> bool:
        return self.pretrained is None

    def __post_init__(self):
        if self.max_text_length < 2:
            _fail("max_text_length", f"must be at least 2 tokens, got {self.max_text_length}")
        if self.pretrained is not None:
            for name in ("transformer", "vae", "text_encoder"):
                if getattr(self, name):
                    _fail(name, "give either pretrained or tiny components, not both")
            if self.tiny_vae_logvar is not None:
                _fail("tiny_vae_logvar", "applies to tiny components only; leave it null for a pretrained model")
            if self.scheduler:
                _fail("scheduler", "a pretrained model brings its own scheduler config; leave scheduler empty")
            return
        for name in ("transformer", "vae", "text_encoder"):
            if not getattr(self, name):
                _fail(name, "tiny components need transformer, vae and text_encoder arguments "
                                       "(or set pretrained to a CogVideoX directory or Hub id)")
        for name, accepted in _component_arguments().items():
            unknown = sorted(set(getattr(self, name)) - accepted)
            if unknown:
                _fail(f"{name}.{unknown[0]}", f"unknown argument(s) {unknown}{_did_you_mean(unknown[0], accepted)}")
        if self.transformer.get("max_text_seq_length") != self.max_text_length:
            _fail("transformer.max_text_seq_length",
                  f"must equal max_text_length ({self.max_text_length}), "
                  f"got {self.transformer.get('max_text_seq_length')}")


@dataclass(frozen=True)
class DataConfig:
    """Clip geometry: ``frames`` (4k+1) at ``fps`` frames per second, ``height`` x ``width`` pixels (multiples
    of 16). ``buckets`` lists extra [frames, height, width] shapes a clip may be encoded at (the default shape
    is always a bucket); a batch never mixes buckets. ``selection`` says how a clip becomes a bucket's frames
    (:mod:`ophora.training.prepare`): ``strided`` (released: ``frames`` frames ``floor(N / frames)`` source
    frames apart across the whole clip, resized to the nearest bucket without cropping) or ``fps_window`` (the
    first ``frames`` frames at ``fps``, resized to cover and centre-cropped; shorter clips are skipped).
    ``fps`` is the rate generated videos are written at, and ``fps_window``'s resampling rate."""

    frames: int = 49
    height: int = 480
    width: int = 720
    fps: float = 8.0
    buckets: tuple = ()
    selection: Literal["strided", "fps_window"] = "fps_window"

    def __post_init__(self):
        check_frames(self.frames)
        check_size(self.height, self.width)
        if self.fps <= 0:
            _fail("fps", f"must be positive, got {self.fps}")
        for i, bucket in enumerate(self.buckets):
            if not (isinstance(bucket, (list, tuple)) and len(bucket) == 3):
                _fail(f"buckets[{i}]", f"expected [frames, height, width], got {bucket!r}")
            check_frames(int(bucket[0]), f"buckets[{i}].frames")
            check_size(int(bucket[1]), int(bucket[2]), f"buckets[{i}]")

    def all_buckets(self) -> list[tuple[int, int, int]]:
        """Every (frames, height, width) bucket, the default shape first, without repeats."""
        shapes = [(self.frames, self.height, self.width)] + [tuple(int(v) for v in b) for b in self.buckets]
        return list(dict.fromkeys(shapes))


@dataclass(frozen=True)
class PrepareConfig:
    """Encoding: ``shard_size`` clips per safetensors shard, stored ``dtype``, VAE tiling/slicing for big clips."""

    shard_size: int = 256
    dtype: Literal["float32", "float16", "bfloat16"] = "float16"
    vae_tiling: bool = True

    def __post_init__(self):
        if self.shard_size < 1:
            _fail("shard_size", f"must be at least 1, got {self.shard_size}")


@dataclass(frozen=True)
class StageConfig:
    """One training recipe (TPT or P2FT). Steps count optimizer updates; ``batch_size`` is per process.

    ``loss``: ``v_prediction`` is the reference objective (x0 recovered from the v output, MSE weighted by
    1/(1 - alpha_bar_t)); ``epsilon`` is the plain epsilon-MSE form. ``timestep_sampling``: ``uniform`` draws
    each timestep independently (the released trainer), ``stratified`` splits [0, T) into one sub-interval per
    sample of the global batch (across processes; the project page's "timestep sub-interval sampling").
    ``ema_decay`` null turns EMA off; ``lora_rank`` null trains every weight.
    """

    learning_rate: float = 1e-4
    max_steps: int = 1000
    lr_scheduler: str = "cosine_with_restarts"
    lr_warmup_steps: int = 800
    lr_num_cycles: int = 1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    weight_decay: float = 1e-3
    max_grad_norm: float = 1.0
    mixed_precision: Literal["no", "fp16", "bf16"] = "fp16"
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = True
    checkpoint_every: int = 500
    checkpoints_kept: int | None = None
    loss: Literal["v_prediction", "epsilon"] = "v_prediction"
    timestep_sampling: Literal["stratified", "uniform"] = "stratified"
    ema_decay: float | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None
    seed: int = 42
    dataloader_workers: int = 0

    def __post_init__(self):
        positive = ("learning_rate", "max_steps", "batch_size", "gradient_accumulation_steps", "checkpoint_every")
        for name in positive:
            if getattr(self, name) <= 0:
                _fail(name, f"must be positive, got {getattr(self, name)}")
        for name in ("lr_warmup_steps", "weight_decay", "max_grad_norm", "dataloader_workers"):
            if getattr(self, name) < 0:
                _fail(name, f"must not be negative, got {getattr(self, name)}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                _fail(name, f"must lie in [0, 1), got {getattr(self, name)}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            _fail("ema_decay", f"must lie in (0, 1) or be null, got {self.ema_decay}")
        if self.checkpoints_kept is not None and self.checkpoints_kept < 1:
            _fail("checkpoints_kept", f"must be at least 1 or null (keep all), got {self.checkpoints_kept}")
        if self.lora_rank is not None and self.lora_rank < 1:
            _fail("lora_rank", f"must be at least 1 or null, got {self.lora_rank}")
        from diffusers.optimization import SchedulerType

        names = [s.value for s in SchedulerType]
        if self.lr_scheduler not in names:
            _fail("lr_scheduler", f"unknown schedule {self.lr_scheduler!r}; expected one of {names}")


@dataclass(frozen=True)
class TrainConfig:
    """The two released stages: transfer pre-training and privacy-preserving fine-tuning."""

    tpt: StageConfig = field(default_factory=StageConfig)
    p2ft: StageConfig = field(default_factory=StageConfig)


@dataclass(frozen=True)
class SamplingConfig:
    """Sampler: ``scheduler`` dpm (CogVideoXDPMScheduler) or ddim, its ``timestep_spacing``, ``steps``,
    classifier-free ``guidance_scale`` (1 turns guidance off), ``dynamic_cfg`` (CogVideoX's cosine ramp),
    ``batch_size`` videos per denoising batch, ``negative_prompt``, and the weights' ``dtype`` while sampling."""

    scheduler: Literal["dpm", "ddim"] = "dpm"
    timestep_spacing: Literal["trailing", "leading", "linspace"] = "trailing"
    steps: int = 50
    guidance_scale: float = 6.0
    dynamic_cfg: bool = True
    batch_size: int = 1
    negative_prompt: str = ""
    dtype: Literal["float32", "float16", "bfloat16"] = "float16"

    def __post_init__(self):
        if self.steps < 1:
            _fail("steps", f"must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            _fail("batch_size", f"must be at least 1, got {self.batch_size}")
        if self.guidance_scale < 0:
            _fail("guidance_scale", f"must not be negative, got {self.guidance_scale}")


@dataclass(frozen=True)
class Preset:
    """A whole preset. ``name`` identifies it in every folder a stage writes."""

    name: str
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    description: str = ""

    def stage(self, name: str) -> StageConfig:
        """The recipe of stage ``tpt`` or ``p2ft``."""
        if name not in ("tpt", "p2ft"):
            raise ConfigError("stage", f"unknown stage {name!r}; expected 'tpt' or 'p2ft'")
        return getattr(self.train, name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
