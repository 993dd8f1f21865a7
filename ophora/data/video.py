"""Video I/O for every stage of the suite: PyAV decoding to ``uint8 [T, H, W, 3]`` RGB and H.264 encoding.

Any container FFmpeg reads is decoded the same way: :data:`VIDEO_SUFFIXES` (mp4, mov, m4v, avi, mkv, webm, gif,
mpg) are the ones the suite looks for in folders; the frame rate is the container's own (a GIF's is 100 over its
frame delay in centiseconds, e.g. 8.33 for 12 cs). A folder of PNG/JPEG frame images is read as a video by
:mod:`ophora.data.frame_folders`; it has no frame rate of its own, so readers take ``fps`` for it (default
:data:`ophora.data.frame_folders.DEFAULT_FPS`, 8).

Decoding streams frames and keeps only the ones a :class:`FrameSelection` asks for, so a 10-minute
OphNet video costs memory for the selected frames only. Every way a file can be unreadable (missing, empty,
truncated, not a video, no video stream, unsupported codec) raises :class:`VideoDecodeError`, which names
the file and the cause.

Frame indices are positions in presentation order at the stream's nominal frame rate: frame ``i`` is the
frame shown at ``i / fps`` seconds after the stream starts.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

from ophora.data import frame_folders
from ophora.data.atomic import atomic_path
from ophora.data.frames import (
    SHRINK_FILTERS,
    AllFrames,
    Consecutive,
    FrameSelection,
    Resample,
    Strided,
    Uniform,
    VideoDecodeError,
    VideoInfo,
    window_frames,
)

__all__ = [
    "VideoDecodeError", "VideoInfo", "FrameSelection", "AllFrames", "Consecutive", "Strided", "Uniform", "Resample",
    "VIDEO_SUFFIXES", "is_video", "probe", "iter_frames", "FrameScan", "read_video", "write_video", "VideoWriter",
]

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg")
"""File suffixes (lower case) of the video containers the suite looks for in a folder; all decode through PyAV."""


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a video to read: a file with a :data:`VIDEO_SUFFIXES` suffix, or a folder
    holding frame images. Only names are looked at; a bad file is found when it is read."""
    path = Path(path)
    if path.is_dir():
        return frame_folders.is_frame_folder(path)
    return path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()


# ---------------------------------------------------------------------------------------------------------
# Decoding


