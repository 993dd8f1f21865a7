"""Curation settings: YAML (or JSON) file -> typed, frozen dataclasses -> stage constructors.

Every key is optional; ``python -m ophora.curate --print-config`` prints the defaults. The suite's loader reads
and validates the file (``load_config(CurationConfig, path)``, ``build_config(CurationConfig, mapping)`` from
:mod:`ophora.configs`): unknown keys and bad values raise :class:`~ophora.configs.ConfigError` naming the dotted
key, with the closest known key. Secrets (``api_key``) are never written anywhere: files and
logs get :func:`plain` output, where the key is redacted; by default the key is read from the environment
variable named by ``api_key_env``.
"""
from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from ophora.configs import ConfigError
from ophora.registry import did_you_mean

__all__ = ["ResolutionConfig", "DynamicsConfig", "ChatConfig", "RewriteConfig", "OverlayConfig",
           "VlmConfig", "PrivacyConfig", "ExecutionConfig", "OutputConfig", "CurationConfig", "plain", "redact",
           "REDACTED"]

REDACTED = "***"

@dataclass(frozen=True)
class ResolutionConfig:
    """Minimum frame size in pixels (Ophora: 720x480), compared orientation-free: the long side must reach the
    larger minimum and the short side the smaller one, so a 480x720 portrait clip passes too."""

    min_width: int = 720
    min_height: int = 480


@dataclass(frozen=True)
class DynamicsConfig:
    """Scene cuts (PySceneDetect ContentDetector) and motion energy on frames downscaled to ``analysis_height``.

    ``threshold``: ContentDetector's score threshold (27 by default); ``min_scene_len``: frames between cuts and
    before the first one (PySceneDetect's default 15 would hide cuts in short clips); ``max_cuts``: most cuts a
    kept clip may have; ``min_motion``: least median mean-absolute grey-level change between consecutive frames
    (0..255) of a kept clip, below which it is frozen or static; ``max_frames``: frames analysed at most.
    """

    analysis_height: int = 96
    threshold: float = 27.0
    min_scene_len: int = 3
    max_cuts: int = 0
    min_motion: float = 0.5
    max_frames: int = 600


@dataclass(frozen=True)
class ChatConfig:
    """An OpenAI-compatible chat endpoint (vLLM, Ollama, a hosted API).

    ``base_url`` ends before ``/chat/completions``. The key is ``api_key`` or, when that is empty, the
    environment variable ``api_key_env``; a missing key sends no Authorization header (local servers).
    ``timeout_s`` bounds each try's whole wall time (connect, headers and body together); ``max_retries``
    after the first try, waiting ``backoff_s * 2**attempt`` (at most ``backoff_max_s``, with jitter, or the
    server's Retry-After) on 429, 5xx, timeouts, dropped connections and malformed answers; 401 and 403 are
    not retried, and end the worker's requests to that endpoint for the run;
    ``concurrency`` requests in flight per worker process; ``cache_dir`` None = the user cache dir.
    """

    base_url: str = "http://localhost:8000/v1"
    model: str = "Qwen/Qwen2.5-72B-Instruct"
    api_key_env: str = "OPHORA_LLM_API_KEY"
    api_key: str = field(default="", repr=False)
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    concurrency: int = 8
    temperature: float = 0.0
    max_tokens: int = 400
    cache_dir: str | None = None

    OPERATIONAL: typing.ClassVar[tuple[str, ...]] = (
        "api_key", "api_key_env", "timeout_s", "max_retries", "backoff_s", "backoff_max_s", "concurrency",
        "cache_dir")

    def resolved_key(self) -> str:
        return self.api_key or os.environ.get(self.api_key_env, "")


@dataclass(frozen=True)
class RewriteConfig:
    """Caption -> instruction. ``backend``: "rules" (embedded, deterministic) or "openai".

    ``max_tokens``: T5 budget of an instruction including the end token (CogVideoX: 226), counted with
    ``tokenizer`` (a Hugging Face tokenizer name or path) when set, else with the conservative estimate of
    :func:`ophora.curation.rewrite.tokens.estimate_t5_tokens`. ``max_input_chars``: captions are cut to this
    length before rewriting (recorded). ``template``: the prompt template of the openai backend.
    """

    backend: str = "rules"
    max_tokens: int = 226
    max_input_chars: int = 8000
    tokenizer: str | None = None
    template: str = "rewrite_v1"
    openai: ChatConfig = ChatConfig()


@dataclass(frozen=True)
class OverlayConfig:
    """Burned-in text, watermarks and faces found on ``frames`` frames at most ``analysis_height`` pixels high.

    Subtitles: in the bottom ``subtitle_band`` of the frame, a row crossed at least ``subtitle_min_strokes``
    times by edges of at least ``subtitle_contrast`` grey levels (white text on a dark outline), in at least
    ``subtitle_min_fraction`` of the frames. Watermarks: in a corner box of ``watermark_box`` = (height, width)
    fractions, bright strokes (white top-hat >= ``watermark_tophat`` grey levels) present in at least
    ``watermark_persistence`` of the frames, and a row crossing at least ``watermark_min_strokes`` of them.
    Faces (``faces``: on or off): scikit-image's LBP frontal-face cascade on ``face_frames`` of those frames,
    rescaled so that a face of ``face_min_size`` source pixels fills the cascade's 24-pixel window, at most
    ``face_max_height`` pixels high; pyramid step ``face_scale_factor``, window step ``face_step_ratio``, and
    a face needs ``face_min_neighbors`` agreeing windows (see :mod:`ophora.curation.privacy.faces`).
    """

    analysis_height: int = 192
    frames: int = 24
    subtitle_band: float = 0.25
    subtitle_contrast: float = 100.0
    subtitle_min_strokes: float = 10.0
    subtitle_min_fraction: float = 0.5
    watermark_box: tuple[float, float] = (0.22, 0.45)
    watermark_tophat: float = 20.0
    watermark_persistence: float = 0.8
    watermark_min_strokes: int = 6
    faces: bool = True
    face_frames: int = 4
    face_min_size: int = 32
    face_max_height: int = 360
    face_scale_factor: float = 1.1
    face_step_ratio: float = 1.25
    face_min_neighbors: int = 8


