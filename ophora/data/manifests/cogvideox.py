"""CogVideoX fine-tuning layout: ``<root>/prompts.txt`` and ``<root>/videos.txt``.

Line i of each file describes the same video (diffusers examples/cogvideo, cogvideox-factory).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, NamedTuple

from ophora.data.atomic import atomic_path
from ophora.data.manifests._common import (
    ManifestError,
    PathLike,
    _absolute,
    _decode_utf8,
    _escape_problem,
    _relative_to_root,
    _require_file,
    quoted,
)

__all__ = ["CogVideoXItem", "read_cogvideox_set", "write_cogvideox_set"]

class CogVideoXItem(NamedTuple):
    """One training pair: the prompt and the absolute video path. Unpacks as ``prompt, path``."""

    prompt: str
    path: Path


def read_cogvideox_set(
    root: PathLike, prompts: str = "prompts.txt", videos: str = "videos.txt", check_files: bool = True
) -> list[CogVideoXItem]:
    """Read ``<root>/prompts.txt`` and ``<root>/videos.txt``: line i of each describes the same video.

    Every line must be non-empty (an empty line would shift every later pair). Video paths are relative
    to ``root``; with ``check_files`` each video must exist.
    """
    root = _absolute(root)
    prompt_lines = _read_lines(root / prompts, "prompt")
    video_lines = _read_lines(root / videos, "video")
    if len(prompt_lines) != len(video_lines):
        raise ManifestError(root, f"{prompts} has {len(prompt_lines)} lines but {videos} has "
                                  f"{len(video_lines)}; line i of each must describe the same video")
    items = []
    for number, (prompt, relative) in enumerate(zip(prompt_lines, video_lines), start=1):
        path = _cogvideox_video(root / videos, number, root, relative, check_files)
        items.append(CogVideoXItem(prompt, path))
    return items


def _read_lines(path: Path, field_name: str) -> list[str]:
    """Lines of a UTF-8 text file (``\\n``, ``\\r\\n`` or ``\\r`` ends; one final line end optional).

    An empty or whitespace-only line raises, naming its line number.
    """
    _require_file(path)
    text = _decode_utf8(path, path.read_bytes()).replace("\r\n", "\n").replace("\r", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    lines = text.split("\n") if text else []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ManifestError(path, "line is empty; every line must hold one entry (an empty line would "
                                      "pair the wrong prompt with every later video)", row=number, line=number,
                                field=field_name, field_kind="field")
    return lines


def _cogvideox_video(videos_file: Path, number: int, root: Path, relative: str, check: bool) -> Path:
    problem = _escape_problem(relative)
    if problem:
        raise ManifestError(videos_file, f"video path {problem}", row=number, line=number, field="video",
                            field_kind="field")
    path = _absolute(root / relative)
    if check and not path.is_file():
        raise ManifestError(videos_file, f"video not found: expected {path}", row=number, line=number,
                            field="video", field_kind="field")
    return path


def write_cogvideox_set(
    root: PathLike,
    items: Iterable[CogVideoXItem | tuple[str, PathLike]],
    prompts: str = "prompts.txt",
    videos: str = "videos.txt",
) -> tuple[Path, Path]:
    """Write ``prompts.txt`` and ``videos.txt`` under ``root``; video paths are written relative to ``root``.

    Both files are renamed into place one right after the other, so a crash leaves at most a moment in which
    they disagree (the count check in :func:`read_cogvideox_set` catches most such states).
    """
    root = _absolute(root)
    prompt_lines, video_lines = [], []
    for number, (prompt, path) in enumerate(items, start=1):
        prompt_lines.append(_prompt_for_write(root / prompts, number, prompt))
        video_lines.append(_video_for_write(root / videos, number, root, path))
    with atomic_path(root / prompts) as prompts_tmp, atomic_path(root / videos) as videos_tmp:
        prompts_tmp.write_text("".join(line + "\n" for line in prompt_lines), encoding="utf-8")
        videos_tmp.write_text("".join(line + "\n" for line in video_lines), encoding="utf-8")
    return root / prompts, root / videos


def _prompt_for_write(path: Path, number: int, prompt: str) -> str:
    if "\n" in prompt or "\r" in prompt:
        raise ManifestError(path, f"prompt contains a line break, which would split it over two lines: "
                                  f"{quoted(prompt)}", row=number, field="prompt", field_kind="field")
    if not prompt.strip():
        raise ManifestError(path, f"expected a non-empty prompt, found {quoted(prompt)}", row=number, field="prompt",
                            field_kind="field")
    return prompt


def _video_for_write(path: Path, number: int, root: Path, video: PathLike) -> str:
    relative = _relative_to_root(root, video)
    if relative is None:
        raise ManifestError(path, f"video {video} is not a file inside {root}", row=number, field="video",
                            field_kind="field")
    if "\n" in relative or "\r" in relative:
        raise ManifestError(path, f"video path contains a line break: {quoted(relative)}", row=number, field="video",
                            field_kind="field")
    return relative
