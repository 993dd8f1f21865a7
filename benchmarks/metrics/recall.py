"""Text-to-video retrieval recall@k of a generated set: does each prompt find its own videos among the set's?

``recall/ophsim-surgical`` (version 2): every video's clip (16 frames from its middle) and every prompt are
embedded by the surgical dual encoder (:mod:`benchmarks.detectors.surgical`). Each generated video is one query:
its own prompt searches the set's videos, and the video's rank is 1 + the number of videos generated from *other*
prompts whose cosine similarity to the prompt is at least the video's own (ties count against it; the other
videos of the same prompt are equally relevant and left out). recall@k is the fraction of videos of rank <= k,
for k = 1 and 5; ``value`` is recall@1. So a video that shows something other than its prompt is a miss even
when another video of the same prompt is right (version 1 ranked the distinct prompts by their best video, which
such a video could not lower). It does not depend on the score's scale (unlike CLIPScore) but does on the number
of videos N and of distinct prompts: compare sets of equal N. Interval: percentile bootstrap over videos.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from benchmarks.detectors.surgical import dual_embeddings
from benchmarks.features.extract import dist_info, gather_objects
from benchmarks.metrics.base import Metric
from benchmarks.metrics.bootstrap import bootstrap_mean
from benchmarks.metrics.clipscore import DualEncoderClips
from ophora.seeding import derive_seed

__all__ = ["RecallProtocol", "EmbeddingState", "Recall", "query_ranks", "video_ranks", "recall_at"]


@dataclass(frozen=True)
class RecallProtocol(DualEncoderClips):
    """Text-to-video recall@k within the generated set with the surgical dual encoder (shipped weights)."""

    shipped_weights: ClassVar[bool] = True

    name: str = "recall/ophsim-surgical"
    version: str = "2"
    metric: str = "recall"
    detector: str = "ophsim-surgical:dual (as clipscore/ophsim-surgical)"
    preprocess: str = "x / 255, bilinear with antialiasing to 64x64 (benchmarks.detectors.surgical.to_input)"
    frames: str = "16 consecutive frames from the middle of the video (offset (T - 16) // 2; a shorter video " \
                  "has its last frame repeated)"
    clip_length: int = 16
    ks: str = "1,5"  # the k of recall@k, comma-separated; the first is ``value``
    queries: str = "one per generated video: its own prompt"
    gallery: str = "every generated video of the set (N), less the others generated from the same prompt"
    rank: str = "1 + number of videos of other prompts with cosine similarity to the prompt >= the video's own " \
                "(ties count against it)"
    value: str = "recall@1 (fraction of videos of rank 1); recall_at holds every k"
    interval: str = "percentile bootstrap over videos (queries), gallery fixed"
    comparable: str = "depends on the gallery size N and the detector: compare sets of equal N"

    def __post_init__(self) -> None:
        if not self.k_values or min(self.k_values) < 1:
            raise ValueError(f"{self.name}: ks must list positive integers such as '1,5', got {self.ks!r}")

    @property
    def k_values(self) -> tuple[int, ...]:
        return tuple(int(k) for k in self.ks.split(",") if k.strip())


def query_ranks(similarity: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Rank (1 = first) of each query's best relevant item: similarity float [Q, N], relevant bool [Q, N] with at
    least one True per row -> int64 [Q]; irrelevant items tied with the best relevant one rank before it."""
    similarity, relevant = np.asarray(similarity, np.float64), np.asarray(relevant, bool)
    if not relevant.any(1).all():
        raise ValueError("every query needs at least one relevant item")
    best = np.where(relevant, similarity, -np.inf).max(1, keepdims=True)
    return 1 + ((similarity >= best) & ~relevant).sum(1)


def video_ranks(similarity: np.ndarray, same_prompt: np.ndarray) -> np.ndarray:
    """Rank (1 = first) of each video for its own prompt: similarity float [N, N] (row i: video i's prompt
    against every video), same_prompt bool [N, N] (videos i and j share a prompt; True on the diagonal) -> int64
    [N]: 1 + the videos of other prompts scoring at least video i's own similarity."""
    similarity, same_prompt = np.asarray(similarity, np.float64), np.asarray(same_prompt, bool)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1] or same_prompt.shape != similarity.shape:
        raise ValueError(f"similarity and same_prompt must be [N, N] alike; got {similarity.shape} and "
                         f"{same_prompt.shape}")
    own = np.diag(similarity)[:, None]
    return 1 + ((similarity >= own) & ~same_prompt).sum(1)


