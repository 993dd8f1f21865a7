"""Contact sheets: one row of evenly spaced frames per labelled clip, for a human to look at."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ophora.data.atomic import atomic_path

_LABEL_BG = (24, 24, 28)
_TEXT = (235, 235, 235)


def _sample(frames: np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` frames at evenly spaced indices from the first to the last."""
    idx = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in idx]


def _text_panel(text: str, height: int, width: int, scale: float) -> np.ndarray:
    """A dark RGB panel [height, width, 3] with ``text`` word-wrapped to fit."""
    panel = np.full((height, width, 3), _LABEL_BG, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    longest = max(text.split(), key=len, default="")
    longest_w = cv2.getTextSize(longest, font, scale, max(1, int(round(scale * 2))))[0][0]
    scale = min(scale, scale * (width - 16) / max(1, longest_w))
    thick = max(1, int(round(scale * 2)))
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and cv2.getTextSize(trial, font, scale, thick)[0][0] > width - 10:
            lines.append(line)
            trial = word
        line = trial
    lines.append(line)
    step = int(cv2.getTextSize("Ag", font, scale, thick)[0][1] * 1.8)
    y = max(step, (height - step * len(lines)) // 2 + int(step * 0.75))
    for text_line in lines:
        cv2.putText(panel, text_line, (6, y), font, scale, _TEXT, thick, cv2.LINE_AA)
        y += step
    return panel


def contact_sheet(rows: list[tuple[str, np.ndarray]], path: str | os.PathLike, frames_per_row: int = 6,
                  title: str | None = None) -> Path:
    """Write an image (PNG, or JPEG for a .jpg path) with one row per (label, frames uint8 [T, H, W, 3] RGB): the
    label on the left, then ``frames_per_row`` frames sampled uniformly from first to last. Rows of different sizes
    are resized to the first row's frame size. Written atomically; returns the final path."""
    if not rows:
        raise ValueError("contact_sheet needs at least one (label, frames) row")
    h, w = rows[0][1].shape[1:3]
    gap, scale = max(2, h // 64), max(0.4, h / 256)
    label_w = int(max(160, 1.4 * h))
    lines = []
    for label, frames in rows:
        tiles = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) if f.shape[:2] != (h, w) else f
                 for f in _sample(frames, frames_per_row)]
        parts = [_text_panel(label, h, label_w, scale)]
        for tile in tiles:
            parts += [np.full((h, gap, 3), _LABEL_BG, np.uint8), tile]
        lines += [np.hstack(parts), np.full((gap, label_w + frames_per_row * (w + gap), 3), _LABEL_BG, np.uint8)]
    sheet = np.vstack(lines)
    if title:
        sheet = np.vstack([_text_panel(title, int(48 * max(1.0, scale)), sheet.shape[1], 0.8 * max(1.0, scale)),
                           sheet])
    with atomic_path(path) as tmp:
        params = [cv2.IMWRITE_JPEG_QUALITY, 88] if tmp.suffix.lower() in (".jpg", ".jpeg") else []
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(sheet[..., ::-1]), params):
            raise OSError(f"could not write image {path}")
    return Path(path)
