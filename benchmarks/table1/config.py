"""Table 1 as data: ``benchmarks/configs/table1/<name>.yaml`` validated into :class:`Table1Config`.

A config names the data sets (an OphSim world built on the fly, or files), the prompt set, the metrics with
their protocols, and the rows. A row is a generator from the registry (``baselines.get(name)``) trained by a
list of steps on named data sets, or given a finished ``checkpoint``, or an ``external`` folder of videos made
by official code. The suite's loader (:mod:`ophora.configs.loader`) reads it: unknown keys, wrong types and unknown
data-set or generator names are refused with the dotted key and the file (:class:`~ophora.configs.ConfigError`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from baselines import names
from ophora.configs import ConfigError, apply_overrides, build_config, read_config, shipped_names
from ophora.data.geometry import parse_geometry
from ophora.data.leakage import LeakageConfig
from ophora.registry import did_you_mean

__all__ = ["Table1Config", "Row", "TrainStep", "DataConfig", "WorldSpec", "PromptConfig", "MetricConfig",
           "BeyondMetric", "load_table1_config", "config_names", "DATA_SETS"]

DATA_SETS = ("original", "ophora_160k", "ophora_28k")


@dataclass(frozen=True)
class WorldSpec:
    """An OphSim world (see :class:`ophora.sim.world.WorldConfig`): ``size`` is [height, width] in pixels."""

    videos: int = 2
    seed: int = 0
    frames: int = 24
    size: tuple[int, int] = (64, 64)
    fps: float = 8.0
    defects: float = 0.0


@dataclass(frozen=True)
class DataConfig:
    """Where the data sets come from.

    ``source: ophsim``: ``world`` (training world, narrated raw clips with planted defects) is curated with the
    embedded backends (``curation``: overrides of the curation config) into ``ophora_160k`` and ``ophora_28k``;
    ``original`` is its uncurated raw set with the narration as text; the real reference set is the instruction
    clips of the separate ``heldout`` world (other patients). ``source: files``: every set is a path to an
    Ophora-160K-layout CSV (``clip id,instruction`` beside ``clips/``), ``real`` included.
    """

    source: Literal["ophsim", "files"] = "ophsim"
    world: WorldSpec = field(default_factory=WorldSpec)
    heldout: WorldSpec = field(default_factory=lambda: WorldSpec(videos=1, seed=1000))
    curation: dict = field(default_factory=dict)
    original: str | None = None
    ophora_160k: str | None = None
    ophora_28k: str | None = None
    real: str | None = None


@dataclass(frozen=True)
class PromptConfig:
    """The prompts every conditional row generates from: ``heldout`` (the real set's instructions) or a prompt
    file (``file``; text or CSV, see :func:`ophora.generation.read_prompts`). ``limit``: the first N prompts."""

    source: Literal["heldout", "file"] = "heldout"
    file: str | None = None
    column: str | None = None
    limit: int | None = None
    videos_per_prompt: int = 1
    seed: int = 0


@dataclass(frozen=True)
class BeyondMetric:
    """One column of the optional "Beyond the paper" table (:mod:`benchmarks.table1.beyond`): ``protocol`` (a
    protocol name, or a metric name for its default protocol), ``features`` (kvd only: ``published`` or an FVD
    protocol), ``weights`` (learned detectors only: random-init, tiny or a checkpoint file) and a ``label``. In
    YAML an entry may be the protocol name alone."""

    protocol: str
    features: str | None = None
    weights: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class MetricConfig:
    """Metrics and detectors, as :class:`benchmarks.evaluate.EvalConfig` takes them."""

    metrics: tuple[str, ...] = ("fid", "fvd", "clipscore")
    protocols: dict = field(default_factory=dict)  # metric -> protocol name
    weights: str = "random-init"
    tiny_i3d: bool = False
    clip_model: str = "ViT-L-14"
    fid_frames: int | None = None
    clip_frames: int | None = None
    bootstrap: int = 200
    batch_size: int = 8
    detector_seed: int = 0
    # Metrics also scored with the surgical detectors shipped with the suite (protocol "<metric>/ophsim-surgical"),
    # as columns "surgical_<metric>" beside the published-protocol ones: fid, fvd, clipscore, recall.
    surgical: tuple[str, ...] = ()
    # The evaluation geometry every row and the real set are brought to (ophora.data.geometry: a name such as
    # endora-128, or fps=F,frames=T,size=HxW,mode=M,filter=F); None: each set as it is, refused where the real
    # set and a row differ in frame rate or aspect ratio.
    geometry: str | None = None
    # Equal N: every row and the real set scored on N videos drawn with the config's seed. ``n`` an int: that N,
    # a row with fewer refused (naming it, its N and the N required), unless ``n_fallback``: then the largest N
    # every row and the real set have, at most ``n`` (the paper config: 2048 where the sets allow). None: each
    # row on all its videos.
    n: int | None = None
    n_fallback: bool = False
    # FID and FVD also extrapolated to N = infinity from this many subset sizes of each row's videos (Chong and
    # Forsyth 2020; recorded under metrics.<m>.fd_infinity of each row); 0: not computed.
    fd_infinity: int = 0
    # The optional second table, "Beyond the paper" (benchmarks.table1.beyond): FVMD, KVMD, kernel distances on
    # FVD features, content-debiased FVD, JEDi; empty: no second table, Table 1's files as without it.
    beyond: tuple[BeyondMetric, ...] = ()


SURGICAL_METRICS = ("fid", "fvd", "clipscore", "recall")
SURGICAL_PREFIX = "surgical_"


@dataclass(frozen=True)
class TrainStep:
    """One training stage of a row on a named data set (one of :data:`DATA_SETS`)."""

    data: str
    stage: str | None = None


@dataclass(frozen=True)
class Row:
    """One line of Table 1. Exactly one of ``train`` (with ``generator``), ``checkpoint`` (with ``generator``)
    or ``external`` says where its videos come from. ``prompts``: this row's prompt set, number of videos per
    prompt and seed (default: the config's). ``published``: the paper's numbers for this row."""

    name: str
    generator: str | None = None
    train: tuple[TrainStep, ...] = ()
    checkpoint: str | None = None
    external: str | None = None
    external_prompts: str | None = None
    prompts: PromptConfig | None = None
    conditional: bool | None = None  # external rows: whether the videos follow their prompts
    preset: str = "tiny"
    options: dict = field(default_factory=dict)  # keyword arguments of the generator (baselines.get)
    overrides: dict = field(default_factory=dict)
    generate_overrides: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)

    @property
    def origin(self) -> str:
        """Where the row's videos come from, in words the table prints (the same definition in every config):
        ``trained here: ...`` (the suite trained the generator, on which data, in which stages, at which preset),
        ``checkpoint ...`` (a model folder the suite samples), or ``released videos ...`` (videos written by the
        official code from its released checkpoint)."""
        if self.external:
            return f"released videos (official code and checkpoint): {Path(self.external).name}/"
        if self.checkpoint:
            return f"checkpoint {self.checkpoint} ({self.generator}, {self.preset} preset), sampled here"
        stages = ", then ".join(
            f"{step.stage.upper() + ' on ' if step.stage else ''}{_DATA_WORDS.get(step.data, step.data)}"
            for step in self.train)
        return f"trained here ({self.preset} preset): {stages}"


_DATA_WORDS = {"original": "the raw narrated set", "ophora_160k": "Ophora-160K", "ophora_28k": "Ophora-28K"}


@dataclass(frozen=True)
class Table1Config:
    name: str
    description: str = ""
    seed: int = 0
    cache: str = "runs/table1"
    output: str = "results/table1"
    data: DataConfig = field(default_factory=DataConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    metrics: MetricConfig = field(default_factory=MetricConfig)
    rows: tuple[Row, ...] = ()
    grid_frames: int = 6
    leakage: LeakageConfig = field(default_factory=LeakageConfig)  # checked once the data sets exist
    source: str = ""


SHIPPED = resources.files("benchmarks") / "configs" / "table1"


def config_names() -> list[str]:
    return shipped_names(SHIPPED)


def load_table1_config(name_or_path: str | os.PathLike = "demo", overrides: dict[str, Any] | None = None
                       ) -> Table1Config:
    """Read and validate a Table 1 config (shipped name or YAML path) with dotted ``overrides``."""
    raw, source = read_config(name_or_path, SHIPPED, "Table 1 config")
    shipped = Path(source).resolve().parent == Path(str(SHIPPED)).resolve()  # recorded the same on every machine
    recorded = f"package:benchmarks/configs/table1/{Path(source).name}" if shipped else source
    raw = _beyond_entries({**apply_overrides(raw, overrides, source), "source": recorded}, source)
    config = build_config(Table1Config, raw, source)
    _check_rows(config, source)
    if config.metrics.geometry is not None:
        try:
            parse_geometry(config.metrics.geometry)
        except ValueError as err:
            raise ConfigError("metrics.geometry", str(err), source) from None
    if config.metrics.n is not None and config.metrics.n < 1:
        raise ConfigError("metrics.n", f"N must be at least 1, got {config.metrics.n}", source)
    unknown = sorted(set(config.metrics.surgical) - set(SURGICAL_METRICS))
    if unknown:
        raise ConfigError("metrics.surgical", f"no surgical protocol for {unknown}; choose from "
                                              f"{list(SURGICAL_METRICS)}", source)
    from benchmarks.table1.beyond import resolve_columns

    resolve_columns(config.metrics, source)  # raises naming metrics.beyond[i].<field>
    return config


def _beyond_entries(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """``metrics.beyond`` with each entry given as a bare protocol name written as ``{protocol: NAME}``."""
    metrics = raw.get("metrics")
    if not isinstance(metrics, dict) or metrics.get("beyond") is None:
        return raw
    entries = metrics["beyond"]
    if not isinstance(entries, (list, tuple)):
        raise ConfigError("metrics.beyond", f"expected a list of protocols, got {entries!r}", source)
    entries = [{"protocol": e} if isinstance(e, str) else e for e in entries]
    return {**raw, "metrics": {**metrics, "beyond": entries}}


def _check_rows(config: Table1Config, source: str) -> None:
    if not config.rows:
        raise ConfigError("rows", "a Table 1 config needs at least one row", source)
    seen = set()
    for i, row in enumerate(config.rows):
        key = f"rows[{i}]"
        if row.name in seen:
            raise ConfigError(f"{key}.name", f"duplicate row name {row.name!r}", source)
        seen.add(row.name)
        kinds = [k for k, v in (("train", row.train), ("checkpoint", row.checkpoint), ("external", row.external))
                 if v]
        if len(kinds) != 1:
            raise ConfigError(key, f"row {row.name!r} needs exactly one of train, checkpoint or external; "
                                   f"found {kinds or 'none'}", source)
        if row.external is None:
            if row.generator not in names():
                hint = did_you_mean(str(row.generator), names())
                raise ConfigError(f"{key}.generator", f"unknown generator {row.generator!r}; registered: "
                                                      f"{names()}{'; ' + hint if hint else ''}", source)
        for j, step in enumerate(row.train):
            if step.data not in DATA_SETS:
                hint = did_you_mean(step.data, DATA_SETS)
                raise ConfigError(f"{key}.train[{j}].data", f"unknown data set {step.data!r}; expected one of "
                                                            f"{list(DATA_SETS)}{'; ' + hint if hint else ''}",
                                  source)
