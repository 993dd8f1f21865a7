"""Evaluation geometry: the one frame rate, clip length and frame size every set is brought to before a detector
sees it, and how (short-side resize with a named filter and a centre crop, a plain resize, or nothing).

Generated and real videos rarely share a geometry: held-out surgical clips are 1080p at 25-60 fps, Ophora writes
480x720 at 8 fps, Endora 128x128 and Bora 256x256. Scored as they are, 16 native frames of a 30 fps real clip
(0.5 s) meet the first 16 frames of an 8 fps video (2 s), and each detector squashes every aspect ratio to its
own square: size, aspect and frame rate are then mixed into "quality". A :class:`Geometry` removes that:

1. time (:meth:`Geometry.timeline`): every video is resampled to ``fps`` by time, frame ``j`` of the result being
   the source frame shown at ``j / fps`` seconds (the nearest earlier one; a slower source repeats frames), then
   a window of ``frames`` frames is kept: from the start for generated videos, at a seeded offset (from the
   seed and the video's key only) for real ones, the rule StyleGAN-V applies to its clips;
2. space (:meth:`Geometry.resize`): ``short-side-crop`` scales the frame so that it covers ``size`` (the short
   side to the target's, for a square target) with ``filter`` and crops the centre, as Endora's preparation does
   (shortest side 128, Lanczos, 128x128 centre crop); ``stretch`` resizes to ``size`` without keeping the
   aspect; ``native`` leaves the frame as it is.

A field left ``None`` keeps that property of each video (``native`` keeps all three). Named geometries live in
:data:`GEOMETRIES`; :func:`parse_geometry` also reads ``fps=8,frames=16,size=128x128,mode=short-side-crop,
filter=lanczos``. :func:`set_shape` and :func:`check_compatible` read a set's frame rate and aspect from
container headers (a few videos, no decoding) and say whether two sets can be compared without a geometry.
"""
from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ophora.cli import UsageError
from ophora.data.frames import Resample
from ophora.data.sets import VideoSet
from ophora.data.video import probe
from ophora.registry import lookup
from ophora.seeding import rng

__all__ = ["Geometry", "GEOMETRIES", "NATIVE", "FILTERS", "MODES", "parse_geometry", "SetShape", "set_shape",
           "check_compatible", "GeometryMismatchError", "FPS_TOLERANCE", "ASPECT_TOLERANCE"]

FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
           "bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX, "nearest": Image.Resampling.NEAREST}
"""Resize filters, by name: Pillow's, which widen their support when shrinking (antialiased)."""
MODES = ("short-side-crop", "stretch", "native")
FPS_TOLERANCE = 0.05     # relative difference of frame rates two sets may have without a geometry
ASPECT_TOLERANCE = 0.05  # relative difference of aspect ratios (width / height)


