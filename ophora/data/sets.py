"""Video sets to score: a folder of videos, a generated-video folder (manifest.jsonl) or an Ophora-160K CSV.

A folder of videos holds files of any container PyAV reads (:data:`ophora.data.video.VIDEO_SUFFIXES`: mp4, mov,
m4v, avi, mkv, webm, gif, mpg), found at any depth, and folders of PNG/JPEG frames (a folder holding nothing but
frame images is one video). A video file is read at its container's frame rate; a frame folder at the ``fps``
given to :func:`load_video_set` (:attr:`VideoItem.fps`; default 8).

Each set resolves to an ordered list of :class:`VideoItem` (absolute path, the path relative to the set's
root, and the prompt where the set has one). Listed files are not required to exist: a missing or unreadable
video is reported by the extraction as a failed input, so one bad file never stops a run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ophora.data import manifests
from ophora.data.external import ExternalVideos, looks_external, parse_spec
from ophora.data.frame_folders import DEFAULT_FPS, IMAGE_SUFFIXES
from ophora.data.video import VIDEO_SUFFIXES

__all__ = ["VIDEO_SUFFIXES", "VideoItem", "VideoSet", "load_video_set", "external_set"]


@dataclass(frozen=True)
class VideoItem:
    """One video: ``path`` absolute (a video file or a frame folder), ``key`` its POSIX path relative to the set
    root, ``prompt`` or None, ``fps``: the frame rate to read a frame folder at (None for a video file, which
    has its own; pass it to :func:`ophora.data.video.read_video` and :func:`~ophora.data.video.probe`)."""

    path: Path
    key: str
    prompt: str | None = None
    fps: float | None = None


@dataclass(frozen=True)
class VideoSet:
    """An ordered set of videos. ``kind``: ``"folder"``, ``"generated"``, ``"instructions"`` or ``"external"``
    (videos from official code, :mod:`ophora.data.external`); ``manifest``: the manifest file whose bytes
    identify the set (None for a plain folder)."""

    spec: str
    kind: str
    root: Path
    items: tuple[VideoItem, ...]
    manifest: Path | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_prompts(self) -> bool:
        return bool(self.items) and all(item.prompt is not None for item in self.items)


def _frame_folder_layout(spec: str | os.PathLike) -> bool:
    """A folder with sub-folders of frame images and no manifest (Endora-style output)."""
    path = Path(spec).expanduser()
    if not path.is_dir() or (path / manifests.MANIFEST_NAME).is_file():
        return False
    return looks_external(path)


def external_set(videos: ExternalVideos, spec: str | None = None, fps: float | None = None) -> VideoSet:
    """The harness's view of videos from official code: a :class:`VideoSet` of kind ``"external"`` whose items
    are the original files and folders (keys: ``name.mp4`` or ``name``), prompts from the mapping; its
    ``manifest`` is the mapping file (None without one). ``fps``: the frame rate of its frame folders."""
    items = tuple(VideoItem(v.path, v.path.name, v.prompt, _fps(fps) if v.layout == "frames" else None)
                  for v in videos.videos)
    return VideoSet(spec or videos.spec(), "external", videos.folder, items, videos.prompts_file)


def _key(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _fps(fps: float | None) -> float:
    if fps is None:
        return DEFAULT_FPS
    if not fps > 0:
        raise ValueError(f"the frame rate of frame folders must be positive, got {fps}")
    return float(fps)


def _only_images(folder: Path) -> bool:
    """A folder holding frame images and nothing else (hidden files aside): one video as a frame folder."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return bool(entries) and all(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in entries)


def _folder_videos(root: Path) -> list[Path]:
    """Video files (any depth) and frame folders under ``root``, not looking inside frame folders."""
    found, todo = [], [root]
    while todo:
        folder = todo.pop()
        for entry in folder.iterdir():
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                (found if _only_images(entry) else todo).append(entry)
            elif entry.suffix.lower() in VIDEO_SUFFIXES:
                found.append(entry)
    return found


def load_video_set(spec: str | os.PathLike, prompts: str | os.PathLike | None = None,
                   fps: float | None = None) -> VideoSet:
    """Resolve ``spec``: a ``manifest.jsonl`` or a folder holding one (generated videos with prompts), an
    Ophora-160K CSV (``clip id,instruction``; prompts = instructions), or a folder of videos (files of any
    :data:`VIDEO_SUFFIXES` container at any depth, and folders of frame images; sorted by relative path; no
    prompts). Videos from official code (:mod:`ophora.data.external`): ``external:DIR[?prompts=FILE]``, any
    folder with ``prompts`` (a ``video,prompt`` CSV), or a folder of frame folders. ``fps``: the frame rate of
    frame folders (default 8); video files keep their container's."""
    if prompts is not None or str(spec).startswith("external:") or _frame_folder_layout(spec):
        return external_set(parse_spec(str(spec), prompts), str(spec), fps)
    path = Path(spec).expanduser().resolve()
    if path.is_file() and path.name == manifests.MANIFEST_NAME:
        path = path.parent
    if path.is_dir() and (path / manifests.MANIFEST_NAME).is_file():
        records = manifests.read_generated(path, check_files=False)
        items = tuple(VideoItem(r.path, _key(path, r.path), r.prompt) for r in records)
        return VideoSet(str(spec), "generated", path, items, path / manifests.MANIFEST_NAME)
    if path.is_file() and path.suffix.lower() == ".csv":
        clips = manifests.read_instruction_set(path, check_files=False)
        items = tuple(VideoItem(c.path, _key(path.parent, c.path), c.instruction) for c in clips)
        return VideoSet(str(spec), "instructions", path.parent, items, path)
    if path.is_dir():
        videos = sorted(_folder_videos(path), key=lambda p: _key(path, p))
        if not videos:
            raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)} files or folders of "
                                    f"{'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} frames) found under {path}; "
                                    f"pass a folder of videos, a folder with {manifests.MANIFEST_NAME}, or an "
                                    "Ophora-160K CSV")
        return VideoSet(str(spec), "folder", path, tuple(VideoItem(p, _key(path, p), None, _fps(fps) if p.is_dir()
                                                                   else None) for p in videos))
    raise FileNotFoundError(f"{spec}: not a folder of videos, a {manifests.MANIFEST_NAME} or an Ophora-160K CSV "
                            f"(resolved to {path}, which does not exist)" if not path.exists() else
                            f"{spec}: a file that is neither {manifests.MANIFEST_NAME} nor a .csv manifest")
