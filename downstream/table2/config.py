"""Table 2 as data: ``downstream/configs/table2/<name>.yaml`` validated into :class:`Table2Config`.

A config names the data set (an OphSim world made on the fly, or OphNet2024's CSVs and videos), the classifiers
(a recipe each, :mod:`downstream.train`) and the rows (the real training clips alone, or mixed with a
generator's synthetic clips). The suite's loader (:mod:`ophora.configs.loader`) reads it: unknown keys and bad
values raise :class:`~ophora.configs.ConfigError` naming the file and the dotted key (``rows[0].ratio``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ophora import configs
from ophora.data.leakage import LeakageConfig
from ophora.registry import did_you_mean

__all__ = ["Table2Config", "DatasetConfig", "RowConfig", "ClassifierConfig", "StatsConfig", "load_config",
           "CONFIGS_DIR", "SPLITS", "METRICS", "column_key"]

CONFIGS_DIR = Path(__file__).parents[1] / "configs" / "table2"
SPLITS = ("val", "test")  # the real splits every classifier is tested on
METRICS = {"top1": "top-1", "top5": "top-5"}  # cell results key -> column title


def column_key(task: str, split: str, metric: str) -> str:
    """A table column and its key in ``published``: ``column_key("phase", "test", "top1")`` ->
    ``"phase test top-1"``."""
    return f"{task} {split} {METRICS.get(metric, metric)}"


@dataclass(frozen=True)
class DatasetConfig:
    """``kind: ophsim`` builds a world from ``ophsim`` (videos, seed, frames, size [h, w], fps);
    ``kind: ophnet`` reads ``csv`` {task: path} with videos under ``videos_root`` (untrimmed ``<video_id>.mp4``)
    or ``segments_root`` (trimmed, when the CSV has ``segment_path``); ``num_classes`` {task: n}, default
    OphNet2024's (52 phases, 107 operations) for ophnet and largest label + 1 for ophsim. Paths are relative to
    the working directory, or ``package:<package>/<path>`` for a file shipped in a package (the paper config's
    ``package:ophora/data/ophnet2024/...``)."""

    kind: Literal["ophsim", "ophnet"] = "ophsim"
    ophsim: dict = field(default_factory=lambda: {"videos": 20, "seed": 0, "frames": 16, "size": [64, 64]})
    csv: dict = field(default_factory=dict)
    videos_root: str | None = None
    segments_root: str | None = None
    trim: str = "auto"
    num_classes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ClassifierConfig:
    """A table column group: ``label`` as printed, ``recipe`` a recipe name or YAML path, ``overrides``."""

    label: str
    recipe: str
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RowConfig:
    """A training-data row. Without ``generator`` it is the real data alone. ``generator``: a registered name
    or ``external``; ``model``: its model folder (or {task: folder of videos} for external), or None to train
    one (``train_overrides``) on ``train_manifest`` (default: the OphSim world's instructions);
    ``clips_per_class`` clips per class, ``ratio`` synthetic clips per real training clip; ``filter_min_prob``
    (None: off) keeps only the synthetic clips that the same classifier trained on the real clips alone assigns to
    their prompted class with at least this probability (the ratio is capped at what is left). With ``model``
    given, ``train_manifest`` may still name the data that model was trained on: the leakage check then compares
    it with the real val and test clips. ``published``: the paper's numbers of this row, ``{classifier label:
    {"<task> <split> top-1|top-5": value or text}}`` (cells not given print ``illegible``)."""

    label: str
    generator: str | None = None
    model: Any = None
    train_manifest: str | None = None
    train_overrides: dict = field(default_factory=dict)
    generate_overrides: dict = field(default_factory=dict)
    clips_per_class: int = 4
    ratio: float = 0.5
    filter_min_prob: float | None = None
    prompts_csv: str | None = None
    template: str | None = None
    class_names: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StatsConfig:
    """How cells are compared: every "+ synthetic" row against the ``source`` row (default: the first row without
    a generator) of the same classifier, task and split, by a paired bootstrap over the test clips
    (``bootstrap`` resamples, seeded with ``seed``; clips resampled alike for both rows, per-clip correctness
    averaged over the seeds both rows have) and McNemar's exact test per seed."""

    bootstrap: int = 10_000
    seed: int = 0
    source: str | None = None


@dataclass(frozen=True)
class Table2Config:
    """A whole table: the data set, the classifiers (column groups), the training-data rows, the tasks
    (``phase``, ``operation``) and the seeds (cells are means over seeds, with std and a 95% interval, and paired
    tests against the source row: ``stats``); ``leakage``: the checks run before anything is trained
    (:mod:`ophora.data.leakage`); ``name`` defaults to the file's."""

    name: str
    dataset: DatasetConfig
    classifiers: tuple[ClassifierConfig, ...]
    rows: tuple[RowConfig, ...]
    tasks: tuple[str, ...] = ("phase", "operation")
    seeds: tuple[int, ...] = (0,)
    description: str = ""
    stats: StatsConfig = field(default_factory=StatsConfig)
    leakage: LeakageConfig = field(default_factory=LeakageConfig)


def load_config(config: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Table2Config:
    """A config by name (``downstream/configs/table2/<name>.yaml``) or path, with dotted ``overrides``
    (``{"dataset.videos_root": "/data/OphNet2024/videos", "rows.1.model": "runs/paper/p2ft/model"}``)."""
    loaded = configs.load_config(Table2Config, config, overrides, shipped=CONFIGS_DIR, what="Table 2 config")
    _check(loaded)
    return loaded


def _check(config: Table2Config) -> None:
    """Seeds distinct and present; ``published`` names known classifiers and columns; the stats' source row
    exists."""
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise configs.ConfigError("seeds", f"expected distinct seeds, at least one; got {list(config.seeds)}")
    labels = [r.label for r in config.rows]
    if config.stats.source is not None and config.stats.source not in labels:
        raise configs.ConfigError("stats.source", f"no row is labelled {config.stats.source!r}; rows: {labels}")
    classifiers = {c.label for c in config.classifiers}
    columns = {column_key(t, s, m) for t in config.tasks for s in SPLITS for m in METRICS}
    for i, row in enumerate(config.rows):
        for classifier, cells in row.published.items():
            if classifier not in classifiers:
                raise configs.ConfigError(f"rows[{i}].published", f"unknown classifier {classifier!r} "
                                          f"{did_you_mean(classifier, classifiers)}; known: {sorted(classifiers)}")
            for column in cells:
                if column not in columns:
                    raise configs.ConfigError(f"rows[{i}].published.{classifier}", f"unknown column {column!r} "
                                              f"{did_you_mean(column, columns)}; columns look like 'phase test top-1'")
