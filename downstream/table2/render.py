"""Table 2's files: ``table.md``, ``table.csv`` and ``table.tex`` (booktabs), rendered by :mod:`ophora.tables`.

One row per (classifier, training data), columns ``<task> <split> top-1/top-5`` in percent (two decimals; four in
the CSV), mean over seeds; an ``n/a`` cell keeps its reason in the notes under the Markdown table and in the
CSV's ``note`` column.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from downstream.table2.config import SPLITS, Table2Config
from ophora.tables import Column, Table, write_tables

__all__ = ["table_frame", "table", "render"]

METRICS = {"top1": "top-1", "top5": "top-5"}  # cell results key -> column title


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
                    for metric, title in METRICS.items():
                        values = [c["results"]["splits"][split][metric] for c in cells if c["status"] == "ok"]
                        record[f"{task} {split} {title}"] = 100 * float(np.mean(values)) if values else None
                notes += sorted({c["reason"] for c in cells if c["status"] != "ok"})
            record["note"] = "; ".join(dict.fromkeys(notes))
            records.append(record)
    return pd.DataFrame(records)


def table(frame: pd.DataFrame, config: Table2Config) -> Table:
    """The :class:`~ophora.tables.Table` of a :func:`table_frame`: LaTeX header rows group the columns by task
    and split; missing cells print ``n/a`` (``--`` in LaTeX)."""
    columns = [Column("classifier", "classifier", tex="Classifier", align="l"),
               Column("training data", "training data", tex="Training data", align="l")]
    columns += [Column(f"{task} {split} {title}", f"{task} {split} {title}", tex=title.capitalize(), number=True,
                       md_right=True) for task in config.tasks for split in SPLITS for title in METRICS.values()]
    per_split, per_task = len(METRICS), len(METRICS) * len(SPLITS)
    groups = (((("", 2),) + tuple((task.capitalize(), per_task) for task in config.tasks)),
              (("", 1), ("", 1)) + tuple((split, per_split) for _ in config.tasks for split in SPLITS))
    records = frame.to_dict("records")
    notes = tuple(f"{r['classifier']}, {r['training data']}: {r['note']}" for r in records if r["note"])
    return Table(tuple(columns), tuple(records), title=f"Table 2 ({config.name}): accuracy (%) of phase and "
                                                       "operation recognition",
                 groups=groups, notes=notes, notes_title="Notes:", footer=config.description.strip(), missing="n/a",
                 tex_missing="--")


def render(frame: pd.DataFrame, config: Table2Config, out: Path) -> dict[str, Path]:
    """table.md, table.csv and table.tex under ``out`` (numbers in percent, two decimals, four in the CSV)."""
    return write_tables(table(frame, config), out, list(frame.columns), csv_decimals=4)
