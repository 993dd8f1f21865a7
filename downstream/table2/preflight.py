"""Before any compute: every asset a Table 2 config needs that is not on this machine (OphNet CSVs and videos,
generator models or folders of generated clips, prompt and class-name files, Kinetics weights), each with where
it must be and how to get it; and, once the real clips are known, that no val or test clip leaks into what the
classifiers or the generators learn from (:func:`leakage`)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

import baselines
from downstream.models import KINETICS_WEIGHTS
from downstream.ophnet import load_clips
from downstream.table2.config import RowConfig, Table2Config
from downstream.table2.data import config_path, generator_manifest, real_source, world_sources
from downstream.train import load_recipe
from ophora import weights as weights_registry
from ophora.data.leakage import ClipRef, LeakageReport, check_leakage, refs_of_instruction_set

__all__ = ["preflight", "leakage"]


def preflight(config: Table2Config, check_videos: bool = True) -> list[str]:
    """Every missing asset of a run on OphNet (CSVs, videos, generator models, Kinetics weights), each with
    where it must be. OphSim runs make their own data; there an unregistered generator only makes its row n/a."""
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
    if row.prompts_csv and not config_path(row.prompts_csv).is_file():
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
        source = real_source(config, task, None)
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


def leakage(config: Table2Config, real: dict[str, pd.DataFrame], world_folder: Path | None,
            cache: Path | None = None) -> LeakageReport:
    """The real val and test clips of every task against what is learned from: the real training clips (other
    videos, no near-duplicate frames) and each generator's training data where it is known (the OphSim world's
    training patients, or ``rows[].train_manifest``), by source video and by pHash (:mod:`ophora.data.leakage`).
    OphSim case ids map to the source videos of the world's clips; OphNet video ids and Ophora-160K clip ids name
    different videos, so there only frames are compared. Leaks raise
    :class:`~ophora.data.leakage.LeakageError` naming both clips unless ``leakage.allow`` (recorded)."""
    sources = world_sources(world_folder) if world_folder is not None else {}
    train, heldout = {}, {}
    for task, clips in real.items():
        split = clips["split"].astype(str)
        train[f"real train ({task})"] = _refs(clips[split == "train"], sources)
        for name in ("val", "test"):
            heldout[f"real {name} ({task})"] = _refs(clips[split == name], sources)
    skipped = []
    for row in config.rows:
        if row.generator is None:
            continue
        manifest = generator_manifest(row, world_folder)
        if manifest is None or not manifest.is_file():
            skipped.append(f"row {row.label!r}: the generator's training data is not given (rows[].train_manifest):"
                           " not checked")
        elif str(manifest) not in {k.split(": ", 1)[-1] for k in train}:
            train[f"generator data: {manifest}"] = refs_of_instruction_set(manifest)
    if world_folder is None and any(k.startswith("generator data") for k in train):
        skipped.append("source videos: OphNet video ids and the generators' clip ids name different videos; "
                       "compared by frames only")
    report = check_leakage(train, heldout, config.leakage, cache)
    report.skipped += skipped
    return report.enforce(config.leakage.allow)


def _refs(clips: pd.DataFrame, sources: dict[str, str]) -> list[ClipRef]:
    """Leakage references of OphNet-format clips: ``<video_id>[<start>-<end>s]``, the video's source (OphSim:
    the world's source id), the file and, for untrimmed videos, the window."""
    refs = []
    for video, start, end, path, w0, w1 in zip(clips["video_id"], clips["start"], clips["end"], clips["clip_path"],
                                                clips["window_start"], clips["window_end"]):
        window = None if pd.isna(w0) else (float(w0), float(w1))
        refs.append(ClipRef(f"{video}[{float(start):g}-{float(end):g}s]", sources.get(str(video), str(video)),
                            Path(path), window))
    return refs
