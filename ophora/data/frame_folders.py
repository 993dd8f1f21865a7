"""Frame folders: a folder of frame images (PNG or JPEG, one file per frame) read as a video.

Official research code often saves each generated video as such a folder (Endora's and StyleGAN-V's samplers
do). :func:`probe`, :func:`iter_frames` and :func:`read_video` follow the conventions of
:mod:`ophora.data.video` (which dispatches to them when given a folder): frames come back as ``uint8 [T, H, W, 3]``
RGB, frame ``i`` is the ``i``-th image in natural order (``frame_2.png`` before ``frame_10.png``), and every
problem raises :class:`~ophora.data.frames.VideoDecodeError` naming the folder or the image file and the cause.

A frame folder holds only images: a file with another suffix, a sub-folder, images of different sizes or
bit depths other than 8 are errors, never skipped. Hidden files (names starting with ``.``) are ignored. Frame
folders carry no frame rate: the reader is given one (``fps``; ``ophora.data.sets.load_video_set(..., fps=)``
and the ``fps`` of :func:`ophora.data.video.read_video`), :data:`DEFAULT_FPS` when none is; it only matters
for time-based selections (``Resample``, ``window``) and the duration.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ophora.data.frames import SHRINK_FILTERS, AllFrames, FrameSelection, VideoDecodeError, VideoInfo, window_frames

__all__ = ["IMAGE_SUFFIXES", "DEFAULT_FPS", "natural_key", "is_frame_folder", "list_frames", "probe",
           "iter_frames", "read_video"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_FPS = 8.0  # frames per second assumed for a folder of images (it has no frame rate of its own)
_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")  # 8-bit (or 1-bit) modes that convert to RGB exactly
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key comparing digit runs as numbers: ``f2.png < f10.png``; ties broken by the name itself."""
    parts = _DIGITS.split(name)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p), name


def _visible(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def is_frame_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding at least one image file (it may still be malformed)."""
    path = Path(path)
    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in _visible(path))


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """The frame images of ``folder`` in natural order; raises if it is empty or holds anything else."""
    folder = Path(folder)
    if not folder.exists():
        raise VideoDecodeError(folder, "frame folder does not exist")
    if not folder.is_dir():
        raise VideoDecodeError(folder, "not a folder of frame images")
    entries = _visible(folder)
    for entry in sorted(entries, key=lambda p: natural_key(p.name)):
        if entry.is_dir():
            raise VideoDecodeError(entry, f"sub-folder inside frame folder {folder}; expected only frame images "
                                          f"({', '.join(IMAGE_SUFFIXES)})")
        if entry.suffix.lower() not in IMAGE_SUFFIXES:
            raise VideoDecodeError(entry, f"not a frame image: frame folder {folder} may only hold "
                                          f"{', '.join(IMAGE_SUFFIXES)} files")
    if not entries:
        raise VideoDecodeError(folder, f"frame folder holds no frame images ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(entries, key=lambda p: natural_key(p.name))


def _header(path: Path) -> tuple[int, int, str]:
    """(width, height, format) of an image from its header, without decoding pixels."""
    try:
        with Image.open(path) as image:
            _check_mode(image, path)
            return image.width, image.height, (image.format or path.suffix.lstrip(".")).lower()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise VideoDecodeError(path, f"not a readable image ({err})") from err


def _check_mode(image: Image.Image, path: Path) -> None:
    if image.mode not in _MODES:
        raise VideoDecodeError(path, f"image mode {image.mode!r} is not 8-bit grey, palette or RGB(A); expected "
                                     f"one of {_MODES}")


def probe(folder: str | os.PathLike, fps: float = DEFAULT_FPS) -> VideoInfo:
    """Size, frame count and duration of a frame folder from its image headers (every image is checked to be
    an image of the first one's size; pixels are not decoded). ``codec`` is the image format(s), e.g. ``png``."""
    folder = Path(folder)
    frames = list_frames(folder)
    width, height, first_format = _header(frames[0])
    formats = {first_format}
    for frame in frames[1:]:
        w, h, fmt = _header(frame)
        if (w, h) != (width, height):
            raise VideoDecodeError(frame, f"frame is {h}x{w} (HxW), earlier frames of {folder} are {height}x{width}")
        formats.add(fmt)
    return VideoInfo(folder, width, height, fps, len(frames), len(frames) / fps, "+".join(sorted(formats)))


def _load(path: Path, expected: tuple[int, int] | None) -> np.ndarray:
    """One image as ``uint8 [H, W, 3]`` RGB; ``expected`` (height, width) it must have."""
    try:
        with Image.open(path) as image:
            _check_mode(image, path)
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise VideoDecodeError(path, f"not a readable image ({err})") from err
    if expected is not None and rgb.shape[:2] != expected:
        raise VideoDecodeError(path, f"frame is {rgb.shape[0]}x{rgb.shape[1]} (HxW), earlier frames are "
                                     f"{expected[0]}x{expected[1]}")
    return rgb


def _resized(frame: np.ndarray, size: tuple[int, int] | None, shrink: str = "area") -> np.ndarray:
    """``frame`` rescaled to ``size`` (height, width): down with the ``shrink`` filter
    (:data:`ophora.data.frames.SHRINK_FILTERS`), bilinear up (as cheap previews)."""
    if size is None or frame.shape[:2] == tuple(size):
        return frame
    height, width = size
    down = height <= frame.shape[0] and width <= frame.shape[1]
    return cv2.resize(frame, (width, height), interpolation=SHRINK_FILTERS[shrink] if down else cv2.INTER_LINEAR)


def iter_frames(folder: str | os.PathLike, size: tuple[int, int] | None = None,
                shrink: str = "area") -> Iterator[np.ndarray]:
    """Yield every frame of ``folder`` as ``uint8 [H, W, 3]`` RGB (rescaled to ``size`` = (height, width),
    downscaling with the ``shrink`` filter)."""
    expected = None
    for path in list_frames(folder):
        frame = _load(path, expected)
        expected = frame.shape[:2]
        yield _resized(frame, size, shrink)


def read_video(folder: str | os.PathLike, select: FrameSelection | None = None,
               window: tuple[float, float] | None = None, size: tuple[int, int] | None = None,
               fps: float = DEFAULT_FPS) -> np.ndarray:
    """Decode the selected frames of ``folder`` into ``uint8 [T, H, W, 3]`` RGB (see
    :func:`ophora.data.video.read_video`; ``window`` is in seconds at ``fps``). Only the selected images are
    decoded, each once even when selected repeatedly."""
    folder = Path(folder)
    select = select or AllFrames()
    if isinstance(select, AllFrames) and window is None:
        return np.stack(list(iter_frames(folder, size)))
    info = probe(folder, fps)
    first, stop = window_frames(info, window, folder)
    try:
        wanted = select.indices(stop - first, fps) + first
    except ValueError as err:
        raise ValueError(f"{folder}: {err}") from None
    if wanted.size == 0:
        height, width = size or (info.height, info.width)
        return np.zeros((0, height, width, 3), np.uint8)
    frames = list_frames(folder)
    outside = wanted[(wanted < 0) | (wanted >= len(frames))]
    if outside.size:
        raise VideoDecodeError(folder, f"selected frame {int(outside[0])} but the folder has {len(frames)} frames")
    decoded = {int(i): _resized(_load(frames[int(i)], (info.height, info.width)), size) for i in np.unique(wanted)}
    return np.stack([decoded[int(i)] for i in wanted])
