"""Table 2's statistics: each cell over its seeds (mean, std, 95% interval), and each "+ synthetic" row tested
against the source row on the same test clips.

Per (classifier, row, task, split, metric) and in percent:

- ``per_seed``, ``mean``, ``std`` (sample std, ddof 1; None for one seed) and ``ci95_seeds`` (Student-t interval
  of the mean over seeds; None for one seed);
- ``ci95_clips``: the 95% percentile interval of the seed-mean accuracy under a bootstrap over the clips (the
  only interval one seed can give);
- ``vs_source`` (rows with a generator): ``delta`` (this row minus the source row), a **paired bootstrap over the
  clips** (the same resampled clips for both rows; per-clip correctness averaged over the seeds both rows have;
  ``p`` = (1 + #{|d* - d| >= |d|}) / (B + 1), two-sided, the centred-bootstrap test of no difference) with the
  interval of ``delta``, and **McNemar's exact test** per seed on per-clip correctness (``b``: clips only the
  source row got right, ``c``: only this row; p = min(1, 2 * Binom(min(b, c); b + c, 1/2))).

Per-clip correctness comes from each classifier run's ``eval/<split>.npz`` (scores, labels, row ids, decode
flags): a clip counts when every run being compared decoded it. Top-k correct is
:func:`downstream.metrics.topk_correct`, the definition of the cells' own top-k.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

from downstream.metrics import topk_correct
from ophora.seeding import rng

__all__ = ["TEST_NAME", "seed_summary", "clip_correctness", "aligned", "paired_bootstrap", "mcnemar_exact",
           "clip_interval", "table_statistics"]

TEST_NAME = ("paired bootstrap over the clips of each split (two-sided, centred; per-clip correctness averaged over "
             "the seeds both rows have) and McNemar's exact test per seed")
TOPK = {"top1": 1, "top5": 5}


def seed_summary(values: Sequence[float], bounds: tuple[float, float] = (0.0, 100.0)) -> dict:
    """``{n, per_seed, mean, std, ci95_seeds}`` of one cell's values over its seeds (same units as ``values``).
    The t-interval is clipped to ``bounds`` (an accuracy in percent cannot leave [0, 100]); ``ci95_seeds_clipped``
    says whether it was."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    out = {"n": n, "per_seed": x.tolist(), "mean": float(x.mean()) if n else None, "std": None, "ci95_seeds": None}
    if n >= 2:
        std = float(x.std(ddof=1))
        half = float(scipy_stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        raw = [out["mean"] - half, out["mean"] + half]
        clipped = [min(max(end, bounds[0]), bounds[1]) for end in raw]
        out.update(std=std, ci95_seeds=clipped, ci95_seeds_clipped=clipped != raw)
    return out


def clip_correctness(run_dir: str | Path, split: str, k: int) -> dict[int, bool]:
    """Row id -> whether the run's top-``k`` prediction of that clip was right (decoded clips only)."""
    with np.load(Path(run_dir) / "eval" / f"{split}.npz") as saved:
        scores, labels, rows, ok = saved["scores"], saved["labels"], saved["rows"], saved["ok"].astype(bool)
    correct = topk_correct(scores, labels, k)
    return {int(r): bool(c) for r, c, good in zip(rows, correct, ok) if good}


def aligned(runs: Iterable[Mapping[int, bool]]) -> np.ndarray:
    """bool [runs, clips]: the clips every run scored, in row-id order."""
    runs = list(runs)
    common = sorted(set.intersection(*(set(r) for r in runs))) if runs else []
    return np.array([[r[i] for i in common] for r in runs], dtype=bool).reshape(len(runs), len(common))


def _resample_means(per_clip: Sequence[np.ndarray], resamples: int, seed: int, chunk: int = 500) -> np.ndarray:
    """Means of each ``per_clip`` float [N] array over the same bootstrap resamples of the N clips: [B, arrays]."""
    n = len(per_clip[0])
    generator = rng(seed, "table2-bootstrap", n)
    out = np.empty((resamples, len(per_clip)))
    stacked = np.stack(per_clip)  # [arrays, N]
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        counts = generator.multinomial(n, np.full(n, 1.0 / n), size=size)  # [size, N] clip multiplicities
        out[start:start + size] = counts @ stacked.T / n
    return out


def clip_interval(correct: np.ndarray, resamples: int, seed: int) -> list[float] | None:
    """95% percentile interval (percent) of the seed-mean accuracy over a bootstrap of the clips: ``correct``
    bool [seeds, clips]."""
    if correct.shape[1] == 0:
        return None
    means = _resample_means([100 * correct.mean(axis=0)], resamples, seed)[:, 0]
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def paired_bootstrap(source: np.ndarray, other: np.ndarray, resamples: int, seed: int) -> dict:
    """``other`` minus ``source`` accuracy (percent points) with its 95% interval and two-sided p-value under a
    paired bootstrap of the clips; each bool [seeds, clips], the same clips in the same order."""
    if source.shape[1] != other.shape[1]:
        raise ValueError(f"paired_bootstrap needs the same clips: {source.shape[1]} vs {other.shape[1]}")
    if source.shape[1] == 0:
        return {"delta": None, "ci95": None, "p": None, "clips": 0}
    a, b = 100 * source.mean(axis=0), 100 * other.mean(axis=0)
    delta = float(b.mean() - a.mean())
    boot = _resample_means([b - a], resamples, seed)[:, 0]
    extreme = int(np.sum(np.abs(boot - delta) >= abs(delta) - 1e-12))
    return {"delta": delta, "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "p": (1 + extreme) / (resamples + 1), "clips": int(source.shape[1]), "resamples": resamples}


def mcnemar_exact(source: np.ndarray, other: np.ndarray) -> dict:
    """McNemar's exact (binomial) test on paired per-clip correctness, bool [clips] each."""
    b = int(np.sum(source & ~other))
    c = int(np.sum(~source & other))
    p = 1.0 if b + c == 0 else min(1.0, 2 * float(scipy_stats.binom.cdf(min(b, c), b + c, 0.5)))
    return {"b_source_only": b, "c_other_only": c, "p": p}


def table_statistics(cells: Sequence[Mapping], rows: Sequence, classifiers: Sequence, tasks: Sequence[str],
                     splits: Sequence[str], resamples: int, seed: int, source: str | None = None) -> dict:
    """Every cell's summary and, for rows with a generator, its tests against the source row (see the module
    docstring); ``cells`` as ``run_table2`` records them (``status``, ``run_dir``, ``seed``)."""
    source = source or next((r.label for r in rows if r.generator is None), None)
    entries = []
    for classifier in classifiers:
        for task in tasks:
            runs = {r.label: {c["seed"]: c["run_dir"] for c in cells if c["status"] == "ok" and
                              (c["row"], c["classifier"], c["task"]) == (r.label, classifier.label, task)}
                    for r in rows}
            for split in splits:
                for metric, k in TOPK.items():
                    correct = {label: {s: clip_correctness(d, split, k) for s, d in by_seed.items()}
                               for label, by_seed in runs.items()}
                    for row in rows:
                        entries.append(_entry(row, classifier.label, task, split, metric, cells, correct, source,
                                              resamples, seed))
    return {"test": TEST_NAME, "source_row": source, "bootstrap_resamples": resamples, "bootstrap_seed": seed,
            "units": "percent", "cells": entries}


def _entry(row, classifier, task, split, metric, cells, correct, source, resamples, seed) -> dict:
    mine = correct[row.label]
    values = [100 * c["results"]["splits"][split][metric] for c in cells if c["status"] == "ok" and
              (c["row"], c["classifier"], c["task"]) == (row.label, classifier, task)]
    entry = {"classifier": classifier, "row": row.label, "task": task, "split": split, "metric": metric,
             "seeds": sorted(mine), **seed_summary(values)}
    entry["ci95_clips"] = clip_interval(aligned(mine.values()), resamples, seed) if mine else None
    if row.generator is None or source is None or source == row.label or not mine or not correct.get(source):
        return entry
    theirs = correct[source]
    shared = sorted(set(mine) & set(theirs))
    both = aligned([theirs[s] for s in shared] + [mine[s] for s in shared])
    half = len(shared)
    entry["vs_source"] = {"source_row": source, "seeds": shared,
                          **paired_bootstrap(both[:half], both[half:], resamples, seed),
                          "mcnemar": [{"seed": s, **mcnemar_exact(both[i], both[half + i])}
                                      for i, s in enumerate(shared)]}
    return entry