@dataclass(frozen=True)
class Geometry:
    """Frame rate ``fps`` (frames per second; None: each video's own), clip length ``frames`` (frames at ``fps``;
    None: the whole video), frame ``size`` (height, width) in pixels reached by ``mode`` with ``filter``
    (None or mode ``native``: each video's own size). Recorded whole in every result (:meth:`to_dict`)."""

    name: str = "native"
    fps: float | None = None
    frames: int | None = None
    size: tuple[int, int] | None = None
    mode: str = "native"
    filter: str = "lanczos"
    window: str = "generated videos: the first frames; real videos: a window at a seeded offset " \
                  "(ophora.seeding.rng(seed, 'geometry-window', key))"
    description: str = "each video at its own frame rate, length and size"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"geometry {self.name!r}: mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.filter not in FILTERS:
            raise ValueError(f"geometry {self.name!r}: filter must be one of {', '.join(FILTERS)}, "
                             f"got {self.filter!r}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"geometry {self.name!r}: fps must be positive, got {self.fps}")
        if self.frames is not None and self.frames < 1:
            raise ValueError(f"geometry {self.name!r}: frames must be at least 1, got {self.frames}")
        if self.mode != "native" and (self.size is None or min(self.size) < 1):
            raise ValueError(f"geometry {self.name!r}: mode {self.mode!r} needs a size HxW, got {self.size}")
        if self.size is not None:
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))

    @property
    def is_native(self) -> bool:
        """True when nothing is changed (no resampling in time, no window, no resize)."""
        return self.fps is None and self.frames is None and (self.mode == "native" or self.size is None)

    def to_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["size"] = None if self.size is None else list(self.size)
        return record

    def summary(self) -> str:
        """One line: ``endora-128: 8 fps, 16 frames, 128x128 (short-side-crop, lanczos)``."""
        rate = "own fps" if self.fps is None else f"{self.fps:g} fps"
        length = "all frames" if self.frames is None else f"{self.frames} frames"
        space = "own size" if self.mode == "native" or self.size is None else \
            f"{self.size[0]}x{self.size[1]} ({self.mode}, {self.filter})"
        return f"{self.name}: {rate}, {length}, {space}"

    # -- time --------------------------------------------------------------------------------------------
    def timeline(self, num_frames: int, source_fps: float, role: str = "fake", seed: int = 0,
                 key: str = "") -> np.ndarray:
        """Source frame index (int64 [M]) of each frame of the clip this geometry makes of a video of
        ``num_frames`` frames at ``source_fps``: resampled by time to ``fps``, then ``frames`` of them (from the
        first for ``role`` "fake", at a seeded offset for "real"). A video shorter than ``frames`` at ``fps``
        gives all it has (the protocols refuse what is too short for them)."""
        if num_frames < 1:
            return np.zeros(0, np.int64)
        if self.fps is None:
            source = np.arange(num_frames, dtype=np.int64)
        else:
            source = Resample(self.fps).indices(num_frames, source_fps)
            if len(source) == 0:  # shorter than one frame at fps: its first frame
                source = np.zeros(1, np.int64)
        if self.frames is None or len(source) <= self.frames:
            return source
        offset = 0
        if role == "real":
            offset = int(rng(seed, "geometry-window", key).integers(0, len(source) - self.frames + 1))
        return source[offset:offset + self.frames]

    # -- space -------------------------------------------------------------------------------------------
    def resize(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [T, H, W, 3] -> uint8 [T, h, w, 3] at this geometry's size (unchanged for ``native``)."""
        if self.mode == "native" or self.size is None or len(frames) == 0:
            return frames
        height, width = frames.shape[1:3]
        target_h, target_w = self.size
        if self.mode == "stretch":
            scaled = (target_h, target_w)
        else:  # short-side-crop: cover the target, keep the aspect, then crop the centre
            scale = max(target_h / height, target_w / width)
            scaled = (max(target_h, round(height * scale)), max(target_w, round(width * scale)))
        if scaled == (height, width) and scaled == (target_h, target_w):
            return frames
        top, left = (scaled[0] - target_h) // 2, (scaled[1] - target_w) // 2
        out = np.empty((len(frames), target_h, target_w, 3), np.uint8)
        for i, frame in enumerate(frames):
            image = Image.fromarray(np.ascontiguousarray(frame))
            if scaled != (height, width):
                image = image.resize((scaled[1], scaled[0]), FILTERS[self.filter])
            out[i] = np.asarray(image)[top:top + target_h, left:left + target_w]
        return out


NATIVE = Geometry()

GEOMETRIES: dict[str, Geometry] = {g.name: g for g in (
    NATIVE,
    Geometry("endora-128", fps=8.0, frames=16, size=(128, 128), mode="short-side-crop", filter="lanczos",
             description="Endora's evaluation preparation (shortest side to 128 with Lanczos, 128x128 centre "
                         "crop, then StyleGAN-V's square-only scripts) on 16-frame clips at 8 fps (Ophora's output "
                         "rate; Endora's frame interval 3 on 24-30 fps sources gives 8-10 fps)"),
    Geometry("square-256", fps=8.0, frames=16, size=(256, 256), mode="short-side-crop", filter="lanczos",
             description="Bora's output size (256x256): shortest side to 256 with Lanczos, centre crop; 16 frames "
                         "at 8 fps"),
    Geometry("ophora-480x720", fps=8.0, frames=49, size=(480, 720), mode="short-side-crop", filter="lanczos",
             description="Ophora's output geometry (CogVideoX-2b: 49 frames at 8 fps, 480x720): short side to 480 "
                         "with Lanczos, centre crop to 480x720"),
)}


def _size(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not sep:
        return int(text), int(text)
    return int(height), int(width)


def parse_geometry(spec: str | Geometry | dict | None) -> Geometry | None:
    """A :class:`Geometry` from a registered name (:data:`GEOMETRIES`), a dict of its fields, or
    ``key=value`` pairs such as ``fps=8,frames=16,size=128x128,mode=short-side-crop,filter=lanczos`` (a name
    given as ``name=...``, else ``custom``); None stays None. Unknown names and keys raise ValueError."""
    if spec is None or isinstance(spec, Geometry):
        return spec
    if isinstance(spec, dict):
        fields = dict(spec)
        if "size" in fields and fields["size"] is not None:
            fields["size"] = _size(fields["size"]) if isinstance(fields["size"], str) else tuple(fields["size"])
        fields.setdefault("name", "custom")
        if fields.get("size") is not None:
            fields.setdefault("mode", "short-side-crop")
        try:
            return Geometry(**fields)
        except TypeError as err:
            known = ", ".join(f.name for f in dataclasses.fields(Geometry))
            raise ValueError(f"geometry {spec}: {err}; fields are {known}") from None
    text = str(spec).strip()
    if "=" not in text:
        try:
            return lookup(GEOMETRIES, text, "geometry")
        except KeyError as err:
            raise ValueError(str(err.args[0]) if err.args else str(err)) from None
    fields: dict[str, Any] = {}
    for part in (p for p in text.split(",") if p.strip()):
        key, _, value = part.partition("=")
        key, value = key.strip().replace("-", "_"), value.strip()
        if key == "fps":
            fields[key] = float(value)
        elif key == "frames":
            fields[key] = int(value)
        else:
            fields[key] = value
    return parse_geometry(fields)


@dataclass(frozen=True)
class SetShape:
    """A set's frame rate and frame size as its container headers give them (median over the videos probed)."""

    fps: float | None
    width: int | None
    height: int | None
    probed: int

    @property
    def aspect(self) -> float | None:
        return None if not self.width or not self.height else self.width / self.height

    def describe(self) -> str:
        if self.fps is None:
            return "no readable video header"
        return f"{self.fps:g} fps, {self.width}x{self.height} (aspect {self.aspect:.3f})"


def set_shape(video_set: VideoSet, sample: int = 8) -> SetShape:
    """The median frame rate and size of up to ``sample`` videos spread over ``video_set`` (headers only;
    unreadable videos are skipped: the extraction reports them)."""
    items = video_set.items
    if not items:
        return SetShape(None, None, None, 0)
    picks = sorted({int(round(i)) for i in np.linspace(0, len(items) - 1, min(sample, len(items)))})
    infos = []
    for i in picks:
        try:
            infos.append(probe(items[i].path, fps=getattr(items[i], "fps", None)))
        except Exception:  # noqa: BLE001 - an unreadable video is the extraction's to report
            continue
    if not infos:
        return SetShape(None, None, None, 0)
    return SetShape(float(statistics.median(i.fps for i in infos)), int(statistics.median(i.width for i in infos)),
                    int(statistics.median(i.height for i in infos)), len(infos))


class GeometryMismatchError(UsageError):
    """Two sets differ in frame rate or aspect ratio and no evaluation geometry was given (a user error: printed
    as one ``error:`` line by every command)."""


def _differ(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) > tolerance * max(abs(a), abs(b))


def check_compatible(shapes: Sequence[tuple[str, SetShape]], flag: str = "--geometry",
                     fps_tolerance: float = FPS_TOLERANCE, aspect_tolerance: float = ASPECT_TOLERANCE) -> None:
    """Raise :class:`GeometryMismatchError` when any set's frame rate or aspect ratio differs from the first
    set's by more than the tolerances (relative), naming both sets, their fps and aspect, and ``flag``."""
    (first_name, first), *others = shapes
    for name, shape in others:
        if first.fps is None or shape.fps is None:
            continue
        what = [w for w, a, b, tol in (("frame rate", first.fps, shape.fps, fps_tolerance),
                                        ("aspect ratio", first.aspect, shape.aspect, aspect_tolerance))
                if _differ(a, b, tol)]
        if what:
            raise GeometryMismatchError(
                f"the {first_name} ({first.describe()}) and the {name} ({shape.describe()}) differ in "
                f"{' and '.join(what)} (tolerance {fps_tolerance:.0%} / {aspect_tolerance:.0%}): the detectors "
                f"would see frames at different spacings in time and squashed differently. Pass {flag} NAME to "
                f"bring both to one geometry ({', '.join(n for n in GEOMETRIES if n != 'native')}, or "
                f"fps=F,frames=T,size=HxW,mode=short-side-crop,filter=lanczos), or {flag} native to score them "
                f"as they are (recorded)")
