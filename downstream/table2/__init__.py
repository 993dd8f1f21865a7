"""Table 2: phase and operation recognition trained on real clips alone and with synthetic clips.

``python -m downstream.table2`` (``--config demo``) runs the whole table on an OphSim world on a CPU:

1. an OphSim world (its ``ophnet/`` CSVs are the real data, split by patient);
2. per synthetic row, its generator trained (tiny preset) on the world's ``ophora_instructions`` and
   ``clips_per_class`` clips generated per class with :func:`downstream.synthetic.make_synthetic`, mixed into
   the training split at ``ratio`` synthetic clips per real training clip;
3. per (row, classifier, task, seed) one classifier trained and tested on val and test (:mod:`downstream.train`);
4. per cell the mean, std and 95% intervals over seeds and clips, and each "+ synthetic" row tested against the
   source row on the same clips (:mod:`downstream.table2.stats`).

Before anything is trained, the val and test clips are checked for leakage into the real training clips and
the generators' training data (:func:`downstream.table2.preflight.leakage`; on OphSim the generators train on
the world's training patients only).

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

import dataclasses
import time
from pathlib import Path

from downstream.table2.config import SPLITS, Table2Config, load_config
from downstream.table2.data import real_data, split_sizes, world
from downstream.table2.preflight import leakage, preflight
from downstream.table2.stages import row_cells
from downstream.table2.stats import table_statistics
from ophora.data.atomic import remove_stale_temporaries

__all__ = ["run_table2", "load_config", "Table2Config", "preflight"]


def run_table2(config: Table2Config, work: Path, allow_missing: bool = False, progress: bool = False) -> dict:
    """Run every cell (cached) and return the payload of results.json (without provenance)."""
    started = time.perf_counter()
    missing = preflight(config)
    if missing and not allow_missing:
        raise SystemExit("Table 2 preflight: missing assets, nothing was computed:\n  - " + "\n  - ".join(missing))
    remove_stale_temporaries(work, recursive=True)  # files a killed run left half-written
    world_folder = world(config, work) if config.dataset.kind == "ophsim" else None
    cells, data_report, timings, real = [], {}, {}, {}
    for task in config.tasks:
        real[task], unreadable, num_classes = real_data(config, task, world_folder)
        data_report[task] = {"num_classes": num_classes, "clips": split_sizes(real[task]),
                             "unreadable": unreadable.to_dict("records")}
    tick = time.perf_counter()
    leaks = leakage(config, real, world_folder, work / "leakage")  # refuses val/test clips that leak
    timings["leakage"] = round(time.perf_counter() - tick, 2)
    for task in config.tasks:
        for seed in config.seeds:
            for row in config.rows:
                tick = time.perf_counter()
                cells += row_cells(config, row, task, seed, real[task], data_report[task]["num_classes"],
                                   world_folder, work, progress)
                timings[f"{task}/{row.label}/seed{seed}"] = round(time.perf_counter() - tick, 2)
    records = [dataclasses.asdict(c) for c in cells]
    tick = time.perf_counter()
    statistics = table_statistics(records, config.rows, config.classifiers, config.tasks, SPLITS,
                                  config.stats.bootstrap, config.stats.seed, config.stats.source)
    timings["statistics"] = round(time.perf_counter() - tick, 2)
    return {"cells": records, "statistics": statistics, "seeds": list(config.seeds), "leakage": leaks.to_json(),
            "data": data_report, "preflight_missing": missing,
            "timings_s": {**timings, "total": round(time.perf_counter() - started, 2)}}
