"""What a self-contained page embeds: PNG files and small video clips as ``data:`` URIs.

A clip is the first ``seconds`` of a video (at most ``max_frames`` frames) at its own frame rate, scaled so its
longer side is ``size`` pixels (even sides, as yuv420p needs), encoded in memory as VP9 in WebM (Chromium and
Firefox play it without proprietary codecs) with PyAV. A clip of 16 frames at 128 px is a few kilobytes.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ophora.data.video import Consecutive, probe, read_video

__all__ = ["Clip", "clip", "data_uri", "png_uri"]


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` of ``data``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_uri(path: str | Path) -> str:
    """A PNG file as a data URI."""
    return data_uri(Path(path).read_bytes(), "image/png")


@dataclass(frozen=True)
class Clip:
    """A video re-encoded for the page: ``uri`` (VP9 WebM data URI), the source's geometry (frames, height,
    width, fps) and what the clip shows (``shown_frames``, ``size`` = (height, width))."""

    uri: str
    frames: int
    height: int
    width: int
    fps: float
    shown_frames: int
    size: tuple[int, int]


def _even_size(height: int, width: int, longest: int) -> tuple[int, int]:
    scale = min(1.0, longest / max(height, width))
    return max(2, int(round(height * scale / 2)) * 2), max(2, int(round(width * scale / 2)) * 2)


def encode_webm(frames: np.ndarray, fps: float, size: tuple[int, int]) -> bytes:
    """uint8 [T, H, W, 3] RGB frames as VP9 WebM bytes at ``fps``, scaled to ``size`` = (height, width)."""
    buffer = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(buffer, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=rate)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "32", "b:v": "0", "deadline": "realtime", "cpu-used": "8"}
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame.reformat(width=size[1], height=size[0], format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def clip(path: str | Path, size: int = 128, seconds: float = 4.0, max_frames: int = 32) -> Clip:
    """The first ``seconds`` (at most ``max_frames`` frames) of the video at ``path`` as a small WebM clip.
    Raises what :func:`ophora.data.video.read_video` raises for an unreadable file."""
    info = probe(path)
    count = max(1, min(info.num_frames, max_frames, int(round(seconds * info.fps)) or 1))
    frames = read_video(path, Consecutive(count))
    shown = _even_size(info.height, info.width, size)
    return Clip(data_uri(encode_webm(frames, info.fps, shown), "video/webm"), info.num_frames, info.height,
                info.width, float(info.fps), len(frames), shown)
