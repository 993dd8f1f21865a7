"""Blinded copies of the study's videos: what a rater's browser receives instead of the source file.

Each source video (any file or frame folder :mod:`ophora.data.video` reads) is decoded and encoded again with
one fixed setting for every set (H.264, yuv420p, the source's frame rate and size, even sizes cropped by one
pixel), and stripped of everything that could name its origin: the container is written with FFmpeg's
``bitexact`` flag (no muxer version, no creation time, no tags), and x264's SEI message, which spells out the
encoder and its options, is removed from the bitstream (``filter_units=remove_types=6``). The file is named by
the SHA-256 of its bytes, so neither the name nor the bytes say which set or file it came from.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import av.bitstream
import numpy as np

from ophora.data.video import iter_frames, probe

__all__ = ["blind_video", "ENCODING"]

ENCODING = {"codec": "libx264", "pix_fmt": "yuv420p", "crf": "17", "preset": "medium"}


def _even(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[0] - frame.shape[0] % 2, frame.shape[1] - frame.shape[1] % 2
    return np.ascontiguousarray(frame[:height, :width])


def _encode(source: Path, target: Path) -> None:
    """Re-encode ``source`` into ``target`` (an mp4) without metadata or encoder tags."""
    fps = Fraction(probe(source).fps).limit_denominator(1001)
    container = av.open(str(target), mode="w", format="mp4",
                        options={"movflags": "+faststart", "fflags": "+bitexact"})
    try:
        stream, strip = None, None

        def mux(packets) -> None:
            for packet in packets:
                for clean in strip.filter(packet):
                    clean.stream = stream
                    container.mux(clean)

        for frame in iter_frames(source):
            frame = _even(frame)
            if stream is None:
                stream = container.add_stream(ENCODING["codec"], rate=fps)
                stream.height, stream.width, stream.pix_fmt = frame.shape[0], frame.shape[1], ENCODING["pix_fmt"]
                stream.options = {"crf": ENCODING["crf"], "preset": ENCODING["preset"], "x264-params": "mbtree=0"}
                stream.codec_context.flags |= av.codec.context.Flags.bitexact
                strip = av.bitstream.BitStreamFilterContext("filter_units=remove_types=6", stream)
            mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        if stream is None:
            raise av.error.InvalidDataError(0, f"{source}: no frames")
        mux(stream.encode(None))
        for clean in strip.filter(None):
            clean.stream = stream
            container.mux(clean)
    finally:
        container.close()


def blind_video(source: str | os.PathLike, media_dir: str | os.PathLike) -> str:
    """Write the blinded copy of ``source`` into ``media_dir`` as ``<sha256>.mp4``; return the sha256."""
    media_dir = Path(media_dir)
    media_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".incoming.", suffix=".tmp.mp4", dir=media_dir)
    os.close(fd)
    tmp = Path(name)
    try:
        _encode(Path(source), tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        os.chmod(tmp, 0o644)
        os.replace(tmp, media_dir / f"{digest}.mp4")  # the same bytes under the same name: replacing is harmless
    finally:
        tmp.unlink(missing_ok=True)
    return digest
