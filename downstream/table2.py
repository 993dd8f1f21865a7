"""Table 2: phase and operation recognition trained on real clips alone and with synthetic clips.

``python -m downstream.table2`` (``--config demo``) runs the whole table on an OphSim world on a CPU:

1. an OphSim world (its ``ophnet/`` CSVs are the real data, split by patient);
2. per synthetic row, its generator trained (tiny preset) on the world's ``ophora_instructions`` and
   ``clips_per_class`` clips generated per class with :func:`downstream.synthetic.make_synthetic`, mixed into
   the training split at ``ratio`` synthetic clips per real training clip;
3. per (row, classifier, task) one classifier trained and tested on val and test (:mod:`downstream.train`).

``--config paper`` does the same on OphNet2024 (the real CSVs, a videos root, generator checkpoints or
external folders of generated clips, Kinetics weights): a preflight lists every missing asset with where it
must be and stops before any computation. A row whose generator is not registered (or whose assets are
missing in a run with ``--allow-missing``) appears in the table as ``n/a`` with the reason.

Every stage is cached under ``--work`` (default ``runs/table2/<config>``) by its inputs: the world by its
settings, generator models by (generator, manifest, overrides), synthetic sets by (model, prompts, K, seed),
classifier runs by a hash of (recipe, seed, training and test clips); a rerun only renders. Outputs go to
``results/table2/<config>/``: ``table.md``, ``table.csv``, ``table.tex`` and ``results.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from downstream.ophnet import OPHNET_NUM_CLASSES, ClipSource, describe_problems, load_clips, num_classes_of, scan_clips
from downstream.train import load_recipe, train_classifier
from ophora.data.atomic import atomic_write_text
from ophora.data.bundled import resolve_path
from ophora.results import write_json

__all__ = ["Table2Config", "DatasetConfig", "RowConfig", "ClassifierConfig", "load_config", "preflight",
           "run_table2", "render", "main", "CONFIGS_DIR"]

log = logging.getLogger("downstream.table2")
CONFIGS_DIR = Path(__file__).parent / "configs" / "table2"
SPLITS, METRICS = ("val", "test"), ("top1", "top5")


@dataclass(frozen=True)
class DatasetConfig:
    """``kind: ophsim`` builds a world from ``ophsim`` (videos, seed, frames, size [h, w], fps);
    ``kind: ophnet`` reads ``csv`` {task: path} with videos under ``videos_root`` (untrimmed ``<video_id>.mp4``)
    or ``segments_root`` (trimmed, when the CSV has ``segment_path``); ``num_classes`` {task: n}, default
    OphNet2024's (52 phases, 107 operations) for ophnet and largest label + 1 for ophsim. Paths are relative to
    the working directory, or ``package:<package>/<path>`` for a file shipped in a package (the paper config's
    ``package:ophora/data/ophnet2024/...``)."""

    kind: str = "ophsim"
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
    their prompted class with at least this probability (the ratio is capped at what is left)."""

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


@dataclass(frozen=True)
class Table2Config:
    name: str
    dataset: DatasetConfig
    classifiers: tuple[ClassifierConfig, ...]
    rows: tuple[RowConfig, ...]
    tasks: tuple[str, ...] = ("phase", "operation")
    seeds: tuple[int, ...] = (0,)
    description: str = ""


# ---------------------------------------------------------------------------------------------------------
# Configuration: YAML -> dataclasses


