"""Videos made by the official Endora / Bora code, scored by the suite's harness as they are (no conversion).

A folder of such videos holds, at its top level, video files (``*.mp4`` as Bora's sampler writes, or any
container of :data:`ophora.data.video.VIDEO_SUFFIXES`) and/or frame folders: one
sub-folder of PNG/JPEG frames per video (Endora's sampler; read by :mod:`ophora.data.frame_folders`). A video's
*name* is its file stem (``sample_3.mp4`` -> ``sample_3``) or its folder's name. Hidden entries are ignored,
as are other files (logs, a prompt CSV); other video formats and loose frame images are errors.

Prompts come from a mapping CSV with columns ``video,prompt`` (UTF-8, any extra columns ignored): ``video``
is a name, a file name or a path whose last component is one (``sample_3``, ``sample_3.mp4``,
``out/sample_3.mp4``). The mapping must name every video exactly once and nothing else. An unconditional
model's videos (Endora) need none and then get no CLIPScore.

Three ways in::

    videos = ExternalVideos("runs/endora_samples", generator="endora-official")
    videos.validate(min_frames=16)            # reads every video; raises naming each bad file
    load_video_set("external:runs/bora_samples?prompts=runs/bora_prompts.csv")   # what the harness reads
    python -m baselines.external check runs/bora_samples --prompts runs/bora_prompts.csv --min-frames 16

``python -m benchmarks.evaluate --fake DIR --fake-prompts FILE`` scores such a folder; a folder of frame
folders is also recognised without the ``external:`` prefix.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import parse_qsl, urlencode

from ophora.data import frame_folders
from ophora.data import video as ophora_video
from ophora.data.frame_folders import IMAGE_SUFFIXES, natural_key
from ophora.data.frames import VideoDecodeError
from ophora.data.manifests import ManifestError, read_csv_table
from ophora.data.manifests._common import quoted
from ophora.registry import did_you_mean

__all__ = ["PREFIX", "ExternalVideosError", "ExternalVideo", "Validation", "ExternalVideos", "parse_spec",
           "looks_external", "read_prompt_mapping"]

PREFIX = "external:"
MAPPING_COLUMNS = ("video", "prompt")
_MAX_LISTED = 20  # problems listed in one error message


class ExternalVideosError(ValueError):
    """A folder of external videos that cannot be scored; ``problems`` lists one line per bad file."""

    def __init__(self, folder: Path, problems: Sequence[str]):
        self.folder, self.problems = Path(folder), list(problems)
        shown = self.problems[:_MAX_LISTED]
        more = len(self.problems) - len(shown)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{self.folder}: {len(self.problems)} problem(s):\n  " + "\n  ".join(shown) + tail)


@dataclass(frozen=True)
class ExternalVideo:
    """One video: ``name`` (mapping key), ``path`` (absolute video file or frame folder), ``layout`` (the
    container, ``"mp4"``, ``"mov"``, ..., or ``"frames"``) and ``prompt`` (None without a mapping)."""

    name: str
    path: Path
    layout: str
    prompt: str | None = None


@dataclass(frozen=True)
class Validation:
    """What :meth:`ExternalVideos.validate` found: counts, the common size (height, width) in pixels, the
    frame-count range and how many videos have prompts."""

    folder: Path
    generator: str
    videos: int
    layouts: dict[str, int]
    size: tuple[int, int]
    frames: tuple[int, int]
    prompts: int
    decoded: bool

    def summary(self) -> str:
        layouts = ", ".join(f"{n} {'frame folders' if k == 'frames' else k + ' files'}" for k, n in
                            sorted(self.layouts.items()))
        lo, hi = self.frames
        prompts = (f"{self.prompts} prompts" if self.prompts else "no prompts (unconditional: no CLIPScore)")
        how = "every frame decoded" if self.decoded else "headers only"
        return (f"{self.folder} ({self.generator}): {self.videos} videos ({layouts}), "
                f"{self.size[0]}x{self.size[1]} (HxW), {lo}-{hi} frames, {prompts}; {how}")


def _video_name(text: str) -> str:
    """Mapping key of a CSV cell: its last path component without a video suffix (``.mp4``, ``.mov``, ...)."""
    name = Path(text.strip().replace("\\", "/").rstrip("/")).name
    suffix = Path(name).suffix
    return name[:-len(suffix)] if suffix and suffix.lower() in ophora_video.VIDEO_SUFFIXES else name


def _entry(folder: Path, entry: Path) -> ExternalVideo | str | None:
    """The video an entry of ``folder`` is, a problem text, or None for an ignored file."""
    suffix = entry.suffix.lower()
    if entry.is_dir():
        return ExternalVideo(entry.name, entry, "frames")
    if suffix in ophora_video.VIDEO_SUFFIXES:
        return ExternalVideo(entry.name[:-len(suffix)], entry, suffix[1:])
    if suffix in IMAGE_SUFFIXES:
        return (f"{entry}: a frame image directly in {folder}; expected one sub-folder of frames per video "
                f"(e.g. {folder / 'video_0' / entry.name})")
    return None


def _list_videos(folder: Path) -> list[ExternalVideo]:
    """Every video at the top level of ``folder`` in natural order; raises on a layout problem."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a folder of video files or of frame folders"
                                + ("" if folder.exists() else " (it does not exist)"))
    found = [_entry(folder, p) for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name))
             if not p.name.startswith(".")]
    problems = [f for f in found if isinstance(f, str)]
    videos = [f for f in found if isinstance(f, ExternalVideo)]
    names = Counter(v.name for v in videos)
    entries = {v.name: [] for v in videos}
    for v in videos:
        entries[v.name].append(v.path.name + ("/" if v.layout == "frames" else ""))
    problems += [f"{folder}: {count} videos are named {name!r} ({', '.join(entries[name])}); rename all but one"
                 for name, count in names.items() if count > 1]
    if not videos and not problems:
        problems.append(f"{folder}: no videos found; expected video files "
                        f"({'/'.join(s.lstrip('.') for s in ophora_video.VIDEO_SUFFIXES)}) or sub-folders of "
                        f"{'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} frames")
    if problems:
        raise ExternalVideosError(folder, problems)
    return videos


