"""Video generators by name: Ophora and the baselines behind one interface (``baselines.get(name)``).

Table 1 rows and Table 2's synthetic data name their generator by string. Every generator trains on a
video/caption manifest in the Ophora-160K layout (``clip id,instruction`` CSV beside ``clips/``: an OphSim world's
``ophora_instructions/instructions.csv``, a curated set, or the raw ``ophvl_raw/raw.csv``) and generates into the
suite's self-describing folder (``NNNNN_KK.mp4`` + ``manifest.jsonl``, see
:mod:`ophora.data.manifests.generated`), which :mod:`benchmarks.evaluate` scores as is.

Both calls are idempotent and resumable: ``train`` returns the finished model folder at once when ``out`` already
holds one and otherwise continues from the latest checkpoint; ``generate`` skips videos its manifest lists.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from ophora.generation.prompts import Prompt
from ophora.registry import lookup

__all__ = ["VideoGenerator", "register", "get", "names"]


@runtime_checkable
class VideoGenerator(Protocol):
    """What every registered generator offers.

    ``conditional``: whether videos depend on the prompt (an unconditional model ignores prompts and gets no
    CLIPScore). ``stages``: its training stages in order; a later stage starts from ``init``, the model folder
    an earlier stage returned (Ophora: ``("tpt", "p2ft")``; the baselines: ``("train",)``).
    """

    name: str
    conditional: bool
    stages: tuple[str, ...]

    def train(self, manifest: str | os.PathLike, out: str | os.PathLike, *, stage: str | None = None,
              preset: str = "tiny", init: str | os.PathLike | None = None,
              overrides: Mapping[str, Any] | None = None, progress: bool = False) -> Path:
        """Train (or finish training) on ``manifest`` into ``out``; return the model folder ``generate`` takes.
        ``stage`` defaults to the first stage; ``overrides`` are dotted preset keys (``{"train.max_steps": 50}``)."""

    def generate(self, model: str | os.PathLike, prompts: Sequence[Prompt], out: str | os.PathLike, *,
                 videos_per_prompt: int = 1, seed: int = 0, overrides: Mapping[str, Any] | None = None,
                 progress: bool = False) -> list[Path]:
        """Write the missing videos of ``prompts`` x ``videos_per_prompt`` into ``out``; video ``k`` of prompt
        ``i`` is ``out/iiiii_kk.mp4`` with seed ``derive_seed(seed, i, k)``. Returns the paths written now."""


_FACTORIES: dict[str, Callable[..., VideoGenerator]] = {}


def register(name: str, factory: Callable[..., VideoGenerator]) -> None:
    """Make ``get(name, **options)`` return ``factory(**options)`` (imports stay lazy until asked for)."""
    _FACTORIES[name] = factory


def get(name: str, **options: Any) -> VideoGenerator:
    """The generator registered as ``name``, built with its ``options`` (e.g. Ophora's ``fit_vae_steps``);
    an unknown name raises KeyError with close matches."""
    return lookup(_FACTORIES, name, "generator")(**options)


def names() -> list[str]:
    return sorted(_FACTORIES)


def _ophora(**options: Any) -> VideoGenerator:
    from baselines.ophora import OphoraGenerator

    return OphoraGenerator(**options)


register("ophora", _ophora)


def _endora(**options: Any) -> VideoGenerator:
    from baselines.endora import EndoraGenerator

    return EndoraGenerator(**options)


def _bora(**options: Any) -> VideoGenerator:
    from baselines.bora import BoraGenerator

    return BoraGenerator(**options)


register("endora", _endora)
register("bora", _bora)