def _open(path: Path, probe_frames: bool = True) -> av.container.InputContainer:
    """Open ``path`` for reading, turning every failure into :class:`VideoDecodeError`.

    ``probe_frames=False`` keeps FFmpeg from decoding the first frames while it probes the streams (its probing
    decoders skip every frame). Size, rate and frame count still come
    from the container header; only what needs decoding (the pixel format) stays unknown until decoding.
    """
    if not path.exists():
        raise VideoDecodeError(path, "file does not exist")
    if not path.is_file():
        raise VideoDecodeError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")
    try:
        return av.open(str(path), mode="r", options=None if probe_frames else {"skip_frame": "all"})
    except av.FFmpegError as err:
        raise VideoDecodeError(path, f"not a readable video container ({err})") from err


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise VideoDecodeError(path, "the container has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None or stream.codec_context.name is None:
        raise VideoDecodeError(path, "unsupported video codec")
    return stream


def _stream_fps(stream, path: Path) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise VideoDecodeError(path, "the video stream has no frame rate")
    return float(rate)


def _count_packets(container, stream) -> int:
    """Count the video stream's frames by demuxing packets (no decoding)."""
    count = sum(1 for packet in container.demux(stream) if packet.size > 0)
    container.seek(0)
    return count


def _frame_folder_reader(path: Path):
    """:mod:`ophora.data.frame_folders` when ``path`` is a folder holding frame images, else None."""
    if not path.is_dir():
        return None
    return frame_folders if frame_folders.is_frame_folder(path) else None


def _folder_fps(fps: float | None) -> float:
    if fps is None:
        return frame_folders.DEFAULT_FPS
    if not fps > 0:
        raise ValueError(f"the frame rate of a frame folder must be positive, got {fps}")
    return float(fps)


def probe(path: str | os.PathLike, fps: float | None = None) -> VideoInfo:
    """Read size, frame rate, frame count and duration from container metadata, without decoding frames.
    ``fps``: the frame rate of a folder of frame images (default 8); a container's own rate is always used."""
    path = Path(path)
    frame_folder = _frame_folder_reader(path)
    if frame_folder is not None:
        return frame_folder.probe(path, _folder_fps(fps))
    with _open(path) as container:
        return _container_info(container, _video_stream(container, path), path)


def _container_info(container, stream, path: Path) -> VideoInfo:
    """:class:`VideoInfo` of ``stream`` from container metadata (counts packets if the header has no frame count)."""
    fps = _stream_fps(stream, path)
    try:
        num_frames = int(stream.frames) or _count_packets(container, stream)
    except av.FFmpegError as err:
        raise VideoDecodeError(path, f"corrupt stream while counting frames ({err})") from err
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = num_frames / fps
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise VideoDecodeError(path, f"invalid frame size {width}x{height}")
    return VideoInfo(path, width, height, fps, num_frames, duration, stream.codec_context.name)


def _frame_index(frame, stream, fps: float, fallback: int) -> int:
    """Index of a decoded frame from its presentation time (falls back to decode order without pts)."""
    if frame.pts is None or stream.time_base is None:
        return fallback
    start = stream.start_time or 0
    return int(round(float((frame.pts - start) * stream.time_base) * fps))


def _decoded(container, stream, path: Path) -> Iterator:
    try:
        yield from container.decode(stream)
    except av.FFmpegError as err:
        raise VideoDecodeError(path, f"corrupt or truncated stream ({err})") from err


def iter_frames(path: str | os.PathLike, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Yield every frame of ``path`` as ``uint8 [H, W, 3]`` RGB, one at a time.

    ``size`` (height, width) downscales while converting (area filter on the YUV planes for yuv420p video,
    FFmpeg's swscale otherwise); use it for cheap analysis and previews, never where a metric protocol fixes
    the resize filter. Decoding is single-threaded per process: on small clips FFmpeg's frame threads cost more
    than they save, and parallelism comes from worker processes.
    Raises :class:`VideoDecodeError` at the end if fewer frames came than the container declares.
    A folder of frame images is read by :mod:`ophora.data.frame_folders`.
    """
    path = Path(path)
    frame_folder = _frame_folder_reader(path)
    if frame_folder is not None:
        yield from frame_folder.iter_frames(path, size)
        return
    with _open(path) as container:
        stream = _video_stream(container, path)
        declared, count = int(stream.frames or 0), 0
        for frame in _decoded(container, stream, path):
            count += 1
            yield _to_rgb(frame, size)
    if count == 0 or count < declared:
        raise VideoDecodeError(path, f"stream ended after {count} of {declared or 'an unknown number of'} "
                                     f"frames (truncated file?)")


def _to_rgb(frame, size: tuple[int, int] | None, shrink: str = "area") -> np.ndarray:
    """A decoded frame as uint8 [H, W, 3] RGB, rescaled to ``size`` (height, width) when given, with the
    ``shrink`` filter (:data:`SHRINK_FILTERS`) for yuv420p video."""
    if size is None:
        return frame.to_ndarray(format="rgb24")
    height, width = size
    if frame.format.name == "yuv420p" and height % 4 == 0 and width % 2 == 0:  # I420 packing needs H % 4 == 0
        return _small_rgb_from_planes(frame, height, width, SHRINK_FILTERS[shrink])
    return frame.to_ndarray(format="rgb24", width=width, height=height)


def _small_rgb_from_planes(frame, height: int, width: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Downscale the Y, U and V planes, then convert (BT.601, limited range, like FFmpeg's default).

    Cheaper than swscale's scaled RGB conversion for analysis-size frames (curation, previews); the decode
    figures are in ``results/perf/foundation_curation.md``.
    """
    sizes = ((height, width), (height // 2, width // 2), (height // 2, width // 2))
    full = ((frame.height, frame.width), (frame.height // 2, frame.width // 2), (frame.height // 2, frame.width // 2))
    planes = []
    for plane, (h, w), (ph, pw) in zip(frame.planes, sizes, full):
        pixels = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:ph, :pw]
        planes.append(cv2.resize(pixels, (w, h), interpolation=interpolation).reshape(-1, width))
    return cv2.cvtColor(np.concatenate(planes), cv2.COLOR_YUV2RGB_I420)


class FrameScan:
    """A video opened once for its metadata and one decoding pass: the fast path for per-frame analysis.

    Made for filters that look at every frame of many clips (curation): one open instead of :func:`probe`
    plus :func:`iter_frames`, stream probing without decoding (see ``_open``), and

    - ``threads``: FFmpeg decoding threads; 1 (default) decodes in the calling thread only, for worker
      processes that run in parallel; 0 lets FFmpeg choose. ``thread_type`` (with more than one thread):
      ``SLICE`` (default: on short x264 clips it gained more than ``FRAME``), ``FRAME`` or ``AUTO``.
    - ``skip_nonref``: the decoder skips the frames no other frame is predicted from (non-reference B-frames:
      about half the frames of an x264 clip), so the indices :meth:`frames` yields
      have gaps. Cuts still show between the decoded neighbours.
    - ``skip_deblocking``: the decoder skips H.264/HEVC's in-loop deblocking filter (faster; slightly
      blockier pixels that do not survive downscaling to analysis size).
    - ``shrink``: the downscaling filter of :meth:`frames` with a ``size`` (:data:`SHRINK_FILTERS`: ``area``,
      the default, or ``linear``, PySceneDetect's own choice and several times cheaper).

    Use as a context manager::

        with FrameScan("clip.mp4", skip_nonref=True) as scan:
            for index, frame in scan.frames(size=(96, 144)):   # frame index, uint8 [96, 144, 3] RGB
                ...

    ``info`` is the :class:`VideoInfo` (as :func:`probe` gives it). A folder of frame images is scanned through
    :mod:`ophora.data.frame_folders` (every frame). Failures raise :class:`VideoDecodeError`.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1, skip_nonref: bool = False,
                 skip_deblocking: bool = False, thread_type: str = "SLICE", shrink: str = "area",
                 fps: float | None = None):
        if threads < 0:
            raise ValueError(f"{path}: threads must be >= 0 (0 lets FFmpeg choose), got {threads}")
        self.path = Path(path)
        if thread_type not in ("SLICE", "FRAME", "AUTO"):
            raise ValueError(f"{path}: thread_type must be SLICE, FRAME or AUTO, got {thread_type!r}")
        if shrink not in SHRINK_FILTERS:
            raise ValueError(f"{path}: shrink must be one of {sorted(SHRINK_FILTERS)}, got {shrink!r}")
        self.shrink = shrink
        self.threads, self.skip_nonref, self.skip_deblocking = threads, skip_nonref, skip_deblocking
        self.thread_type = thread_type
        self.fps = fps  # a frame folder's frame rate (a container's own rate is used)
        self.info: VideoInfo | None = None
        self._container = None

    def __enter__(self) -> "FrameScan":
        if self.path.is_dir():
            self.info = frame_folders.probe(self.path, _folder_fps(self.fps))
            return self
        container = _open(self.path, probe_frames=False)
        try:
            stream = _video_stream(container, self.path)
            if stream.codec_context.width <= 0 or stream.codec_context.height <= 0:  # size only known by decoding
                container.close()
                container = _open(self.path)
                stream = _video_stream(container, self.path)
            self.info = _container_info(container, stream, self.path)
        except BaseException:
            container.close()
            raise
        self._container = container
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def frames(self, size: tuple[int, int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame)`` in presentation order (one pass): the frame index (see the module docstring)
        and the frame as ``uint8 [H, W, 3]`` RGB, downscaled to ``size`` (height, width) as in :func:`iter_frames`.

        Raises :class:`VideoDecodeError` at the end if the stream holds fewer frames than the container declares.
        """
        if self.info is None:
            raise RuntimeError(f"{self.path}: open the FrameScan first (use it as a context manager)")
        if self._container is None:  # a frame folder
            yield from enumerate(frame_folders.iter_frames(self.path, size, self.shrink))
            return
        stream = self._container.streams.video[0]
        context = stream.codec_context
        context.thread_count = self.threads
        if self.threads != 1:
            context.thread_type = self.thread_type
        if self.skip_nonref:
            context.skip_frame = "NONREF"
        if self.skip_deblocking:
            context.options = {"skip_loop_filter": "all"}
        packets = decoded = 0
        try:
            for packet in self._container.demux(stream):
                packets += packet.size > 0
                for frame in packet.decode():
                    yield _frame_index(frame, stream, self.info.fps, decoded), _to_rgb(frame, size, self.shrink)
                    decoded += 1
        except av.FFmpegError as err:
            raise VideoDecodeError(self.path, f"corrupt or truncated stream ({err})") from err
        declared = self.info.num_frames
        if decoded == 0 or packets < declared or (decoded < declared and not self.skip_nonref):
            raise VideoDecodeError(self.path, f"stream ended after {packets} of {declared} frames "
                                              f"({decoded} decoded; truncated file?)")


def read_video(
    path: str | os.PathLike,
    select: FrameSelection | None = None,
    window: tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
) -> np.ndarray:
    """Decode the selected frames of ``path`` into ``uint8 [T, H, W, 3]`` RGB.

    ``select`` picks frames (default: all). ``window`` = (start, end) in seconds restricts the clip to frames
    shown in [start, end) before selecting, seeking instead of decoding from the beginning (on-the-fly
    trimming of long videos). ``size`` = (height, width) rescales while converting (see :func:`iter_frames`).
    Only the selected frames are kept in memory. Raises :class:`VideoDecodeError` when the file is unreadable
    or ends before the selected frames. A folder of frame images (PNG/JPEG) is read as a video by
    :mod:`ophora.data.frame_folders`, at ``fps`` frames per second (default 8; time-based selections and
    ``window`` use it); a container file is read at its own frame rate.
    """
    path = Path(path)
    frame_folder = _frame_folder_reader(path)
    if frame_folder is not None:
        return frame_folder.read_video(path, select, window, size, _folder_fps(fps))
    select = select or AllFrames()
    if isinstance(select, AllFrames) and window is None:
        return _read_all(path, size)
    info = probe(path)
    first, stop = window_frames(info, window, path)
    try:
        wanted = select.indices(stop - first, info.fps) + first
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if wanted.size == 0:
        height, width = size or (info.height, info.width)
        return np.zeros((0, height, width, 3), np.uint8)
    return np.stack(_collect(path, wanted, info.fps, size))


def _read_all(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """Every frame in one pass (no separate metadata probe)."""
    return np.stack(list(iter_frames(path, size)))


def _collect(path: Path, wanted: np.ndarray, fps: float, size) -> list[np.ndarray]:
    """Decode until every index in ``wanted`` (sorted) is filled; repeats reuse the same frame."""
    out: list[np.ndarray] = []
    with _open(path) as container:
        stream = _video_stream(container, path)
        if wanted[0] > 0:
            _seek(container, stream, wanted[0] / fps)
        last = -1
        for order, frame in enumerate(_decoded(container, stream, path)):
            index = _frame_index(frame, stream, fps, order)
            last = index
            if index < wanted[len(out)]:
                continue
            image = _to_rgb(frame, size)
            while len(out) < len(wanted) and wanted[len(out)] <= index:
                out.append(image)
            if len(out) == len(wanted):
                return out
    raise VideoDecodeError(path, f"stream ended at frame {last} before frame {wanted[len(out)]} "
                                 f"({len(wanted) - len(out)} of {len(wanted)} selected frames missing; "
                                 "truncated file?)")


def _seek(container, stream, seconds: float) -> None:
    """Seek to the keyframe at or before ``seconds`` (decoding then skips forward to the wanted frame)."""
    if stream.time_base is None:
        return
    target = int(seconds / float(stream.time_base)) + (stream.start_time or 0)
    try:
        container.seek(target, stream=stream, backward=True, any_frame=False)
    except av.FFmpegError as err:
        raise VideoDecodeError(container.name, f"seek to {seconds:.3f} s failed ({err})") from err


# ---------------------------------------------------------------------------------------------------------
# Encoding


class VideoWriter:
    """Write frames one at a time to an H.264/yuv420p mp4; the file appears at ``path`` only on success.

    Use as a context manager::

        with VideoWriter("clip.mp4", fps=8) as writer:
            for frame in frames:          # uint8 [H, W, 3] RGB, even H and W
                writer.write(frame)

    ``crf`` is x264's constant rate factor (0 lossless luma, 18 visually lossless, 23 default).
    """

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 18, preset: str = "medium"):
        if fps <= 0:
            raise ValueError(f"{path}: fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps, self.crf, self.preset = fps, crf, preset
        self._atomic = None
        self._container = None
        self._stream = None
        self.frames_written = 0

    def __enter__(self) -> "VideoWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one ``uint8 [H, W, 3]`` RGB frame (all frames must share one even size)."""
        frame = _check_frame(frame, self.path)
        if self._stream is None:
            self._stream = self._add_stream(frame.shape[0], frame.shape[1])
        elif frame.shape[:2] != (self._stream.height, self._stream.width):
            raise ValueError(f"{self.path}: frame {self.frames_written} is {frame.shape[0]}x{frame.shape[1]}, "
                             f"earlier frames are {self._stream.height}x{self._stream.width}")
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        self._container.mux(self._stream.encode(video_frame))
        self.frames_written += 1

    def _add_stream(self, height: int, width: int):
        stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # mbtree=0: x264's macroblock-tree rate control reads uninitialised memory when the width is not a
        # multiple of 64, so the same frames gave different files from run to run; without it they do not.
        stream.options = {"crf": str(self.crf), "preset": self.preset, "x264-params": "mbtree=0"}
        return stream

    def __exit__(self, exc_type, exc, tb) -> None:
        error = exc
        try:
            if error is None and self._stream is None:
                error = ValueError(f"{self.path}: no frames were written")
            if error is None:
                self._container.mux(self._stream.encode(None))
        except BaseException as err:  # noqa: BLE001 - the file must not be published
            error = err
        finally:
            self._container.close()
        if error is None:
            self._atomic.__exit__(None, None, None)
            return None
        self._atomic.__exit__(type(error), error, error.__traceback__)
        if exc is None:
            raise error
        return None


def _check_frame(frame: np.ndarray, path: Path) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{path}: frames must be uint8 [H, W, 3] RGB, got {frame.dtype} {list(frame.shape)}")
    if frame.shape[0] % 2 or frame.shape[1] % 2:
        raise ValueError(f"{path}: H.264 yuv420p needs even height and width, got {frame.shape[0]}x{frame.shape[1]}")
    return np.ascontiguousarray(frame)


def write_video(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: float,
                crf: int = 18, preset: str = "medium") -> Path:
    """Encode ``frames`` (``uint8 [T, H, W, 3]`` RGB or an iterable of ``[H, W, 3]``) to an mp4 at ``fps``.

    H.264, yuv420p, even sizes only. Written atomically: ``path`` holds either the whole video or nothing.
    """
    with VideoWriter(path, fps, crf=crf, preset=preset) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)
