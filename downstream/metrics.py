"""Classification metrics of Table 2: top-k accuracy, per-class and macro accuracy, confusion matrix.

Everything is computed from the whole split's clip scores at once (``scores: float [N, C]``, one row per clip,
the views of a clip already averaged; ``labels: int [N]``), never averaged over batches. Definitions match
torchmetrics' ``MulticlassAccuracy`` (``average="micro"`` for top-k, ``average="macro"`` for macro accuracy),
which the tests check: a clip is right at k when its label's score is among the k highest.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ophora.data.atomic import atomic_path

__all__ = ["topk_correct", "topk_accuracy", "per_class_accuracy", "macro_accuracy", "confusion_matrix",
           "summarise", "plot_confusion"]


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """bool [N]: whether each clip's label is among its ``k`` highest scores (k is capped at C)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"expected scores [N, C] and labels [N], got {scores.shape} and {labels.shape}")
    k = min(k, scores.shape[1])
    label_score = scores[np.arange(len(labels)), labels]
    # number of classes scoring strictly higher than the label: the label is in the top k when fewer than k do
    higher = (scores > label_score[:, None]).sum(axis=1)
    return higher < k


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of clips (micro average) whose label is among their ``k`` highest scores."""
    correct = topk_correct(scores, labels, k)
    return float(correct.mean()) if correct.size else float("nan")


def per_class_accuracy(scores: np.ndarray, labels: np.ndarray, num_classes: int, k: int = 1) -> np.ndarray:
    """float [num_classes]: top-k accuracy over the clips of each class; NaN for classes without clips."""
    correct = topk_correct(scores, labels, k)
    labels = np.asarray(labels, dtype=np.int64)
    hits = np.bincount(labels, weights=correct.astype(np.float64), minlength=num_classes)
    support = np.bincount(labels, minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / np.maximum(support, 1), np.nan)


def macro_accuracy(scores: np.ndarray, labels: np.ndarray, num_classes: int, k: int = 1) -> float:
    """Mean of :func:`per_class_accuracy` over the classes that have clips in this split."""
    per_class = per_class_accuracy(scores, labels, num_classes, k)
    present = per_class[~np.isnan(per_class)]
    return float(present.mean()) if present.size else float("nan")


def confusion_matrix(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [num_classes, num_classes]: row = true class, column = top-1 prediction."""
    predicted = np.asarray(scores).argmax(axis=1)
    flat = np.asarray(labels, dtype=np.int64) * num_classes + predicted
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def summarise(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """Every number of one split: top-1, top-5, macro top-1, per-class top-1 (None where absent), N."""
    per_class = per_class_accuracy(scores, labels, num_classes)
    return {
        "clips": int(len(labels)),
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5),
        "macro_top1": macro_accuracy(scores, labels, num_classes),
        "per_class_top1": [None if np.isnan(v) else float(v) for v in per_class],
        "support": np.bincount(np.asarray(labels, np.int64), minlength=num_classes).tolist(),
    }


def plot_confusion(matrix: np.ndarray, path: str | os.PathLike, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=np.float64), where=rows > 0)
    size = min(4 + 0.12 * len(matrix), 16)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, vmin=0, vmax=1, cmap="viridis")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path
