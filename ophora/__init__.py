"""Ophora: text-guided ophthalmic surgical video generation (MICCAI 2025) and its evaluation suite.

``ophora.evaluate_videos``, ``ophora.VideoMetrics`` and ``ophora.EvaluationResult`` (the one-call API,
:mod:`ophora.api`) load on first use, so ``import ophora`` stays light. The command line is ``ophora <command>``
(:mod:`ophora.__main__`).
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"  # the same as pyproject.toml's [project] version (tests/test_packaging.py checks it)

_API = ("evaluate_videos", "VideoMetrics", "EvaluationResult")

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from ophora import api  # a facade (tests/test_architecture.py): it wraps benchmarks.evaluate

        return getattr(api, name)
    raise AttributeError(f"module 'ophora' has no attribute {name!r}")
