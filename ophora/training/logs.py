"""The run's training log: ``log.csv`` (one row per optimizer step) and ``loss.png`` (the loss curve).

Default columns (the generators' loop, :mod:`ophora.training.loop`): ``step`` (1-based optimizer step), ``loss``
(mean over the global batch), ``lr`` (learning rate used by that step), ``samples_per_s`` (global samples per
second of wall time for that step). A trainer with other columns (the downstream classifiers) names them and
their number formats. The first column is always the step: a resumed run first cuts the rows after its
checkpoint's step (kept rows are not rewritten), so the log reads like one uninterrupted run.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Mapping, Sequence

from ophora.data.atomic import atomic_path, atomic_write_text

__all__ = ["LOG_NAME", "PLOT_NAME", "COLUMNS", "TrainLog", "read_log", "plot_loss"]

LOG_NAME, PLOT_NAME = "log.csv", "loss.png"
COLUMNS = ("step", "loss", "lr", "samples_per_s")


def read_log(run: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of ``RUN/log.csv`` as floats (``step`` as int)."""
    path = Path(run) / LOG_NAME
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: (int(v) if k == "step" else float(v)) for k, v in row.items()} for row in csv.DictReader(handle)]


class TrainLog:
    """Append-only CSV log; ``TrainLog(run, resume_step)`` keeps the rows up to ``resume_step`` as they are.

    ``columns``: the header, step first; ``formats``: a format spec per column (``{"loss": ".6f"}``); other
    columns write ints as ``str`` and floats as ``repr`` (exact round trip)."""

    def __init__(self, run: str | os.PathLike, resume_step: int = 0, columns: Sequence[str] = COLUMNS,
                 formats: Mapping[str, str] | None = None):
        self.path, self.columns, self.formats = Path(run) / LOG_NAME, tuple(columns), dict(formats or {})
        lines = self.path.read_text(encoding="utf-8").splitlines()[1:] if self.path.is_file() else []
        kept = [line for line in lines if line and int(line.split(",", 1)[0]) <= resume_step]
        atomic_write_text(self.path, "\n".join([",".join(self.columns), *kept]) + "\n")

    def append(self, *values) -> None:
        """One row: a value per column, in column order."""
        if len(values) != len(self.columns):
            raise ValueError(f"log row of {len(values)} values for {len(self.columns)} columns {self.columns}")
        row = ",".join(format(v, self.formats[c]) if c in self.formats else _fmt(v)
                       for c, v in zip(self.columns, values))
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(row + "\n")


def _fmt(value) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def plot_loss(run: str | os.PathLike) -> Path | None:
    """Draw ``RUN/loss.png`` from ``RUN/log.csv`` (raw loss and a running mean); None if nothing is logged."""
    rows = read_log(run)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = [r["step"] for r in rows], [r["loss"] for r in rows]
    window = max(1, len(losses) // 20)
    smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
              for i in range(len(losses))]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, losses, lw=0.8, alpha=0.4, label="loss")
    ax.plot(steps, smooth, lw=1.5, label=f"running mean ({window} steps)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(Path(run).name)
    ax.legend()
    fig.tight_layout()
    with atomic_path(Path(run) / PLOT_NAME) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(run) / PLOT_NAME