def read_prompt_mapping(path: str | os.PathLike, names: Sequence[str], folder: Path) -> dict[str, str]:
    """``{video name: prompt}`` from a ``video,prompt`` CSV that must cover ``names`` exactly, once each.

    Raises :class:`~ophora.data.manifests.ManifestError` naming the file, row and problem.
    """
    table = read_csv_table(path, MAPPING_COLUMNS)
    known, prompts, rows = set(names), {}, {}
    for index, (cell, prompt) in enumerate(zip(table.column("video"), table.column("prompt"))):
        name = _video_name(cell)
        if not name:
            raise table.error(index, "video", "is empty; expected a video's file name or stem")
        if name in rows:
            raise table.error(index, "video", f"duplicate video {quoted(name)}; already mapped by "
                                              f"{table.where(rows[name])}")
        if name not in known:
            raise table.error(index, "video", f"names {quoted(cell)}, but {folder} has no {name}.mp4 (nor "
                                              f"{name}.mov or another video file) or frame folder {name}/")
        if not prompt.strip():
            raise table.error(index, "prompt", f"is empty for video {quoted(name)}; expected its prompt")
        rows[name], prompts[name] = index, prompt
    missing = [n for n in names if n not in prompts]
    if missing:
        listed = ", ".join(map(repr, missing[:_MAX_LISTED])) + (" ..." if len(missing) > _MAX_LISTED else "")
        raise ManifestError(table.path, f"no prompt for {len(missing)} of {len(names)} videos of {folder}: "
                                        f"{listed}; expected one row per video")
    return prompts


