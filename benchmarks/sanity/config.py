"""The sanity suite as data: ``benchmarks/configs/sanity/<name>.yaml`` validated into :class:`SanityConfig`.

A config names the real set (a folder given with ``--real``, or an OphSim evaluation world built from
``world``), how it is split into two halves, the degradations with their strengths, and the scorers: each a
metric under a protocol with its detector weights, as :class:`benchmarks.evaluate.EvalConfig` takes them. The
suite's one loader (:mod:`ophora.configs.loader`) reads it; unknown keys, degradations and option names are
refused with the dotted key and the file (:class:`~ophora.configs.ConfigError`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from benchmarks.sanity.degrade import DEGRADATIONS
from ophora.configs import ConfigError, apply_overrides, build_config, read_config, shipped_names
from ophora.registry import did_you_mean

__all__ = ["SanityError", "SanityConfig", "WorldSpec", "DegradationSpec", "ScorerSpec", "load_sanity_config",
           "config_names", "RESERVED_SEEDS", "SCORER_OPTIONS"]

class SanityError(ValueError):
    """A run that cannot go ahead as configured (no scorer can run here, two scorers share a label, ...)."""


RESERVED_SEEDS = range(7001, 7005)  # OphSim worlds the surgical detectors train on: never an evaluation world
SCORER_OPTIONS = ("fid_frames", "clip_frames", "clip_model", "tiny_i3d", "detector_seed")  # EvalConfig fields


@dataclass(frozen=True)
class WorldSpec:
    """The OphSim evaluation world built when no ``--real`` folder is given (see
    :class:`ophora.sim.world.WorldConfig`): ``videos`` surgeries of 12 phase clips each, ``size`` [H, W] px."""

    videos: int = 4
    seed: int = 9001
    frames: int = 16
    size: tuple[int, int] = (64, 64)
    fps: float = 8.0

    def __post_init__(self):
        if self.seed in RESERVED_SEEDS:
            raise ConfigError("seed", f"seed {self.seed} is reserved for the surgical detectors' training worlds "
                                      f"({RESERVED_SEEDS.start}-{RESERVED_SEEDS.stop - 1}); an evaluation world must "
                                      "be one they never saw")


@dataclass(frozen=True)
class DegradationSpec:
    """One degradation (a name of :data:`benchmarks.sanity.degrade.DEGRADATIONS`) at increasing non-zero
    ``strengths`` in its own unit; strength 0 (its identity) is the real half itself and is always added."""

    name: str
    strengths: tuple[float, ...]

    def __post_init__(self):
        if self.name not in DEGRADATIONS:
            hint = did_you_mean(self.name, DEGRADATIONS)
            raise ConfigError("name", f"unknown degradation {self.name!r}; known: {sorted(DEGRADATIONS)}"
                                      f"{'; ' + hint if hint else ''}")
        identity = DEGRADATIONS[self.name].identity
        if not self.strengths or list(self.strengths) != sorted(set(self.strengths)) \
                or self.strengths[0] <= identity:
            raise ConfigError("strengths", f"expected increasing strengths above {identity} (the identity, which is "
                                           f"added as the real set itself), got {list(self.strengths)}")


@dataclass(frozen=True)
class ScorerSpec:
    """One metric under one protocol. ``protocol``: a registered protocol name (its metric follows), or
    ``metric`` alone for that metric's default protocol. ``weights``: random-init, pretrained (skipped with a
    note when the published file is absent) or a file; None: what ``benchmarks.evaluate`` uses by default.
    ``options``: :data:`SCORER_OPTIONS` overriding the config's ``options``. ``label``: the name in tables
    and plots (default: the protocol, and the weights when given). ``features``: for a metric computed on
    another metric's features (KVD on FVD's, KVMD on FVMD's: ``features_from``), the protocol of that metric
    whose features it reads, e.g. ``fvd/ophsim-surgical`` (None: that metric's default protocol); ``weights``
    then applies to that protocol's detector. A protocol or metric that is not registered is skipped with a
    note."""

    protocol: str | None = None
    metric: str | None = None
    weights: str | None = None
    options: dict = field(default_factory=dict)
    label: str | None = None
    features: str | None = None

    def __post_init__(self):
        if self.protocol is None and self.metric is None:
            raise ConfigError("protocol", "a scorer names a protocol or a metric")
        _check_options(self.options, "options")

    @property
    def name(self) -> str:
        base = self.protocol or self.metric or ""
        if self.features is not None:
            base = f"{base} on {self.features}"
        return self.label or (base if self.weights is None else f"{base} [{self.weights}]")


def _check_options(options: dict, key: str) -> None:
    for name in options:
        if name not in SCORER_OPTIONS:
            hint = did_you_mean(str(name), SCORER_OPTIONS)
            raise ConfigError(f"{key}.{name}", f"unknown option; known: {list(SCORER_OPTIONS)}"
                                               f"{'; ' + hint if hint else ''}")


@dataclass(frozen=True)
class SanityConfig:
    """The suite. ``real``: the real set (a folder of videos, a generated-video folder, an Ophora-160K CSV or an
    OphSim world folder); None builds ``world``. ``scorers``: empty means every registered protocol of every
    metric with the evaluation's default weights. ``options``: scorer options shared by all (``SCORER_OPTIONS``).
    ``bootstrap``: replicates of the floor's 95% interval (what verdicts compare against); ``set_bootstrap``:
    replicates of the degraded sets' intervals (shown, not judged; None: ``bootstrap``). ``collapse_phases``:
    how many phases the mode-collapse sets collapse onto. ``crf``: x264 rate factor of the degraded videos (0:
    lossless, so only the degradation changes the pixels). ``workers``: DataLoader workers."""

    name: str
    description: str = ""
    seed: int = 0
    real: str | None = None
    world: WorldSpec = field(default_factory=WorldSpec)
    work: str = "runs/sanity"
    output: str = "results/sanity"
    degradations: tuple[DegradationSpec, ...] = ()
    scorers: tuple[ScorerSpec, ...] = ()
    options: dict = field(default_factory=dict)
    collapse_phases: int = 2
    bootstrap: int = 200
    set_bootstrap: int | None = None
    batch_size: int = 8
    workers: int = 0
    crf: int = 0
    # the sample-efficiency study (value against N over random subsets): validated and run by
    # benchmarks.sanity.efficiency; empty: its defaults
    efficiency: dict = field(default_factory=dict)
    source: str = ""

    def __post_init__(self):
        _check_options(self.options, "options")
        if not self.degradations:
            raise ConfigError("degradations", "a sanity config needs at least one degradation")
        names = [d.name for d in self.degradations]
        if len(set(names)) != len(names):
            raise ConfigError("degradations", f"a degradation is listed twice: {names}")
        if self.collapse_phases not in (1, 2):
            raise ConfigError("collapse_phases", f"expected 1 or 2, got {self.collapse_phases}")


SHIPPED = resources.files("benchmarks") / "configs" / "sanity"


def config_names() -> list[str]:
    return shipped_names(SHIPPED)


def load_sanity_config(name_or_path: str | os.PathLike = "demo", overrides: dict[str, Any] | None = None
                       ) -> SanityConfig:
    """Read and validate a sanity config (shipped name or YAML path) with dotted ``overrides``."""
    raw, source = read_config(name_or_path, SHIPPED, "sanity config")
    shipped = Path(source).resolve().parent == Path(str(SHIPPED)).resolve()
    recorded = f"package:benchmarks/configs/sanity/{Path(source).name}" if shipped else source
    raw.setdefault("name", Path(source).stem)
    return build_config(SanityConfig, {**apply_overrides(raw, overrides, source), "source": recorded}, source)
