"""Table 2's cells: per (row, classifier, task, seed) one classifier trained on the row's clips and tested on the
real val and test splits, each run cached under ``work/classifiers/<task>-<recipe>-<key>`` by every input
(recipe, seed, classes, the training and test clips)."""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from downstream.models import build_classifier
from downstream.ophnet import scan_clips, window_report
from downstream.synthetic import keep_confident, mix
from downstream.table2.config import SPLITS
from downstream.table2.data import RowUnavailable, clips_fingerprint, synthetic_clips
from downstream.train import MODEL_NAME, load_recipe, predict_scores, train_classifier
from ophora.hashing import cache_key
from ophora.training.distributed import make_accelerator

__all__ = ["Cell", "row_cells", "data_windows"]

log = logging.getLogger("downstream.table2")


@dataclass
class Cell:
    """One cell of the table: a classifier trained on a row's clips for one task and seed, its status
    (``ok`` or ``n/a`` with the reason), its slimmed results, the clips it was trained on and ``windows``: per
    data source (real and synthetic training clips, the val and test clips) the frame rates and the seconds one
    sample's window spans and covers (:func:`downstream.ophnet.window_report`)."""

    row: str
    classifier: str
    task: str
    seed: int
    status: str = "ok"
    reason: str = ""
    results: dict | None = None
    run_dir: str = ""
    train_clips: dict = field(default_factory=dict)
    windows: dict = field(default_factory=dict)


def row_cells(config, row, task, seed, real, num_classes, world_folder, work, progress) -> list[Cell]:
    """Every classifier's cell of one row, task and seed (``n/a`` cells when the row's synthetic clips cannot
    be made here)."""
    evals = {s: real[real["split"].astype(str) == s] for s in SPLITS}
    synthetic, synthetic_info = None, {}
    try:
        if row.generator is not None:
            synthetic, synthetic_info = synthetic_clips(row, task, config, real, world_folder, work, seed)
    except RowUnavailable as err:
        return [Cell(row.label, c.label, task, seed, "n/a", str(err)) for c in config.classifiers]
    cells = []
    for classifier in config.classifiers:
        recipe = load_recipe(classifier.recipe, classifier.overrides)
        train, mixing = _training_clips(row, recipe, real, synthetic, evals, num_classes, work, seed, task)
        log.info("%s | %s | %s: %d training clips", task, row.label, classifier.label, len(train))
        results, run_dir = _run_classifier(recipe, train, evals, num_classes, work, seed, task, progress)
        sources = train["source"].value_counts().to_dict() if "source" in train.columns else {"real": len(train)}
        extra = {"synthetic_set": {**synthetic_info, **mixing}} if synthetic_info else {}
        cells.append(Cell(row.label, classifier.label, task, seed, results=_slim(results), run_dir=str(run_dir),
                          train_clips={**{str(k): int(v) for k, v in sources.items()}, **extra},
                          windows=data_windows(recipe, train, evals)))
    return cells


def data_windows(recipe, train: pd.DataFrame, evals: dict[str, pd.DataFrame]) -> dict:
    """The window of ``recipe`` in seconds over each data source: ``train/<source>`` (real, synthetic) and the
    real ``val``/``test`` clips (:func:`downstream.ophnet.window_report`)."""
    sampling = recipe.sampling()
    parts = ({f"train/{s}": train[train["source"] == s] for s in sorted(train["source"].unique())}
             if "source" in train.columns else {"train/real": train})
    parts.update(evals)
    return {name: window_report(df, sampling) for name, df in parts.items()}


def _run_classifier(recipe, train, evals, num_classes, work, seed, task, progress=False) -> tuple[dict, Path]:
    """Train and test one classifier, cached under a key of every input."""
    key = cache_key([recipe, seed, num_classes, clips_fingerprint(train),
                     {s: clips_fingerprint(df) for s, df in evals.items()}])
    run_dir = work / "classifiers" / f"{task}-{recipe.name}-{key}"
    return train_classifier(recipe, train, evals, num_classes, run_dir, seed=seed, progress=progress), run_dir


def _training_clips(row, recipe, real, synthetic, evals, num_classes, work, seed, task) -> tuple[pd.DataFrame, dict]:
    """The row's training clips: the real train split, plus synthetic clips (filtered when the row asks) mixed in
    at the row's ratio (capped at the clips left after filtering). Returns (clips, record of the mixing)."""
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
