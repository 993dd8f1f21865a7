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

import dataclasses
import time
from pathlib import Path

from downstream.table2.config import Table2Config, load_config
from downstream.table2.data import real_data, split_sizes, world
from downstream.table2.preflight import preflight
from downstream.table2.stages import row_cells
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
    cells, data_report, timings = [], {}, {}
    for task in config.tasks:
        real, unreadable, num_classes = real_data(config, task, world_folder)
        data_report[task] = {"num_classes": num_classes, "clips": split_sizes(real),
                             "unreadable": unreadable.to_dict("records")}
        for seed in config.seeds:
            for row in config.rows:
                tick = time.perf_counter()
                cells += row_cells(config, row, task, seed, real, num_classes, world_folder, work, progress)
                timings[f"{task}/{row.label}/seed{seed}"] = round(time.perf_counter() - tick, 2)
    return {"cells": [dataclasses.asdict(c) for c in cells], "data": data_report, "preflight_missing": missing,
            "timings_s": {**timings, "total": round(time.perf_counter() - started, 2)}}
