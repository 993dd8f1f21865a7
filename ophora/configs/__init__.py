"""Presets: YAML files validated into :class:`~ophora.configs.schema.Preset` dataclasses.

``load_preset("tiny")`` reads ``ophora/configs/tiny.yaml`` (shipped with the package); ``load_preset(path)``
reads any YAML file of the same shape. ``overrides`` ({"train.tpt.max_steps": 6}) change single keys after
reading, so scripts and tests never edit YAML by hand. Unknown keys, wrong types and bad values raise
:class:`ConfigError` naming the dotted key and the file. The loader itself (:mod:`ophora.configs.loader`) reads
every other config of the suite too.
"""
from __future__ import annotations

import dataclasses
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from ophora.configs.loader import (
    ConfigError,
    apply_overrides,
    build_config,
    load_config,
    parse_overrides,
    read_config,
    shipped_names,
)
from ophora.configs.schema import (
    DataConfig,
    ModelConfig,
    PrepareConfig,
    Preset,
    SamplingConfig,
    StageConfig,
    TrainConfig,
    check_frames,
    check_size,
)
from ophora.hashing import cache_key

__all__ = ["ConfigError", "build_config", "load_config", "read_config", "shipped_names",
           "load_preset", "preset_from_dict", "preset_names", "preset_fingerprint", "Preset", "ModelConfig",
           "DataConfig", "PrepareConfig", "StageConfig", "TrainConfig", "SamplingConfig", "check_frames",
           "check_size", "accelerate_config", "parse_overrides", "apply_overrides"]


def preset_names() -> list[str]:
    """Names of the presets shipped with the package (``tiny``, ``paper``)."""
    return shipped_names(resources.files(__name__))


def accelerate_config(name: str) -> Path:
    """Path of a shipped ``accelerate launch --config_file`` YAML (``ddp``, ``deepspeed_zero3``, ``fsdp``)."""
    path = Path(str(resources.files(__name__) / "accelerate" / f"{name}.yaml"))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped accelerate config {name!r}; expected {path}")
    return path


def load_preset(name_or_path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> Preset:
    """Read a shipped preset by name or a YAML file by path, apply ``overrides`` and validate."""
    return load_config(Preset, name_or_path, overrides, shipped=resources.files(__name__), what="preset")


def preset_from_dict(raw: Mapping[str, Any], source: str | None = None) -> Preset:
    """Validate a plain mapping (as read from YAML or from a run folder) into a :class:`Preset`."""
    return build_config(Preset, raw, source)


def preset_fingerprint(preset: Preset) -> str:
    """Short hash of what makes checkpoints and latents compatible: name, model and data sections."""
    return cache_key({"name": preset.name, "model": dataclasses.asdict(preset.model),
                      "data": dataclasses.asdict(preset.data)})
