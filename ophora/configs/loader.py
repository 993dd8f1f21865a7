"""The one YAML -> dataclass loader of the suite: Ophora presets, curation settings, Table 1, Table 2 and the
downstream recipes are all read, overridden and validated here.

``load_config(cls, name_or_path, overrides, shipped)`` reads a shipped config by name (``<shipped>/<name>.yaml``)
or any YAML file by path, drops top-level keys that start with "." (YAML anchors only), names the config after
its file when ``cls`` has a ``name`` field the file leaves out, applies dotted ``overrides``
(``{"train.tpt.max_steps": 6, "rows.1.model": "runs/x"}``) and validates the mapping into ``cls``
(:func:`build_config`). Every problem is a :class:`ConfigError` naming the file and the dotted key
(``rows[0].ratio``), with the closest known key or name.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, TypeVar

import yaml

from ophora.registry import did_you_mean

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["ConfigError", "load_config", "read_config", "build_config", "apply_overrides", "parse_overrides",
           "shipped_names"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that does not validate: ``key`` is the dotted key (``data.frames``, ``rows[0].ratio``),
    ``source`` the file (None when the mapping came from code), ``reason`` what is wrong."""

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key, self.source, self.reason = key, source, message
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}")


def shipped_names(shipped: Traversable | Path) -> list[str]:
    """Names of the ``*.yaml`` configs in the folder ``shipped``."""
    return sorted(p.name[:-5] for p in shipped.iterdir() if p.name.endswith(".yaml"))


def load_config(cls: type[T], name_or_path: str | os.PathLike | None, overrides: Mapping[str, Any] | None = None,
                shipped: Traversable | Path | None = None, what: str = "config") -> T:
    """Read, override and validate a config into dataclass ``cls`` (None: the defaults of ``cls``).

    ``shipped``: the folder of named configs (a package resource or a path); ``what`` names the kind of
    config in errors ("preset", "Table 2 config", "recipe")."""
    if name_or_path is None:
        return build_config(cls, apply_overrides({}, overrides), None)
    raw, source = read_config(name_or_path, shipped, what)
    if "name" in {f.name for f in dataclasses.fields(cls)}:
        raw.setdefault("name", Path(source).stem)
    return build_config(cls, apply_overrides(raw, overrides, source), source)


def read_config(name_or_path: str | os.PathLike, shipped: Traversable | Path | None = None,
                what: str = "config") -> tuple[dict[str, Any], str]:
    """The raw mapping of a shipped config or YAML file (keys starting with "." dropped) and its source path."""
    resource = _locate(name_or_path, shipped, what)
    source = str(resource)
    try:
        raw = yaml.safe_load(resource.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError("(file)", f"not valid YAML ({err})", source) from err
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("(file)", f"expected a mapping at the top level, found {type(raw).__name__}", source)
    return {k: v for k, v in raw.items() if not str(k).startswith(".")}, source


def _locate(name_or_path: str | os.PathLike, shipped: Traversable | Path | None, what: str) -> Traversable | Path:
    text = os.fspath(name_or_path)
    names = shipped_names(shipped) if shipped is not None else []
    if text in names:
        return shipped / f"{text}.yaml"
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if shipped is None or path.suffix in (".yaml", ".yml", ".json") or path.exists():
        raise FileNotFoundError(f"{what} file not found: expected {path.resolve()}")
    raise ConfigError("(name)", f"unknown {what} {text!r}; expected one of {names} or a path to a YAML file"
                                f"{_did_you_mean(text, names)}")


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None,
                    source: str | None = None) -> dict[str, Any]:
    """A deep copy of ``raw`` with dotted ``overrides`` set (``a.b.c``; a number indexes a list: ``rows.1.x``);
    not yet validated."""
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
            raise ConfigError("--set", f"expected KEY=VALUE (e.g. train.tpt.max_steps=6), got {pair!r}")
        overrides[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return overrides


def _set_dotted(raw: dict, key: str, value: Any, source: str | None) -> None:
    *parents, last = key.split(".")
    node: Any = raw
    for part in parents:
        node = _child(node, part, key, source)
    if isinstance(node, list):
        node[_index(node, last, key, source)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(key, "cannot override inside a value that is not a mapping or a list", source)


def _child(node: Any, part: str, key: str, source: str | None) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, key, source)]
    if isinstance(node, dict):
        return node.setdefault(part, {})
    raise ConfigError(key, "cannot override inside a value that is not a mapping or a list", source)


def _index(node: list, part: str, key: str, source: str | None) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(key, f"{part!r} is not an index of a list of {len(node)}", source)
    return int(part)


def build_config(cls: type[T], raw: Mapping[str, Any], source: str | None = None) -> T:
    """Validate a mapping into dataclass ``cls``: unknown keys (with a did-you-mean), missing keys, types
    (numbers, bools, strings, Literal, Optional, dicts, tuples, nested dataclasses and tuples of them), and
    the checks in each dataclass's ``__post_init__``. Errors are :class:`ConfigError` naming the dotted key
    and ``source``."""
    try:
        return _build(cls, raw, "")
    except ConfigError as err:
        raise ConfigError(err.key, err.reason, source) from None


def _did_you_mean(name: str, known) -> str:
    hint = did_you_mean(name, known)
    return f"; {hint}" if hint else ""


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _build(cls, raw: Any, prefix: str):
    """Instantiate dataclass ``cls`` from mapping ``raw``, checking keys and types; errors name dotted keys."""
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix or "(top level)", f"expected a mapping, found {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(_join(prefix, str(key)), f"unknown key; known keys: {sorted(fields)}"
                                                       f"{_did_you_mean(str(key), fields)}")
    missing = [n for n, f in fields.items() if n not in raw and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(_join(prefix, missing[0]), "required key is missing")
    values = {key: _coerce(hints[key], value, _join(prefix, key)) for key, value in raw.items()}
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(_join(prefix, err.key), err.reason) from None


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
            raise ConfigError(key, f"expected one of {list(args)}, got {value!r}"
                                   f"{_did_you_mean(str(value), map(str, args))}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if hint in (int, float):
        return _number(hint, value, key)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    if origin is tuple and args:
        return _tuple(args, value, key)
    if hint is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {value!r}")
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def _tuple(args: tuple, value: Any, key: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, f"expected a list, got {value!r}")
    inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
    if inner is None and len(args) != len(value):
        raise ConfigError(key, f"expected a list of {len(args)} values, got {value!r}")
    return tuple(_coerce(inner or args[i], v, f"{key}[{i}]") for i, v in enumerate(value))


def _number(hint, value: Any, key: str):
    if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(key, f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"expected a number, got {value!r}")
    if hint is int:
        if float(value) != int(value):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return int(value)
    return float(value)