def _build(cls, values: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    return cls(**values)


def load_config(config: str | Path, overrides: dict[str, Any] | None = None) -> Table2Config:
    """A config by name (``downstream/configs/table2/<name>.yaml``) or path, with dotted ``overrides``
    (``{"dataset.videos_root": "/data/OphNet2024/videos"}``)."""
    path = Path(config) if str(config).endswith((".yaml", ".yml")) else CONFIGS_DIR / f"{config}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"Table 2 config {config!r} not found: expected {path} (known: {known})")
    raw = yaml.safe_load(path.read_text()) or {}
    raw.setdefault("name", path.stem)
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    where = str(path)
    for key in ("dataset", "classifiers", "rows"):
        if key not in raw:
            raise ValueError(f"{where}: missing key {key!r}")
    values = dict(raw)
    values["dataset"] = _build(DatasetConfig, raw["dataset"], f"{where}: dataset")
    values["classifiers"] = tuple(_build(ClassifierConfig, c, f"{where}: classifiers[{i}]")
                                  for i, c in enumerate(raw["classifiers"]))
    values["rows"] = tuple(_build(RowConfig, r, f"{where}: rows[{i}]") for i, r in enumerate(raw["rows"]))
    values["tasks"] = tuple(raw.get("tasks", ("phase", "operation")))
    values["seeds"] = tuple(int(s) for s in raw.get("seeds", (0,)))
    return _build(Table2Config, values, where)


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


# ---------------------------------------------------------------------------------------------------------
# Cache keys


def cache_key(*parts: Any) -> str:
    """16 hex digits of the sha256 of ``parts`` as canonical JSON (dataclasses and paths as plain values)."""
    from ophora.results import plain

    text = json.dumps(plain(list(parts)), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _clips_fingerprint(df: pd.DataFrame) -> str:
    columns = [c for c in ("clip_path", "window_start", "window_end", "label", "split") if c in df.columns]
    return cache_key(df[columns].astype(str).to_numpy().tolist())


# ---------------------------------------------------------------------------------------------------------
# Real data


def _world(config: Table2Config, work: Path) -> Path:
    """Build (or reuse) the OphSim world of the config; return its folder."""
    from ophora.sim.world import WorldConfig, build_world

    settings = dict(config.dataset.ophsim)
    if "size" in settings:
        settings["size"] = tuple(settings["size"])
    try:
        world_config = WorldConfig(**settings)
    except TypeError as err:
        fields = [f.name for f in dataclasses.fields(WorldConfig)]
        raise ValueError(f"dataset.ophsim: {err}; known keys: {fields}") from None
    folder = work / "world" / cache_key(world_config)
    if not (folder / "world.json").is_file():
        log.info("building OphSim world in %s", folder)
        build_world(world_config, folder, workers=1, progress=False)
    return folder


def _real_source(config: Table2Config, task: str, world: Path | None) -> ClipSource:
    data = config.dataset
    if data.kind == "ophsim":
        ophnet = world / "ophnet"
        name = "OphSim_loca_phase.csv" if task == "phase" else "OphSim_loca_operation.csv"
        return ClipSource(ophnet / name, task, segments_root=ophnet / "segments", videos_root=ophnet / "videos")
    if data.kind != "ophnet":
        raise ValueError(f"dataset.kind must be 'ophsim' or 'ophnet', got {data.kind!r}")
    if task not in data.csv:
        raise ValueError(f"dataset.csv has no CSV for task {task!r}; it names {sorted(data.csv)}")
    return ClipSource(resolve_path(data.csv[task]), task, segments_root=_path(data.segments_root),
                      videos_root=_path(data.videos_root), trim=data.trim)


def _path(text: str | None) -> Path | None:
    """A config path: ``package:<package>/<path>`` names a file shipped in a package, e.g.
    ``package:ophora/data/ophnet2024/OphNet2024_loca_challenge.csv``; anything else is relative to the working
    directory."""
    return None if text is None else resolve_path(text)


def _num_classes(config: Table2Config, task: str, real: pd.DataFrame) -> int:
    if task in config.dataset.num_classes:
        return int(config.dataset.num_classes[task])
    if config.dataset.kind == "ophnet":
        return OPHNET_NUM_CLASSES[task]
    return num_classes_of(real)


# ---------------------------------------------------------------------------------------------------------
# Synthetic data


class RowUnavailable(RuntimeError):
    """A synthetic row that cannot be made here (generator not registered, assets missing)."""


def _generator_model(row: RowConfig, world: Path | None, work: Path) -> Path:
    """The row's model folder: given, or trained (cached) on the world's instructions, stage by stage."""
    import baselines

    if row.model is not None:
        return Path(row.model)
    if row.generator not in baselines.names():
        raise RowUnavailable(f"generator {row.generator!r} is not registered (registered: {baselines.names()})")
    manifest = Path(row.train_manifest) if row.train_manifest else (world / "ophora_instructions" / "instructions.csv"
                                                                    if world else None)
    if manifest is None:
        raise RowUnavailable(f"row {row.label!r}: no model and no train_manifest to train {row.generator!r} on")
    generator = baselines.get(row.generator)
    folder = work / "generators" / f"{row.generator}-{cache_key(row.generator, str(manifest), row.train_overrides)}"
    model = None
    for stage in generator.stages:
        model = generator.train(manifest, folder / stage, stage=stage, init=model,
                                overrides=row.train_overrides or None)
    return Path(model)


def _prompts(row: RowConfig, task: str, config: Table2Config, classes: list[int]):
    from downstream import synthetic

    if config.dataset.kind == "ophsim" and not (row.prompts_csv or row.template):
        return synthetic.ophsim_class_prompts(task, classes)
    names_file = row.class_names.get(task)
    names = synthetic.read_class_names(Path(names_file)) if names_file else None
    template = row.template or (None if row.prompts_csv else synthetic.DEFAULT_TEMPLATES[task])
    return synthetic.class_prompts(task, classes, csv=_path(row.prompts_csv), template=template, names=names)


def _synthetic_rows(row: RowConfig, task: str, config: Table2Config, real: pd.DataFrame, world: Path | None,
                    work: Path, seed: int) -> tuple[pd.DataFrame, dict]:
    """The row's synthetic clips (load_clips frame) and a record of how they were made."""
    from downstream import synthetic

    classes = sorted(int(c) for c in real.loc[real["split"].astype(str) == "train", "label"].unique())
    prompts = _prompts(row, task, config, classes)
    model = row.model.get(task) if isinstance(row.model, dict) else None
    model = Path(model) if model else _generator_model(row, world, work)
    parents = None
    if task == "operation":
        parents = synthetic.ophsim_parents() if config.dataset.kind == "ophsim" else synthetic.phase_of_operations(real)
    out = work / "synthetic" / f"{row.generator}-{cache_key(str(model), prompts, row.clips_per_class, seed, task)}"
    csv = synthetic.make_synthetic(row.generator, model, prompts, out, task=task,
                                   clips_per_class=row.clips_per_class, seed=seed, parents=parents,
                                   overrides=row.generate_overrides or None)
    clips = load_clips(ClipSource(csv, task, segments_root=csv.parent, trim="segments"))
    return clips, {"generator": row.generator, "model": str(model), "csv": str(csv), "clips": len(clips),
                   "clips_per_class": row.clips_per_class, "prompts": len(prompts)}


# ---------------------------------------------------------------------------------------------------------
# Preflight


def preflight(config: Table2Config, check_videos: bool = True) -> list[str]:
    """Every missing asset of a run on OphNet (CSVs, videos, generator models, Kinetics weights), each with
    where it must be. OphSim runs make their own data; there an unregistered generator only makes its row n/a."""
    import baselines
    from ophora import weights as weights_registry
    from downstream.models import KINETICS_WEIGHTS

    missing: list[str] = []
    if config.dataset.kind == "ophnet":
        missing += _missing_data(config, check_videos)
    for row in config.rows:
        if row.generator is None:
            continue
        if config.dataset.kind == "ophnet" and row.generator != "external" and row.generator not in baselines.names():
            missing.append(f"row {row.label!r}: generator {row.generator!r} is not registered "
                           f"(registered: {baselines.names()})")
        models = row.model if isinstance(row.model, dict) else {t: row.model for t in config.tasks}
        for task in config.tasks:
            model = models.get(task)
            if model is None and config.dataset.kind == "ophnet" and not row.train_manifest:
                what = ("a folder of generated clips (manifest.jsonl)" if row.generator == "external" else
                        f"the model folder {row.generator!r} training wrote")
                missing.append(f"row {row.label!r}, {task}: no generator model: set rows[].model to {what}")
            elif model is not None and not Path(model).exists():
                missing.append(f"row {row.label!r}, {task}: generator model/clips not found: expected {model}")
            missing += _missing_prompts(config, row, task)
    for classifier in config.classifiers:
        recipe = load_recipe(classifier.recipe, classifier.overrides)
        if recipe.size == "full" and recipe.weights in ("auto", "kinetics"):
            name = KINETICS_WEIGHTS[recipe.arch]
            try:
                weights_registry.resolve(name, check=False)
            except weights_registry.WeightsNotFoundError:
                where = weights_registry.candidate_paths(name)[-1]
                missing.append(f"Kinetics-400 weights {name!r} for {classifier.label}: expected {where} "
                               f"(python -m ophora.weights fetch {name}, or set $OPHORA_WEIGHTS_DIR)")
    return missing


def _missing_prompts(config: Table2Config, row: RowConfig, task: str) -> list[str]:
    """Prompt sources a row needs on OphNet: its prompt CSV, and class names when the prompts use them."""
    if config.dataset.kind != "ophnet":
        return []
    missing = []
    if row.prompts_csv and not _path(row.prompts_csv).is_file():
        missing.append(f"row {row.label!r}: prompt CSV not found: expected {row.prompts_csv}")
    names = row.class_names.get(task)
    if names and not Path(names).is_file():
        missing.append(f"row {row.label!r}, {task}: class names not found: expected {names} (columns id,name)")
    elif not names and (row.prompts_csv or "{name}" in (row.template or "{name}")):
        missing.append(f"row {row.label!r}, {task}: the prompts name the classes: set rows[].class_names.{task} "
                       "to a CSV with columns id,name (OphNet publishes class names only in an external sheet)")
    return missing


def _missing_data(config: Table2Config, check_videos: bool) -> list[str]:
    missing = []
    for task in config.tasks:
        source = _real_source(config, task, None)
        if not source.csv.is_file():
            missing.append(f"{task} annotations: expected {source.csv.resolve()}")
            continue
        if not check_videos:
            continue
        clips = load_clips(source)
        paths = sorted(set(clips["clip_path"]))
        absent = [p for p in paths if not Path(p).is_file()]
        if absent:
            root = Path(absent[0]).parent
            missing.append(f"{task} videos: {len(absent)} of {len(paths)} files missing under {root} "
                           f"(e.g. {', '.join(Path(p).name for p in absent[:3])}); set dataset.videos_root "
                           "(untrimmed <video_id>.mp4) or dataset.segments_root (trimmed clips)")
    return missing


# ---------------------------------------------------------------------------------------------------------
# Running


@dataclass
class _Cell:
    row: str
    classifier: str
    task: str
    seed: int
    status: str = "ok"
    reason: str = ""
    results: dict | None = None
    run_dir: str = ""
    train_clips: dict = field(default_factory=dict)


def run_table2(config: Table2Config, work: Path, allow_missing: bool = False, progress: bool = False) -> dict:
    """Run every cell (cached) and return the payload of results.json (without provenance)."""
    started = time.perf_counter()
    missing = preflight(config)
    if missing and not allow_missing:
        raise SystemExit("Table 2 preflight: missing assets, nothing was computed:\n  - " + "\n  - ".join(missing))
    world = _world(config, work) if config.dataset.kind == "ophsim" else None
    cells, data_report, timings = [], {}, {}
    for task in config.tasks:
        real, unreadable, num_classes = _real_data(config, task, world)
        data_report[task] = {"num_classes": num_classes, "clips": _split_sizes(real),
                             "unreadable": unreadable.to_dict("records")}
        for seed in config.seeds:
            for row in config.rows:
                tick = time.perf_counter()
                cells += _row_cells(config, row, task, seed, real, num_classes, world, work, progress)
                timings[f"{task}/{row.label}/seed{seed}"] = round(time.perf_counter() - tick, 2)
    return {"cells": [dataclasses.asdict(c) for c in cells], "data": data_report, "preflight_missing": missing,
            "timings_s": {**timings, "total": round(time.perf_counter() - started, 2)}}


def _split_sizes(df: pd.DataFrame) -> dict:
    return {s: int((df["split"].astype(str) == s).sum()) for s in ("train", "val", "test")}


def _real_data(config: Table2Config, task: str, world: Path | None) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    clips = load_clips(_real_source(config, task, world))
    readable, problems = scan_clips(clips)
    if len(problems):
        log.warning("%s: %s", task, describe_problems(problems))
    return readable, problems, _num_classes(config, task, clips)


def _row_cells(config, row, task, seed, real, num_classes, world, work, progress) -> list[_Cell]:
    evals = {s: real[real["split"].astype(str) == s] for s in SPLITS}
    synthetic, synthetic_info = None, {}
    try:
        if row.generator is not None:
            synthetic, synthetic_info = _synthetic_rows(row, task, config, real, world, work, seed)
    except RowUnavailable as err:
        return [_Cell(row.label, c.label, task, seed, "n/a", str(err)) for c in config.classifiers]
    cells = []
    for classifier in config.classifiers:
        recipe = load_recipe(classifier.recipe, classifier.overrides)
        train, mixing = _training_clips(row, recipe, real, synthetic, evals, num_classes, work, seed, task)
        log.info("%s | %s | %s: %d training clips", task, row.label, classifier.label, len(train))
        results, run_dir = _run_classifier(recipe, train, evals, num_classes, work, seed, task, progress)
        sources = train["source"].value_counts().to_dict() if "source" in train.columns else {"real": len(train)}
        extra = {"synthetic_set": {**synthetic_info, **mixing}} if synthetic_info else {}
        cells.append(_Cell(row.label, classifier.label, task, seed, results=_slim(results), run_dir=str(run_dir),
                           train_clips={**{str(k): int(v) for k, v in sources.items()}, **extra}))
    return cells


def _run_classifier(recipe, train, evals, num_classes, work, seed, task, progress=False) -> tuple[dict, Path]:
    """Train and test one classifier, cached under a key of every input."""
    key = cache_key(recipe, seed, num_classes, _clips_fingerprint(train),
                    {s: _clips_fingerprint(df) for s, df in evals.items()})
    run_dir = work / "classifiers" / f"{task}-{recipe.name}-{key}"
    return train_classifier(recipe, train, evals, num_classes, run_dir, seed=seed, progress=progress), run_dir


def _training_clips(row, recipe, real, synthetic, evals, num_classes, work, seed, task) -> tuple[pd.DataFrame, dict]:
    """The row's training clips: the real train split, plus synthetic clips (filtered when the row asks) mixed in
    at the row's ratio (capped at the clips left after filtering). Returns (clips, record of the mixing)."""
    from downstream.synthetic import mix

    real_train = real[real["split"].astype(str) == "train"]
    if synthetic is None:
        return real_train, {}
    record: dict = {"ratio": row.ratio}
    if row.filter_min_prob is not None:
        synthetic, record["filter"] = _filter_synthetic(synthetic, recipe, real_train, evals, num_classes, work, seed,
                                                        task, row.filter_min_prob)
        record["ratio"] = min(row.ratio, len(synthetic) / max(len(real_train), 1))
    mixed = mix(real, synthetic, record["ratio"], seed, task=task)
    train, problems = scan_clips(mixed[mixed["split"].astype(str) == "train"])
    record["unreadable"] = problems.to_dict("records")
    return train, record


def _filter_synthetic(synthetic, recipe, real_train, evals, num_classes, work, seed, task, min_prob):
    """Keep the synthetic clips that this classifier, trained on the real clips alone, assigns to their prompted
    class (:func:`downstream.synthetic.keep_confident`); clips that fail to decode are dropped and listed."""
    from downstream.synthetic import keep_confident

    _, run_dir = _run_classifier(recipe, real_train, evals, num_classes, work, seed, task)
    synthetic, problems = scan_clips(synthetic)
    scores = _predict(recipe, run_dir, synthetic, num_classes, seed)
    decoded = ~np.isnan(scores).any(axis=1)
    kept = keep_confident(synthetic[decoded], lambda frame: scores[decoded], task, min_prob)
    report = dict(kept.attrs.get("keep_confident", {}))
    report["undecodable"] = problems["clip_path"].tolist() + synthetic.loc[~decoded, "clip_path"].tolist()
    return kept, json.loads(json.dumps(report, default=str))


def _predict(recipe, run_dir: Path, clips: pd.DataFrame, num_classes: int, seed: int) -> np.ndarray:
    """Softmax scores float [N, C] of a trained run's model on ``clips`` (NaN rows: clips that failed)."""
    import torch
    from safetensors.torch import load_file

    from downstream.models import build_classifier
    from downstream.train import MODEL_NAME, predict_scores
    from ophora.training.distributed import make_accelerator

    model, _ = build_classifier(dataclasses.replace(recipe.classifier(), weights="none"), num_classes)
    model.load_state_dict(load_file(str(run_dir / MODEL_NAME)))
    accelerator = make_accelerator()
    with torch.no_grad():
        scores, _ = predict_scores(accelerator, accelerator.prepare(model), recipe, clips, seed)
    return scores


def _slim(results: dict) -> dict:
    """Per-split numbers of a classifier run (per-class accuracies kept, failures counted and listed)."""
    keep = ("clips", "top1", "top5", "macro_top1", "per_class_top1", "support", "failed", "failures", "views",
            "spatial_crops")
    return {"init": results.get("init"), "steps": results.get("steps"), "train_failed": results.get("train_failed"),
            "splits": {s: {k: v for k, v in r.items() if k in keep} for s, r in results["splits"].items()}}


# ---------------------------------------------------------------------------------------------------------
# Rendering


def table_frame(payload: dict, config: Table2Config) -> pd.DataFrame:
    """One row per (classifier, training data): columns ``<task> <split> top-1/top-5`` in percent, mean over
    seeds (``n/a`` cells keep their reason in a ``note`` column)."""
    records = []
    for classifier in config.classifiers:
        for row in config.rows:
            record: dict[str, Any] = {"classifier": classifier.label, "training data": row.label}
            notes = []
            for task in config.tasks:
                cells = [c for c in payload["cells"] if (c["row"], c["classifier"], c["task"]) ==
                         (row.label, classifier.label, task)]
                for split in SPLITS:
                    for metric in METRICS:
                        values = [c["results"]["splits"][split][metric] for c in cells if c["status"] == "ok"]
                        record[f"{task} {split} {_metric_name(metric)}"] = (100 * float(np.mean(values))
                                                                            if values else None)
                notes += sorted({c["reason"] for c in cells if c["status"] != "ok"})
            record["note"] = "; ".join(dict.fromkeys(notes))
            records.append(record)
    return pd.DataFrame(records)


def _metric_name(metric: str) -> str:
    return {"top1": "top-1", "top5": "top-5"}[metric]


def _fmt(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.2f}"


def render(frame: pd.DataFrame, config: Table2Config, out: Path) -> dict[str, Path]:
    """table.md, table.csv and table.tex under ``out`` (numbers in percent, two decimals)."""
    numeric = [c for c in frame.columns if c not in ("classifier", "training data", "note")]
    paths = {"csv": atomic_write_text(out / "table.csv", frame.to_csv(index=False, float_format="%.4f"))}
    paths["md"] = atomic_write_text(out / "table.md", _markdown(frame, numeric, config))
    paths["tex"] = atomic_write_text(out / "table.tex", _latex(frame, numeric, config))
    return paths


def _markdown(frame: pd.DataFrame, numeric: list[str], config: Table2Config) -> str:
    header = ["classifier", "training data"] + numeric
    lines = [f"# Table 2 ({config.name}): accuracy (%) of phase and operation recognition", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * len(numeric)]
    for rec in frame.to_dict("records"):
        lines.append("| " + " | ".join([rec["classifier"], rec["training data"]] + [_fmt(rec[c]) for c in numeric])
                     + " |")
    notes = [f"- {r['classifier']}, {r['training data']}: {r['note']}" for r in frame.to_dict("records") if r["note"]]
    if notes:
        lines += ["", "Notes:"] + notes
    if config.description:
        lines += ["", config.description.strip()]
    return "\n".join(lines) + "\n"


def _latex(frame: pd.DataFrame, numeric: list[str], config: Table2Config) -> str:
    tasks = config.tasks
    spec = "ll" + "c" * len(numeric)
    top = " & ".join([r"\multicolumn{2}{c}{}"] + [rf"\multicolumn{{4}}{{c}}{{{t.capitalize()}}}" for t in tasks])
    mid = " & ".join(["", ""] + [rf"\multicolumn{{2}}{{c}}{{{s}}}" for _ in tasks for s in SPLITS])
    low = " & ".join(["Classifier", "Training data"] + ["Top-1", "Top-5"] * (len(numeric) // 2))
    lines = [r"\begin{tabular}{" + spec + "}", r"\toprule", top + r" \\", mid + r" \\", low + r" \\", r"\midrule"]
    for rec in frame.to_dict("records"):
        cells = [rec["classifier"], rec["training data"]] + ["--" if _fmt(rec[c]) == "n/a" else _fmt(rec[c])
                                                            for c in numeric]
        lines.append(" & ".join(_tex_escape(c) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text


# ---------------------------------------------------------------------------------------------------------
# CLI


def _parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _set_threads(threads: int) -> None:
    import torch

    if threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m downstream.table2", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo", help="demo, paper, or a YAML path")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. dataset.videos_root=/data/OphNet2024/videos")
    parser.add_argument("--work", type=Path, help="cache folder (default runs/table2/<config>)")
    parser.add_argument("--out", type=Path, help="output folder (default results/table2/<config>)")
    parser.add_argument("--preflight", action="store_true", help="list missing assets and exit")
    parser.add_argument("--allow-missing", action="store_true", help="run what can run; missing rows print n/a")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the tiny models run fastest on one thread of a busy "
                             "machine; GPU runs are unaffected)")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per checkpoint file otherwise
    config = load_config(args.config, _parse_set(args.set))
    if args.preflight:
        missing = preflight(config)
        print("\n".join(["missing:"] + [f"  - {m}" for m in missing]) if missing else "preflight: nothing missing")
        return 1 if missing else 0
    work = args.work or Path("runs") / "table2" / config.name
    out = args.out or Path("results") / "table2" / config.name
    payload = run_table2(config, work, allow_missing=args.allow_missing, progress=args.progress)
    frame = table_frame(payload, config)
    paths = render(frame, config, out)
    write_json(out / "results.json", {"table": frame.to_dict("records"), **payload}, config=config,
               seed=config.seeds[0])
    print(paths["md"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}, {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
