"""The metrics of generated video sets, one class each, and the registry that finds them by name.

Each metric (:class:`benchmarks.metrics.base.Metric`) holds its protocols, its state of one video set
(mergeable float64 sufficient statistics or per-video scores), compute (value and bootstrap interval over
videos), direction, display name and result fields. ``python -m benchmarks.evaluate`` and the tables ask the
registry: adding a metric is one module and one :func:`register` line below.

Shared maths: :mod:`stats` (:class:`FeatureStats`), :mod:`frechet` (the Fréchet formula, matrix roots),
:mod:`fd` (the Fréchet metrics' state, point and interval), :mod:`mmd` (KID's estimator), :mod:`bootstrap`
(interval rules, video-grouped resampling). Everything there computes in float64 on numpy arrays or torch
tensors.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from benchmarks.metrics.base import Metric
from benchmarks.metrics.clipscore import CLIPScore
from benchmarks.metrics.fid import FID
from benchmarks.metrics.fvd import FVD
from benchmarks.metrics.fvmd import FVMD
from benchmarks.metrics.jedi import JEDi
from benchmarks.metrics.kid import KID
from benchmarks.metrics.kvd import KVD, KVMD
from benchmarks.metrics.recall import Recall
from ophora.registry import lookup

__all__ = ["Metric", "FID", "FVD", "CLIPScore", "KID", "Recall", "FVMD", "KVD", "KVMD", "JEDi",
           "register", "get", "names", "get_protocol",
           "protocol_names", "protocol_for", "build"]

_REGISTRY: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    """Make ``cls`` available under ``cls.name`` (usable as a class decorator); a taken name raises."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"metric {cls.name!r} is already registered ({_REGISTRY[cls.name].__qualname__})")
    taken = {p.name for other in _REGISTRY.values() if other is not cls for p in other.protocols}
    clash = sorted(taken & {p.name for p in cls.protocols})
    if clash:
        raise ValueError(f"metric {cls.name!r}: protocol name(s) {clash} belong to another metric")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Metric]:
    """The metric class registered as ``name``; unknown names raise KeyError with close matches."""
    return lookup(_REGISTRY, name, "metric")


def names() -> tuple[str, ...]:
    """Registered metric names, in registration order (the order of result files and table columns)."""
    return tuple(_REGISTRY)


def _protocols() -> dict[str, Any]:
    return {p.name: p for cls in _REGISTRY.values() for p in cls.protocols}


def get_protocol(name: str) -> Any:
    """The registered protocol ``name`` (of any metric); unknown names raise KeyError with close matches."""
    return lookup(_protocols(), name, "protocol")


def protocol_names() -> tuple[str, ...]:
    return tuple(_protocols())


def protocol_for(metric: str, name: str | None = None, **changes: Any) -> Any:
    """The protocol of ``metric`` (its default, or ``name``), with fields replaced by ``changes``.

    e.g. ``frames_per_video=4`` for FID, or ``frames="all", frames_per_video=None``. Unknown fields raise.
    """
    cls = get(metric)
    return cls.with_changes(cls.protocols[0] if name is None else get_protocol(name), **changes)


def build(metric: str, cfg: Any, protocol: str | None = None) -> Metric:
    """The metric ``metric`` under protocol ``protocol`` (default: its first) with the fields that the
    evaluation options ``cfg`` set (``Metric.options``); an option for a field the protocol does not have (the
    open_clip model under clipscore/ophsim-surgical) does not apply to it."""
    cls = get(metric)
    chosen = protocol_for(metric, protocol)
    fields = {f.name for f in dataclasses.fields(chosen)}
    return cls(cls.with_changes(chosen, **{k: v for k, v in cls.options(cfg).items() if k in fields}))


register(FID)
register(FVD)
register(CLIPScore)
register(KID)
register(Recall)
register(FVMD)
register(KVD)
register(JEDi)
register(KVMD)
