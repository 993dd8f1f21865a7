"""Dynamics filter: scene cuts (PySceneDetect's ContentDetector) and motion energy, on downscaled frames.

Each clip is opened once (:class:`ophora.data.video.FrameScan`: metadata and decoding from one container),
decoded with the worker's share of the cores (``set_decode_threads``: cores // workers FFmpeg slice threads; one
thread each when there are as many workers as cores), skipping the frames no other frame is predicted from
(non-reference B-frames, about half of an x264 clip's frames) and the in-loop deblocking
filter, and downscaled while converting, bilinearly as PySceneDetect itself downscales (the default of
``SceneManager.interpolation``; cheaper than an area filter). The detector gets these
frames directly, instead of ``scenedetect.detect`` decoding every frame at full size. A cut still shows between
the decoded neighbours of a skipped frame; cut frame numbers and ``min_scene_len`` stay in frames of the clip.

A cut means the clip splices two scenes; a median motion energy near zero means a frozen or static clip (a still
image, a paused recording). Both have abnormal temporal dynamics for a generation model and are dropped.
"""
from __future__ import annotations

import os
from typing import Iterable

import cv2
import numpy as np
from scenedetect import FrameTimecode
from scenedetect.detector import FlashFilter
from scenedetect.detectors import ContentDetector

from ophora.curation.config import DynamicsConfig
from ophora.curation.stage import ClipItem, Stage, Verdict
from ophora.data.video import FrameScan, VideoDecodeError, VideoInfo

__all__ = ["DynamicsStage", "analysis_size", "dynamics_scores"]


def analysis_size(info: VideoInfo, height: int) -> tuple[int, int]:
    """(height, width) at most ``height`` pixels high, aspect kept, both even (never upscales)."""
    h = min(height, info.height)
    w = max(2, int(round(info.width * h / info.height)))
    return max(2, h // 2 * 2), w // 2 * 2


def dynamics_scores(indexed_frames: Iterable[tuple[int, np.ndarray]], fps: float, config: DynamicsConfig) -> dict:
    """Cuts and motion energy of a clip at ``fps`` from ``(frame index, uint8 [H, W, 3] RGB)`` pairs.

    Indices increase and may have gaps (skipped frames); only frames with index below ``config.max_frames``
    are analysed. Returns frames (count analysed), frames_covered (last index + 1), cuts (count), cut_frames
    (frame indices), cuts_per_second (over the frames covered), motion (median over consecutive analysed pairs
    of the mean absolute grey-level difference per frame of distance, grey = mean of R, G, B, 0..255) and
    motion_max.
    """
    detector = ContentDetector(threshold=config.threshold, min_scene_len=config.min_scene_len,
                               filter_mode=FlashFilter.Mode.SUPPRESS)
    cuts, energy, previous, last, count = [], [], None, -1, 0
    for index, frame in indexed_frames:
        if index >= config.max_frames:
            break
        cuts += detector.process_frame(FrameTimecode(index, fps), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        grey = _grey_sum(frame)
        if previous is not None:
            energy.append(cv2.norm(grey, previous, cv2.NORM_L1) / (3 * grey.size * max(index - last, 1)))
        previous, last, count = grey, index, count + 1
    seconds = max(last + 1, 1) / fps
    return {"frames": count, "frames_covered": last + 1, "cuts": len(cuts),
            "cut_frames": [int(c.frame_num) for c in cuts], "cuts_per_second": round(len(cuts) / seconds, 4),
            "motion": round(float(np.median(energy)), 4) if energy else 0.0,
            "motion_max": round(max(energy), 4) if energy else 0.0}


def _grey_sum(frame: np.ndarray) -> np.ndarray:
    """R + G + B of a uint8 [H, W, 3] frame as uint16 [H, W] (3x the grey level, exact integers)."""
    return frame[..., 0].astype(np.uint16) + frame[..., 1] + frame[..., 2]


def set_decode_threads(workers: int) -> int:
    """Give each of ``workers`` processes its share of the cores for decoding (at least one thread): one worker
    decodes with every core, N workers on N cores decode single-threaded. Returns the threads per worker."""
    DynamicsStage.decode_threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    return DynamicsStage.decode_threads


class DynamicsStage(Stage):
    """Drops clips with more than ``max_cuts`` cuts, and frozen/static clips (motion below ``min_motion``).

    Scores: see :func:`dynamics_scores`, plus the analysis size ``analysis_hw`` [H, W] in pixels. ``DECODE``
    holds the :class:`~ophora.data.video.FrameScan` settings (see the module docstring).
    """

    name = "dynamics"
    algorithm = 3  # v3: bilinear downscale as PySceneDetect's (v2: area filter; v1 decoded every frame)
    DECODE = {"skip_nonref": True, "skip_deblocking": True, "shrink": "linear"}
    decode_threads = 1  # FFmpeg threads per check; the executor sets cores // workers (set_decode_threads)

    def __init__(self, config: DynamicsConfig):
        super().__init__(config)

    def check(self, item: ClipItem) -> Verdict:
        try:
            with FrameScan(item.path, threads=DynamicsStage.decode_threads, **self.DECODE) as scan:
                size = analysis_size(scan.info, self.config.analysis_height)
                scores = dynamics_scores(scan.frames(size), scan.info.fps, self.config)
        except VideoDecodeError as err:
            return self.verdict(False, f"unreadable video: {err.reason}", error=True)
        scores["analysis_hw"] = list(size)
        if scores["frames"] < 2:
            return self.verdict(False, f"too short to judge its dynamics: {scores['frames']} frame(s)", scores)
        if scores["cuts"] > self.config.max_cuts:
            return self.verdict(False, f"scene cut(s) at frame(s) {scores['cut_frames']} "
                                       f"({scores['cuts_per_second']:.2f} cuts/s)", scores)
        if scores["motion"] < self.config.min_motion:
            return self.verdict(False, f"frozen or static: median motion {scores['motion']:.3f} grey levels "
                                       f"per frame < {self.config.min_motion}", scores)
        return self.verdict(True, "ok", scores)