def recall_at(ranks: np.ndarray, k: int) -> float:
    """Fraction of queries whose rank is at most ``k``."""
    return float((np.asarray(ranks) <= k).mean())


class EmbeddingState:
    """Video and prompt embeddings of one generated set by video position (``records[p] = (video, text)``)."""

    def __init__(self, keys: Sequence[str], prompts: Sequence[str | None]):
        self.keys, self.prompts = list(keys), list(prompts)
        self.records: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def videos(self) -> int:
        return len(self.records)

    def update(self, positions: Sequence[int], videos: torch.Tensor, texts: torch.Tensor) -> "EmbeddingState":
        for p, v, t in zip(positions, videos.numpy(), texts.numpy()):
            self.records[int(p)] = (v.astype(np.float64), t.astype(np.float64))
        return self

    def merge(self, other: "EmbeddingState") -> "EmbeddingState":
        self.records.update(other.records)
        return self

    def all_reduce(self) -> None:
        """Every process's records on every process."""
        if dist_info()[1] > 1:
            self.records = {k: v for part in gather_objects(self.records) for k, v in part.items()}

    def pairs(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """(video positions, similarity [N, N] of video i's prompt to video j, same prompt [N, N])."""
        positions = sorted(self.records)
        videos = np.stack([self.records[p][0] for p in positions])
        texts = np.stack([self.records[p][1] for p in positions])
        prompts = [self.prompts[p] for p in positions]
        same = np.array([[a == b for b in prompts] for a in prompts])
        return positions, texts @ videos.T, same


class Recall(Metric):
    """Text-to-video retrieval recall@k within the generated set (higher is better; no real set)."""

    name = "recall"
    display_name = "R@1"
    higher_is_better = True
    protocols = (RecallProtocol(),)
    result_fields = ("value", "recall_at", "n_fake", "n_queries", "n_prompts", "ci", "error")
    needs_real = False
    needs_prompts = True

    def detector_weights(self, cfg: Any) -> str | None:
        return self.protocol.weights_entry(cfg)

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        return self.protocol.load_detector(weights, cfg)

    def new_state(self, *, video_set: Any = None, detector: Any = None, rows_path: Any = None) -> EmbeddingState:
        return EmbeddingState([item.key for item in video_set.items], [item.prompt for item in video_set.items])

    def update(self, state: EmbeddingState, detector: Any, positions: list[int], batch: torch.Tensor) -> None:
        state.update(positions, *dual_embeddings(detector, batch, [state.prompts[p] for p in positions]))

    def compute(self, real: Any, fake: EmbeddingState, *, n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
        """recall@k for every k of the protocol (``value``: the first) with intervals over queries."""
        if fake.videos < 2:
            return {"value": None, "n_fake": fake.videos, "error": "needs at least 2 videos to retrieve among"}
        positions, similarity, same = fake.pairs()
        ranks = video_ranks(similarity, same)
        at = {}
        for k in self.protocol.k_values:
            hits = (ranks <= k).astype(np.float64)
            at[str(k)] = {"value": recall_at(ranks, k)}
            if n_boot and len(hits) >= 2:
                boot = bootstrap_mean(hits, n_boot=n_boot, seed=derive_seed(seed, "bootstrap", self.name, k))
                at[str(k)]["ci"] = {"low": boot["low"], "high": boot["high"], "level": boot["level"],
                                    "method": "percentile bootstrap over queries (gallery fixed)", "n_boot": n_boot}
        first = at[str(self.protocol.k_values[0])]
        result = {"value": first["value"], "recall_at": at, "n_fake": fake.videos, "n_queries": len(positions),
                  "n_prompts": len({fake.prompts[p] for p in positions})}
        if "ci" in first:
            result["ci"] = first["ci"]
        return result

    def per_video(self, fake: EmbeddingState) -> list[dict[str, Any]]:
        """path, prompt and the rank of the video for its own prompt (:func:`video_ranks`)."""
        if fake.videos < 1:
            return []
        positions, similarity, same = fake.pairs()
        ranks = video_ranks(similarity, same)
        return [{"path": fake.keys[p], "prompt": fake.prompts[p], "rank": int(ranks[j]),
                 "similarity": float(similarity[j, j])} for j, p in enumerate(positions)]
