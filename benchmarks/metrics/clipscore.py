"""CLIPScore of generated videos against their prompts, with open_clip through ``benchmarks.detectors.clip``.

``clipscore/open_clip``: for each video, the mean over k uniformly spaced frames of ``100 * cos(image
embedding, text embedding)`` (embeddings L2-normalised by the detector, the model's own image transform and
tokenizer); for the set, the mean over videos clamped at 0 *after* averaging, as torchmetrics' ``CLIPScore``
(``max(mean, 0)``, not the mean of clamped scores). Per-video scores are kept unclamped and written into the
result. Prompts longer than the text context are truncated by the tokenizer and counted.

``clipscore/ophsim-surgical``: the same per-video score and set aggregate with the surgical dual encoder
(:mod:`benchmarks.detectors.surgical`, trained contrastively on OphSim instruction-clip pairs; shipped in the
package): ``100 * cos(video embedding, text embedding)`` of one 16-frame clip from the middle of each video
(x/255 resized to 64x64) and a bag-of-words text embedding (no truncation). Not comparable with any
published CLIPScore.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from benchmarks.detectors.surgical import dual_embeddings, load_surgical, middle_clip, to_input
from benchmarks.features.extract import dist_info, gather_objects
from benchmarks.metrics.base import Metric, ShortVideoError
from benchmarks.metrics.bootstrap import bootstrap_mean
from ophora.data.video import Uniform
from ophora.seeding import derive_seed

__all__ = ["ClipScoreProtocol", "SurgicalClipScoreProtocol", "ClipState", "CLIPScore", "video_clip_scores",
           "clipscore_result"]


@dataclass(frozen=True)
class ClipScoreProtocol:
    """CLIPScore of generated videos against their prompts with an open_clip model."""

    name: str = "clipscore/open_clip"
    version: str = "1"
    metric: str = "clipscore"
    model: str = "ViT-L-14"
    pretrained_tag: str = "openai"
    preprocess: str = "open_clip val transform on PIL (bicubic shortest-side resize, centre crop, CLIP " \
                      "mean/std); embeddings L2-normalised"
    frames: str = "uniform"
    frames_per_video: int = 8
    per_video: str = "mean over the frames of 100 * cos(image embedding, text embedding)"
    aggregate: str = "max(mean over videos, 0): clamped at 0 after averaging (torchmetrics CLIPScore)"
    scale: float = 100.0
    truncation: str = "prompts longer than the text context (77 tokens incl. start/end) are truncated by " \
                      "the tokenizer and counted (n_truncated)"

    def __post_init__(self) -> None:
        if self.frames_per_video < 1:
            raise ValueError(f"{self.name}: frames_per_video must be at least 1, got {self.frames_per_video}")

    def frame_indices(self, num_frames: int, role: str, seed: int, key: str) -> np.ndarray:
        if num_frames < 1:
            raise ShortVideoError("has no frames")
        return Uniform(self.frames_per_video).indices(num_frames, 1.0)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [k, H, W, 3] unchanged: the open_clip transform runs on PIL images in the main process."""
        return torch.from_numpy(frames)

    def video_scores(self, detector: Any, batch: torch.Tensor, prompts: Sequence[str]) -> np.ndarray:
        """Per-video scores float64 [B] of a prepared batch (uint8 [B, k, H, W, 3]) against its prompts."""
        return video_clip_scores(detector, batch, prompts, self.scale)

    def weights_entry(self, cfg: Any) -> str | None:
        return f"open_clip:{self.model}/{self.pretrained_tag}"

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        from benchmarks.detectors.clip import load_clip  # open_clip: imported when scoring

        detector = load_clip(self.model, weights, cfg.detector_seed, tag=self.pretrained_tag)
        return detector, detector.info