@dataclass(frozen=True)
class VlmConfig:
    """Vision-language privacy check: ``frames`` frames, each sent as a JPEG ``image_height`` pixels high."""

    frames: int = 4
    image_height: int = 336
    template: str = "privacy_v1"
    chat: ChatConfig = ChatConfig(model="Qwen/Qwen2.5-VL-72B-Instruct", max_tokens=200)


@dataclass(frozen=True)
class PrivacyConfig:
    """The Ophora-28K filter. ``backend``: "overlay" (embedded) or "vlm"."""

    backend: str = "overlay"
    overlay: OverlayConfig = OverlayConfig()
    vlm: VlmConfig = VlmConfig()


@dataclass(frozen=True)
class ExecutionConfig:
    """``workers`` processes (local) or Ray tasks in flight; ``shard_size`` clips per ledger shard;
    ``batch_size`` clips handed to the stages together (the openai backends send a batch concurrently).

    ``strict``: a run with any failed clip (a stage that could not evaluate it: endpoint down, unreadable
    video) ends with an error. By default failed clips are reported and only a run in which every clip that
    reached some stage failed there ends with an error; failed clips are retried by the next run either way.
    """

    workers: int = 1
    executor: str = "local"
    shard_size: int = 64
    batch_size: int = 8
    ray_address: str | None = None
    strict: bool = False


@dataclass(frozen=True)
class OutputConfig:
    """How clips enter ``clips/`` of the output sets: "hardlink" (copies across file systems), "symlink", "copy"."""

    link: str = "hardlink"


@dataclass(frozen=True)
class CurationConfig:
    resolution: ResolutionConfig = ResolutionConfig()
    dynamics: DynamicsConfig = DynamicsConfig()
    rewrite: RewriteConfig = RewriteConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    execution: ExecutionConfig = ExecutionConfig()
    output: OutputConfig = OutputConfig()

    def secrets(self) -> tuple[str, ...]:
        """The API keys this config sends (resolved from the environment), for :func:`redact`."""
        return tuple({chat.resolved_key() for chat in (self.rewrite.openai, self.privacy.vlm.chat)} - {""})

    def __post_init__(self):
        _choice("rewrite.backend", self.rewrite.backend, ("rules", "openai"))
        _choice("privacy.backend", self.privacy.backend, ("overlay", "vlm"))
        _choice("execution.executor", self.execution.executor, ("local", "ray"))
        _choice("output.link", self.output.link, ("hardlink", "symlink", "copy"))
        for name in ("workers", "shard_size", "batch_size"):
            if getattr(self.execution, name) < 1:
                raise ConfigError(f"execution.{name}", f"must be at least 1, got {getattr(self.execution, name)}")


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        hint = did_you_mean(value, allowed)
        raise ConfigError(key, f"must be one of {list(allowed)}, got {value!r}{'; ' + hint if hint else ''}")


def plain(config: Any, digest: bool = False) -> Any:
    """JSON-ready dict of a config dataclass with secrets (API keys, a password in a base URL) redacted;
    ``digest`` also drops operational knobs (timeouts, retries, concurrency, cache folder) that cannot change
    a verdict."""
    if not dataclasses.is_dataclass(config):
        return list(config) if isinstance(config, tuple) else config
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(config, ChatConfig) and f.name in ChatConfig.OPERATIONAL:
            if digest:
                continue
            if f.name == "api_key":
                value = "<redacted>" if value else ""
        if isinstance(config, ChatConfig) and f.name == "base_url":
            value = _without_password(value)
        out[f.name] = plain(value, digest)
    return out


def _without_password(url: str) -> str:
    """``url`` with the password of ``user:password@`` replaced by ``<redacted>``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.partition("@") if "@" in rest.split("/", 1)[0] else ("", "", rest)
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:<redacted>@{host}"


# "Authorization: <value>" (any scheme) and "Bearer <token>", in headers echoed as text, JSON or repr()s.
_AUTH_VALUE = re.compile(r"""(?i)(authorization["']?\s*[:=]\s*["']?)[^"',;}\r\n]+""")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;}]+")


def redact(value: Any, secrets: tuple[str, ...] | list[str] = (), headers: bool = True) -> Any:
    """``value`` with every secret in ``secrets`` and (with ``headers``) every Authorization/Bearer header value
    replaced by :data:`REDACTED`; strings, and the strings inside lists and dicts (keys included), are redacted."""
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            if secret:
                value = value.replace(secret, REDACTED)
        if headers:
            value = _AUTH_VALUE.sub(lambda m: m.group(1) + REDACTED, value)
            value = _BEARER.sub(lambda m: m.group(1) + REDACTED, value)
        return value
    if isinstance(value, dict):
        return {redact(k, secrets, headers): redact(v, secrets, headers) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, secrets, headers) for v in value)
    return value
