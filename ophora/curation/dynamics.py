"""Dynamics filter: scene cuts (PySceneDetect's ContentDetector) and motion energy, on downscaled frames.

Frames are decoded once, already downscaled by FFmpeg while converting (``ophora.data.video.iter_frames``), and
fed to the detector directly, instead of ``scenedetect.detect`` decoding at full size. A cut means the clip
splices two scenes; a median motion energy near zero means a frozen or static clip (a still image, a paused
recording). Both have abnormal temporal dynamics for a generation model and are dropped.
"""
from __future__ import annotations

import numpy as np
from scenedetect import FrameTimecode
from scenedetect.detector import FlashFilter
from scenedetect.detectors import ContentDetector

from ophora.curation.config import DynamicsConfig
from ophora.curation.stage import ClipItem, Stage, Verdict
from ophora.data.video import VideoDecodeError, VideoInfo, iter_frames, probe

__all__ = ["DynamicsStage", "analysis_size", "dynamics_scores"]


def analysis_size(info: VideoInfo, height: int) -> tuple[int, int]:
    """(height, width) at most ``height`` pixels high, aspect kept, both even (never upscales)."""
    h = min(height, info.height)
    w = max(2, int(round(info.width * h / info.height)))
    return max(2, h // 2 * 2), w // 2 * 2


def dynamics_scores(frames, fps: float, config: DynamicsConfig) -> dict:
    """Cuts and motion energy of ``frames`` (an iterable of uint8 [H, W, 3] RGB) at ``fps``.

    Returns cuts (count), cut_frames (frame indices), cuts_per_second, motion (median over consecutive frame
    pairs of the mean absolute grey-level difference, 0..255), motion_max and frames (count analysed).
    """
    detector = ContentDetector(threshold=config.threshold, min_scene_len=config.min_scene_len,
                               filter_mode=FlashFilter.Mode.SUPPRESS)
    cuts, energy, previous, count = [], [], None, 0
    for count, frame in enumerate(frames, start=1):
        if count > config.max_frames:
            count -= 1
            break
        cuts += detector.process_frame(FrameTimecode(count - 1, fps), np.ascontiguousarray(frame[..., ::-1]))
        grey = frame.mean(axis=2, dtype=np.float32)
        if previous is not None:
            energy.append(float(np.abs(grey - previous).mean()))
        previous = grey
    seconds = max(count, 1) / fps
    return {"frames": count, "cuts": len(cuts), "cut_frames": [int(c.frame_num) for c in cuts],
            "cuts_per_second": round(len(cuts) / seconds, 4),
            "motion": round(float(np.median(energy)), 4) if energy else 0.0,
            "motion_max": round(max(energy), 4) if energy else 0.0}


class DynamicsStage(Stage):
    """Drops clips with more than ``max_cuts`` cuts, and frozen/static clips (motion below ``min_motion``).

    Scores: see :func:`dynamics_scores`, plus the analysis size ``analysis_hw`` [H, W] in pixels.
    """

    name = "dynamics"

    def __init__(self, config: DynamicsConfig):
        super().__init__(config)

    def check(self, item: ClipItem) -> Verdict:
        try:
            info = item.info or probe(item.path)
            size = analysis_size(info, self.config.analysis_height)
            scores = dynamics_scores(iter_frames(item.path, size=size), info.fps, self.config)
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
                                       f"< {self.config.min_motion}", scores)
        return self.verdict(True, "ok", scores)
