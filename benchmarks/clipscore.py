"""CLIPScore of generated videos against their prompts, with open_clip through ``benchmarks.detectors.clip``.

Protocol ``clipscore/open_clip`` (:class:`benchmarks.protocols.ClipScoreProtocol`): for each video, the mean
over k uniformly spaced frames of ``100 * cos(image embedding, text embedding)`` (embeddings L2-normalised
by the detector, the model's own image transform and tokenizer); for the set, the mean over videos clamped at
0 *after* averaging, as torchmetrics' ``CLIPScore`` (``max(mean, 0)``, not the mean of clamped scores).
Per-video scores are kept unclamped. Prompts longer than the text context are truncated by the tokenizer
and counted.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from benchmarks.features.extract import dist_info, gather_objects
from benchmarks.metrics import bootstrap_mean

__all__ = ["video_clip_scores", "ClipScores", "clipscore_result"]


def video_clip_scores(detector: Any, frames: np.ndarray | torch.Tensor, prompts: Sequence[str],
                      scale: float = 100.0) -> np.ndarray:
    """Per-video CLIPScore float64 [B]: frames uint8 [B, k, H, W, 3], one prompt per video.

    Each frame's score is ``scale * cos`` in float32 (as torchmetrics); the mean over the k frames in float64.
    """
    frames = torch.as_tensor(frames)
    if frames.ndim != 5 or len(frames) != len(prompts):
        raise ValueError(f"frames must be uint8 [B, k, H, W, 3] with one prompt per video; got "
                         f"{tuple(frames.shape)} and {len(prompts)} prompts")
    b, k = frames.shape[:2]
    images = detector.image_features(frames.reshape(b * k, *frames.shape[2:]).numpy(), batch_size=max(b * k, 1))
    texts = detector.text_features(list(prompts))  # [B, D]
    per_frame = scale * (images.reshape(b, k, -1) * texts[:, None, :]).sum(-1)  # float32 [B, k]
    return per_frame.double().mean(1).numpy()


class ClipScores:
    """Accumulates per-video CLIPScores of one set (a consumer for ``benchmarks.features.extract``).

    ``records[position] = {"score", "tokens", "truncated"}``; after :meth:`reduce`, every process's records.
    """

    def __init__(self, protocol: Any, detector: Any, prompts: Sequence[str | None]):
        self.protocol, self.detector, self.prompts = protocol, detector, list(prompts)
        self.records: dict[int, dict[str, Any]] = {}

    @property
    def videos(self) -> int:
        return len(self.records)

    def consume(self, positions: list[int], batch: torch.Tensor) -> None:
        prompts = [self.prompts[p] for p in positions]
        scores = video_clip_scores(self.detector, batch, prompts, self.protocol.scale)
        tokens = self.detector.token_counts(prompts)
        for position, score, count in zip(positions, scores, tokens):
            self.records[position] = {"score": float(score), "tokens": int(count),
                                      "truncated": bool(count > self.detector.context_length)}

    def reduce(self) -> None:
        if dist_info()[1] > 1:
            self.records = {k: v for part in gather_objects(self.records) for k, v in part.items()}

    def scores(self) -> np.ndarray:
        """Per-video scores float64 [N], ordered by video position."""
        return np.array([self.records[p]["score"] for p in sorted(self.records)], dtype=np.float64)


def clipscore_result(scores: np.ndarray, n_truncated: int, *, n_boot: int = 0, seed: int = 0,
                     level: float = 0.95) -> dict[str, Any]:
    """The set's CLIPScore ``max(mean, 0)`` with ``mean_unclamped``, N, truncation count and, with ``n_boot``,
    a percentile bootstrap interval over videos (ends clamped at 0 like the score)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return {"value": None, "n_fake": 0, "n_truncated": n_truncated, "error": "no video could be scored"}
    mean = float(scores.mean())
    result: dict[str, Any] = {"value": max(mean, 0.0), "mean_unclamped": mean, "n_fake": int(scores.size),
                              "n_truncated": int(n_truncated)}
    if n_boot and scores.size >= 2:
        boot = bootstrap_mean(scores, n_boot=n_boot, seed=seed, level=level)
        result["ci"] = {"low": max(boot["low"], 0.0), "high": max(boot["high"], 0.0), "level": level,
                        "method": "percentile bootstrap over videos of the unclamped mean, ends clamped at 0",
                        "n_boot": n_boot, "seed": seed}
    return result
