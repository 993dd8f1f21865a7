"""Before any compute: every asset a Table 2 config needs that is not on this machine (OphNet CSVs and videos,
generator models or folders of generated clips, prompt and class-name files, Kinetics weights), each with where
it must be and how to get it."""
from __future__ import annotations

from pathlib import Path

import baselines
from downstream.models import KINETICS_WEIGHTS
from downstream.ophnet import load_clips
from downstream.table2.config import RowConfig, Table2Config
from downstream.table2.data import config_path, real_source
from downstream.train import load_recipe
from ophora import weights as weights_registry

__all__ = ["preflight"]


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
