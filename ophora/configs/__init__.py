"""Presets: YAML files validated into :class:`~ophora.configs.schema.Preset` dataclasses.

``load_preset("tiny")`` reads ``ophora/configs/tiny.yaml`` (shipped with the package); ``load_preset(path)``
reads any YAML file of the same shape. ``overrides`` ({"train.tpt.max_steps": 6}) change single keys after
reading, so scripts and tests never edit YAML by hand. Unknown keys, wrong types and bad values raise
:class:`PresetError` naming the dotted key and the file.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from ophora.configs.schema import (
    DataConfig,
    ModelConfig,
    PrepareConfig,
    Preset,
    PresetError,
    SamplingConfig,
    StageConfig,
    TrainConfig,
    check_frames,
    check_size,
)
from ophora.registry import did_you_mean

__all__ = ["build_config", "load_preset", "preset_from_dict", "preset_names", "preset_fingerprint", "Preset", "PresetError",
           "ModelConfig", "DataConfig", "PrepareConfig", "StageConfig", "TrainConfig", "SamplingConfig",
           "check_frames", "check_size", "accelerate_config", "parse_overrides", "apply_overrides"]


def preset_names() -> list[str]:
    """Names of the presets shipped with the package (``tiny``, ``paper``)."""
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def accelerate_config(name: str) -> Path:
    """Path of a shipped ``accelerate launch --config_file`` YAML (``ddp``, ``deepspeed_zero3``, ``fsdp``)."""
    path = Path(str(resources.files(__name__) / "accelerate" / f"{name}.yaml"))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped accelerate config {name!r}; expected {path}")
    return path


def load_preset(name_or_path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> Preset:
    """Read a shipped preset by name or a YAML file by path, apply ``overrides`` and validate."""
    text, source = _read_source(name_or_path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PresetError("(file)", f"not valid YAML ({err})", source) from err
    if not isinstance(raw, dict):
        raise PresetError("(file)", f"expected a mapping at the top level, found {type(raw).__name__}", source)
    raw = {k: v for k, v in raw.items() if not str(k).startswith(".")}  # ".common": YAML anchors only
    return preset_from_dict(apply_overrides(raw, overrides, source), source)


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None,
                    source: str | None = None) -> dict[str, Any]:
    """A deep copy of the preset mapping ``raw`` with dotted ``overrides`` applied (not yet validated)."""
    raw = copy.deepcopy(dict(raw))
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value, source)
    return raw


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["train.tpt.max_steps=6", "model.pretrained=/w/CogVideoX-2b"]`` -> a dict; values are read as YAML."""
    overrides = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PresetError("--set", f"expected KEY=VALUE (e.g. train.tpt.max_steps=6), got {pair!r}")
        overrides[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return overrides


def preset_from_dict(raw: Mapping[str, Any], source: str | None = None) -> Preset:
    """Validate a plain mapping (as read from YAML or from a run folder) into a :class:`Preset`."""
    try:
        return _build(Preset, raw, "")
    except PresetError as err:
        raise PresetError(err.key, err.reason, source) from None


def build_config(cls, raw: Mapping[str, Any], source: str | None = None):
    """Validate a mapping into dataclass ``cls`` the way presets are validated (unknown keys with a did-you-mean,
    missing keys, types, nested dataclasses and tuples of them); errors are :class:`PresetError` naming the
    dotted key and ``source``. Any YAML -> dataclass config of the suite uses this."""
    try:
        return _build(cls, raw, "")
    except PresetError as err:
        raise PresetError(err.key, err.reason, source) from None


def preset_fingerprint(preset: Preset) -> str:
    """Short hash of what makes checkpoints and latents compatible: name, model and data sections."""
    payload = {"name": preset.name, "model": dataclasses.asdict(preset.model), "data": dataclasses.asdict(preset.data)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_source(name_or_path: str | os.PathLike) -> tuple[str, str]:
    text = os.fspath(name_or_path)
    if text in preset_names():
        resource = resources.files(__name__) / f"{text}.yaml"
        return resource.read_text(encoding="utf-8"), str(resource)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"preset file not found: expected {path.resolve()}")
        return path.read_text(encoding="utf-8"), str(path)
    raise PresetError("(preset)", f"unknown preset {text!r}; expected one of {preset_names()} or a path to a "
                                  f"YAML file{_did_you_mean(text, preset_names())}")


def _set_dotted(raw: dict, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise PresetError(key, "cannot override inside a non-mapping value", source)
    node[parts[-1]] = value


def _did_you_mean(name: str, known) -> str:
    hint = did_you_mean(name, known)
    return f"; {hint}" if hint else ""


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _build(cls, raw: Any, prefix: str):
    """Instantiate dataclass ``cls`` from mapping ``raw``, checking keys and types; errors name dotted keys."""
    if not isinstance(raw, Mapping):
        raise PresetError(prefix or "(top level)", f"expected a mapping, found {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise PresetError(_join(prefix, str(key)), f"unknown key; known keys: {sorted(fields)}"
                                                       f"{_did_you_mean(str(key), fields)}")
    missing = [n for n, f in fields.items() if n not in raw and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise PresetError(_join(prefix, missing[0]), "required key is missing")
    values = {key: _coerce(hints[key], value, _join(prefix, key)) for key, value in raw.items()}
    try:
        return cls(**values)
    except PresetError as err:
        raise PresetError(_join(prefix, err.key), err.reason) from None


def _coerce(hint, value: Any, key: str):
    """Check ``value`` against type ``hint`` (dataclass, Literal, Optional, int, float, bool, str, dict, tuple)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is typing.Literal:
        if value not in args:
            raise PresetError(key, f"expected one of {list(args)}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise PresetError(key, f"expected true or false, got {value!r}")
        return value
    if hint in (int, float):
        return _number(hint, value, key)
    if hint is str:
        if not isinstance(value, str):
            raise PresetError(key, f"expected a string, got {value!r}")
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise PresetError(key, f"expected a mapping, got {value!r}")
        return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    if origin is tuple and args:
        if not isinstance(value, (list, tuple)):
            raise PresetError(key, f"expected a list, got {value!r}")
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if inner is None and len(args) != len(value):
            raise PresetError(key, f"expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(inner or args[i], v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise PresetError(key, f"expected a list, got {value!r}")
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def _number(hint, value: Any, key: str):
    if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise PresetError(key, f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PresetError(key, f"expected a number, got {value!r}")
    if hint is int:
        if float(value) != int(value):
            raise PresetError(key, f"expected an integer, got {value!r}")
        return int(value)
    return float(value)
