"""The frame-selection vocabulary shared by every frame reader (:mod:`ophora.data.video` for video files,
:mod:`ophora.data.frame_folders` for folders of frame images): the decode error, container metadata, which
frames to keep (:class:`FrameSelection` and its kinds), time windows and the analysis-size downscaling filters.

Frame indices are positions in presentation order at the stream's nominal frame rate: frame ``i`` is the
frame shown at ``i / fps`` seconds after the stream starts.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["VideoDecodeError", "VideoInfo", "FrameSelection", "AllFrames", "Consecutive", "Strided", "Uniform",
           "Resample", "SHRINK_FILTERS", "window_frames"]


class VideoDecodeError(RuntimeError):
    """A video could not be read. ``path`` is the file, ``reason`` what went wrong."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """Container metadata of a video's first video stream (read without decoding frames).

    ``fps`` is the nominal frame rate in frames per second, ``duration`` in seconds, ``num_frames`` the
    number of frames (from the container header, or by counting packets when the header lacks it).
    """

    path: Path
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    codec: str


# ---------------------------------------------------------------------------------------------------------
# Frame selections: each maps (number of frames, fps) to the sorted frame indices to keep.


class FrameSelection:
    """Which frames of a clip to decode. Subclasses implement :meth:`indices`."""

    def indices(self, num_frames: int, fps: float) -> np.ndarray:
        """Frame indices (int64, non-decreasing, may repeat) into a clip of ``num_frames`` frames at ``fps``."""
        raise NotImplementedError


@dataclass(frozen=True)
class AllFrames(FrameSelection):
    """Every frame."""

    def indices(self, num_frames: int, fps: float) -> np.ndarray:
        return np.arange(num_frames, dtype=np.int64)


@dataclass(frozen=True)
class Consecutive(FrameSelection):
    """``k`` consecutive frames starting at frame ``offset`` (the clip must be long enough)."""

    k: int
    offset: int = 0

    def indices(self, num_frames: int, fps: float) -> np.ndarray:
        if self.k < 1 or self.offset < 0:
            raise ValueError(f"Consecutive needs k >= 1 and offset >= 0, got k={self.k}, offset={self.offset}")
        if self.offset + self.k > num_frames:
            raise ValueError(f"Consecutive(k={self.k}, offset={self.offset}) needs {self.offset + self.k} frames, "
                             f"the clip has {num_frames}")
        return np.arange(self.offset, self.offset + self.k, dtype=np.int64)


@dataclass(frozen=True)
class Strided(FrameSelection):
    """``frames`` frames ``stride`` source frames apart (video models' clip sampling), starting ``position`` of the
    way into the clip: 0 at the first frame, 1 as late as the span fits. A clip shorter than the span raises, or
    with ``repeat_last`` is read from its first frame with the last frame repeated (PySlowFast's rule)."""

    frames: int
    stride: int = 1
    position: float = 0.0
    repeat_last: bool = False

    def indices(self, num_frames: int, fps: float) -> np.ndarray:
        if num_frames < 1:
            raise ValueError("the clip has no frame")
        span = (self.frames - 1) * self.stride + 1
        if num_frames < span and not self.repeat_last:
            raise ValueError(f"clip has {num_frames} frames; {self.frames} frames every {self.stride} need {span}")
        start = int(round(min(max(self.position, 0.0), 1.0) * max(num_frames - span, 0)))
        return np.minimum(start + self.stride * np.arange(self.frames, dtype=np.int64), num_frames - 1)


@dataclass(frozen=True)
class Uniform(FrameSelection):
    """``k`` frames spaced uniformly from the first to the last frame (the middle one when ``k`` is 1).

    Repeats frames when ``k`` exceeds the clip length.
    """

    k: int

    def indices(self, num_frames: int, fps: float) -> np.ndarray:
        if self.k < 1:
            raise ValueError(f"Uniform needs k >= 1, got {self.k}")
        if num_frames < 1:
            raise ValueError("Uniform needs a clip with at least one frame")
        if self.k == 1:
            return np.array([(num_frames - 1) // 2], np.int64)
        return np.round(np.linspace(0, num_frames - 1, self.k)).astype(np.int64)


@dataclass(frozen=True)
class Resample(FrameSelection):
    """Frames resampled to ``fps`` frames per second (nearest earlier source frame), at most ``max_frames``."""

    fps: float
    max_frames: int | None = None

    def indices(self, num_frames: int, fps: float) -> np.ndarray:
        if self.fps <= 0 or fps <= 0:
            raise ValueError(f"Resample needs positive rates, got target {self.fps} fps, source {fps} fps")
        count = int(math.floor(num_frames * self.fps / fps + 1e-9))
        if self.max_frames is not None:
            count = min(count, self.max_frames)
        times = np.arange(count) / self.fps
        return np.minimum(np.floor(times * fps + 1e-6).astype(np.int64), num_frames - 1)


SHRINK_FILTERS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}
"""Downscaling filters of the analysis-size paths (``size=``): ``area`` averages every source pixel (previews,
the default); ``linear`` interpolates between the 2x2 source pixels nearest each output pixel, as PySceneDetect
downscales before detecting, and is cheaper (it aliases fine texture; figures in ``results/perf/``)."""


def window_frames(info: VideoInfo, window: tuple[float, float] | None, path: Path) -> tuple[int, int]:
    """Frame range [first, stop) covered by a (start, end) window in seconds."""
    if window is None:
        return 0, info.num_frames
    start, end = window
    if not 0 <= start < end:
        raise ValueError(f"{path}: window must satisfy 0 <= start < end, got ({start}, {end})")
    first = int(math.ceil(start * info.fps - 1e-6))
    stop = min(int(math.ceil(end * info.fps - 1e-6)), info.num_frames)
    if first >= stop:
        raise ValueError(f"{path}: window ({start}, {end}) s holds no frame of a {info.duration:.2f} s video")
    return first, stop