class ExternalVideos:
    """A folder of videos from official code, with an optional prompt mapping (see the module docstring).

    The folder layout and the mapping are checked on construction (no video is decoded); :meth:`validate`
    then reads every video.
    """

    def __init__(self, folder: str | os.PathLike, prompts: str | os.PathLike | None = None,
                 generator: str = "external"):
        self.folder = Path(folder).expanduser().resolve()
        self.prompts_file = Path(prompts).expanduser().resolve() if prompts is not None else None
        self.generator = generator
        videos = _list_videos(self.folder)
        if self.prompts_file is not None:
            mapping = read_prompt_mapping(self.prompts_file, [v.name for v in videos], self.folder)
            videos = [ExternalVideo(v.name, v.path, v.layout, mapping[v.name]) for v in videos]
        self.videos: tuple[ExternalVideo, ...] = tuple(videos)

    @property
    def conditional(self) -> bool:
        """Whether the videos come with prompts (CLIPScore is defined)."""
        return self.prompts_file is not None

    def __len__(self) -> int:
        return len(self.videos)

    def _frames_and_size(self, video: ExternalVideo, decode: bool) -> tuple[int, tuple[int, int]]:
        """(frame count, (height, width)); a frame folder's probe reads every image header (mixed sizes)."""
        reader = frame_folders if video.layout == "frames" else ophora_video
        info = reader.probe(video.path)
        if not decode:
            return info.num_frames, (info.height, info.width)
        return sum(1 for _ in reader.iter_frames(video.path)), (info.height, info.width)

    def validate(self, min_frames: int = 16, decode: bool = True) -> Validation:
        """Read every video (``decode``: every frame; else headers only) and check it has at least
        ``min_frames`` frames and the size most videos have. Raises :class:`ExternalVideosError` listing every
        bad file and its problem; returns a :class:`Validation` summary."""
        problems, frames, sizes = [], {}, {}
        for video in self.videos:
            try:
                frames[video.name], sizes[video.name] = self._frames_and_size(video, decode)
            except (VideoDecodeError, ValueError) as err:
                problems.append(str(err) if str(video.path) in str(err) else f"{video.path}: {err}")
                continue
            if frames[video.name] < min_frames:
                problems.append(f"{video.path}: {frames[video.name]} frames, expected at least {min_frames}")
        common = Counter(sizes.values()).most_common(1)[0][0] if sizes else (0, 0)
        for video in self.videos:
            size = sizes.get(video.name)
            if size is not None and size != common:
                problems.append(f"{video.path}: {size[0]}x{size[1]} (HxW), expected {common[0]}x{common[1]} like "
                                f"{sum(s == common for s in sizes.values())} other video(s)")
        if problems:
            raise ExternalVideosError(self.folder, problems)
        counts = list(frames.values())
        return Validation(self.folder, self.generator, len(self.videos), dict(Counter(v.layout for v in self.videos)),
                          common, (min(counts), max(counts)), sum(v.prompt is not None for v in self.videos), decode)

    def spec(self) -> str:
        """The ``external:`` spec string that :func:`parse_spec` turns back into this object."""
        query = {"prompts": self.prompts_file, "generator": self.generator if self.generator != "external" else None}
        text = urlencode({k: str(v) for k, v in query.items() if v is not None}, safe="/")
        return f"{PREFIX}{self.folder}" + (f"?{text}" if text else "")


def parse_spec(spec: str, prompts: str | os.PathLike | None = None) -> ExternalVideos:
    """``external:DIR[?prompts=FILE][&generator=NAME]`` (or a bare DIR) as :class:`ExternalVideos`;
    ``prompts`` given here overrides the spec's."""
    text = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    folder, _, query = text.partition("?")
    options = {"prompts": None, "generator": "external"}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in options:
            hint = did_you_mean(key, options)
            raise ValueError(f"{spec!r}: unknown option {key!r}{'; ' + hint if hint else ''} (expected "
                             f"external:DIR?prompts=FILE&generator=NAME)")
        options[key] = value
    if prompts is not None:
        options["prompts"] = os.fspath(prompts)
    if not folder:
        raise ValueError(f"{spec!r}: expected external:DIR, a folder after the prefix")
    return ExternalVideos(folder, options["prompts"] or None, options["generator"])


def looks_external(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` has the frame-folder layout (no video file at its top level, a sub-folder of
    images)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return (not any(p.suffix.lower() in ophora_video.VIDEO_SUFFIXES for p in entries)
            and any(frame_folders.is_frame_folder(p) for p in entries))