class DualEncoderClips:
    """What the protocols on the surgical dual encoder share (``clipscore/ophsim-surgical``,
    ``recall/ophsim-surgical``): one ``clip_length``-frame clip from the middle of each video, prepared as the
    encoder's input, and the shipped ``ophsim-surgical:dual`` weights."""

    clip_length: int
    name: str

    def frame_indices(self, num_frames: int, role: str, seed: int, key: str) -> np.ndarray:
        if num_frames < 1:
            raise ShortVideoError("has no frames")
        return middle_clip(num_frames, self.clip_length)

    def prepare(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [16, H, W, 3] -> float32 [16, 3, 64, 64] in [0, 1] (worker side)."""
        return to_input(frames)

    def weights_entry(self, cfg: Any) -> str | None:
        return "ophsim-surgical:dual"

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        return load_surgical("dual", weights, cfg.detector_seed, self.name)


@dataclass(frozen=True)
class SurgicalClipScoreProtocol(DualEncoderClips):
    """CLIPScore with the surgical dual encoder (shipped weights): one 16-frame clip per video."""

    shipped_weights: ClassVar[bool] = True

    name: str = "clipscore/ophsim-surgical"
    version: str = "1"
    metric: str = "clipscore"
    detector: str = "ophsim-surgical:dual: benchmarks.detectors.surgical.DualEncoder ((2+1)D video tower, " \
                    "bag-of-words text tower over the OphSim instruction vocabulary, 64-d), trained contrastively " \
                    "on OphSim worlds 7001-7004 (python -m benchmarks.detectors.train_surgical)"
    preprocess: str = "x / 255, bilinear with antialiasing to 64x64 (benchmarks.detectors.surgical.to_input), in " \
                      "the DataLoader workers; embeddings L2-normalised"
    frames: str = "16 consecutive frames from the middle of the video (offset (T - 16) // 2; a shorter video " \
                  "has its last frame repeated)"
    clip_length: int = 16
    per_video: str = "100 * cos(video embedding of the clip, text embedding of the prompt)"
    aggregate: str = "max(mean over videos, 0): clamped at 0 after averaging (torchmetrics CLIPScore)"
    scale: float = 100.0
    truncation: str = "none: the text tower averages every word's embedding (words outside its vocabulary share " \
                      "one unknown embedding)"
    comparable: str = "not comparable with any published CLIPScore (a surgical-domain detector)"

    def video_scores(self, detector: Any, batch: torch.Tensor, prompts: Sequence[str]) -> np.ndarray:
        """Per-video scores float64 [B] of clips [B, 16, 3, 64, 64] against their prompts."""
        videos, texts = dual_embeddings(detector, batch, prompts)
        return (self.scale * (videos * texts).sum(-1)).double().numpy()


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


def clipscore_result(scores: np.ndarray, n_truncated: int, *, n_boot: int = 0, seed: int = 0,
                     level: float = 0.95) -> dict[str, Any]:
    """The set's CLIPScore ``max(mean, 0)`` of per-video scores float64 [N] with ``mean_unclamped``, N, the
    truncation count and, with ``n_boot``, a percentile bootstrap interval over videos (ends clamped at 0)."""
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


class ClipState:
    """Per-video CLIPScores of one generated set: ``records[position] = {"score", "tokens", "truncated"}``.

    ``keys`` and ``prompts``: each video's path relative to its set and its prompt, by position;
    ``context_length``: the text encoder's context in tokens (longer prompts are truncated).
    """

    def __init__(self, keys: Sequence[str], prompts: Sequence[str | None], context_length: int):
        self.keys, self.prompts, self.context_length = list(keys), list(prompts), int(context_length)
        self.records: dict[int, dict[str, Any]] = {}

    @property
    def videos(self) -> int:
        return len(self.records)

    def update(self, positions: Sequence[int], scores: Sequence[float], tokens: Sequence[int]) -> "ClipState":
        """Add the scores of the videos at ``positions`` and their prompts' token counts."""
        for position, score, count in zip(positions, scores, tokens):
            self.records[int(position)] = {"score": float(score), "tokens": int(count),
                                           "truncated": bool(count > self.context_length)}
        return self

    def merge(self, other: "ClipState") -> "ClipState":
        self.records.update(other.records)
        return self

    def all_reduce(self) -> None:
        """Every process's records on every process."""
        if dist_info()[1] > 1:
            self.records = {k: v for part in gather_objects(self.records) for k, v in part.items()}

    def scores(self) -> np.ndarray:
        """Per-video scores float64 [N], ordered by video position."""
        return np.array([self.records[p]["score"] for p in sorted(self.records)], dtype=np.float64)


class CLIPScore(Metric):
    """Text-video agreement of the generated videos with their prompts (higher is better; no real set)."""

    name = "clipscore"
    display_name = "CLIPScore"
    higher_is_better = True
    protocols = (ClipScoreProtocol(), SurgicalClipScoreProtocol())
    result_fields = ("value", "mean_unclamped", "n_fake", "n_truncated", "error", "ci", "context_length")
    needs_real = False
    needs_prompts = True

    @classmethod
    def options(cls, cfg: Any) -> dict[str, Any]:
        """``cfg.clip_model``: the open_clip model; ``cfg.clip_frames``: frames per video (None: the default).
        Neither applies to clipscore/ophsim-surgical, which has no such fields (:func:`benchmarks.metrics.build`)."""
        changes: dict[str, Any] = {"model": cfg.clip_model}
        if cfg.clip_frames is not None:
            changes["frames_per_video"] = int(cfg.clip_frames)
        return changes

    def detector_weights(self, cfg: Any) -> str | None:
        return self.protocol.weights_entry(cfg)

    def load_detector(self, weights: Any, cfg: Any) -> tuple[Any, Any]:
        return self.protocol.load_detector(weights, cfg)

    def new_state(self, *, video_set: Any = None, detector: Any = None, rows_path: Any = None) -> ClipState:
        return ClipState([item.key for item in video_set.items], [item.prompt for item in video_set.items],
                         detector.context_length)

    def update(self, state: ClipState, detector: Any, positions: list[int], batch: torch.Tensor) -> None:
        prompts = [state.prompts[p] for p in positions]
        state.update(positions, self.protocol.video_scores(detector, batch, prompts), detector.token_counts(prompts))

    def compute(self, real: Any, fake: ClipState, *, n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
        """The set's score (see :func:`clipscore_result`) and the text context; ``real`` is not used."""
        truncated = sum(r["truncated"] for r in fake.records.values())
        result = clipscore_result(fake.scores(), truncated, n_boot=n_boot,
                                  seed=derive_seed(seed, "bootstrap", self.name))
        result["context_length"] = fake.context_length
        return result

    def per_video(self, fake: ClipState) -> list[dict[str, Any]]:
        """path (relative to the set), prompt, score (unclamped), tokens, truncated; by video position."""
        return [{"path": fake.keys[p], "prompt": fake.prompts[p], **fake.records[p]} for p in sorted(fake.records)]
