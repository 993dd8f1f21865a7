"""OphNet2024 clip datasets for phase and operation recognition (and any CSV in the OphNet format: OphSim's,
synthetic sets).

A clip is one CSV row (``video_id,start,end,split,surgery_id,phase_id[,operation_id][,segment_path]``, read by
:func:`ophora.data.manifests.read_ophnet_csv`). Its frames come from one of two places:

- ``trim="segments"``: the trimmed clip ``<segments_root>/<segment_path>`` (OphSim, the trimmed OphNet release,
  synthetic sets whose ``segment_path`` is relative to their CSV's folder);
- ``trim="untrimmed"``: the untrimmed video ``<videos_root>/<video_id>.mp4`` cut on the fly to [start, end)
  seconds (the challenge CSVs, which have no ``segment_path``);
- ``trim="auto"``: segments when the CSV has ``segment_path``, else untrimmed.

**Sampling** (:class:`ClipSampling`, one per model recipe). ``frames`` frames ``stride`` source frames apart,
covering ``span = (frames - 1) * stride + 1`` source frames, starting at ``position * (N - span)`` for a clip of
N frames: a random position in [0, 1] per (seed, epoch, clip) for training, ``views`` evenly spaced positions
(0.5 for one view) for testing. **Short clips**: when a clip has fewer than ``span`` frames the window starts at
frame 0 and every index past the end is clamped to the last frame, so the last frame repeats (PySlowFast's
``temporal_sampling`` does the same). Frames are resized so the shorter side is ``short_side`` pixels, then
cropped to ``crop`` x ``crop`` (random crop + horizontal flip [+ RandAugment] for training) and normalised with
the Kinetics mean and std used by PySlowFast (0.45, 0.225). **Testing** follows PySlowFast's multi-view test:
with one spatial crop, the centre ``test_crop`` x ``test_crop`` of frames whose shorter side is ``short_side``;
with ``spatial_crops`` > 1 (SlowFast's Kinetics recipe: 3 at 256), frames are resized so that the shorter side
is ``test_crop`` and crops of that size are taken evenly along the longer side (first, centre, last), each
temporal view with every crop; the model's scores are averaged over all views.

**Unreadable clips** are never skipped silently: :func:`scan_clips` probes every clip before training and
returns the problems (row, video, path, reason) beside the readable rows; a clip that fails later while
decoding comes back from :class:`ClipDataset` with its ``error`` set, and the training loop counts and lists it.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from ophora.data.manifests import read_ophnet_csv
from ophora.data.video import Strided, VideoDecodeError, probe, read_video
from ophora.registry import lookup
from ophora.seeding import derive_seed, rng

__all__ = ["TASKS", "OPHNET_NUM_CLASSES", "KINETICS_MEAN", "KINETICS_STD", "ClipSampling", "StridedWindow",
           "crop_offsets", "spatial_crops",
           "ClipSource", "load_clips", "scan_clips", "describe_problems", "ClipDataset", "num_classes_of"]

TASKS = {"phase": "phase_id", "operation": "operation_id"}
OPHNET_NUM_CLASSES = {"phase": 52, "operation": 107}  # OphNet2024 challenge: "Others" is phase 51, operation 106
KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
Trim = Literal["auto", "segments", "untrimmed"]


@dataclass(frozen=True)
class ClipSampling:
    """How a model sees a clip: ``frames`` frames ``stride`` source frames apart, resized to ``short_side`` px
    (shorter side) and cropped to ``crop`` px for training; at test time ``views`` temporal views times
    ``spatial_crops`` crops of ``test_crop`` px (default ``crop``; see the module docstring), averaged;
    ``randaugment``: RandAugment (m, n) for training, or None."""

    frames: int
    stride: int
    crop: int
    short_side: int
    views: int = 1
    randaugment: tuple[int, int] | None = None
    spatial_crops: int = 1
    test_crop: int | None = None

    def __post_init__(self):
        if self.test_crop is None:
            object.__setattr__(self, "test_crop", self.crop)
        if min(self.frames, self.stride, self.crop, self.short_side, self.views, self.spatial_crops,
               self.test_crop) < 1:
            raise ValueError(f"ClipSampling fields must be >= 1, got {self}")
        if self.short_side < self.crop:
            raise ValueError(f"short_side ({self.short_side}) must be >= crop ({self.crop})")
        if self.test_short_side < self.test_crop:
            raise ValueError(f"short_side ({self.short_side}) must be >= test_crop ({self.test_crop})")

    @property
    def test_short_side(self) -> int:
        """Shorter side of test frames: ``test_crop`` with several spatial crops (PySlowFast), else
        ``short_side``."""
        return self.test_crop if self.spatial_crops > 1 else self.short_side

    @property
    def test_views(self) -> int:
        """Views per clip at test time: temporal views x spatial crops."""
        return self.views * self.spatial_crops

    @property
    def span(self) -> int:
        """Source frames covered by one sample."""
        return (self.frames - 1) * self.stride + 1

    def positions(self, train: bool, seed: int, epoch: int, index: int) -> list[float]:
        """Start positions in [0, 1]: one random (training) or ``views`` evenly spaced (testing)."""
        if train:
            return [float(rng(seed, "position", epoch, index).random())]
        if self.views == 1:
            return [0.5]
        return [k / (self.views - 1) for k in range(self.views)]


@dataclass(frozen=True)
class StridedWindow(Strided):
    """:class:`ophora.data.video.Strided` with PySlowFast's rule for short clips: the last frame repeats."""

    repeat_last: bool = True


@dataclass(frozen=True)
class ClipSource:
    """One labelled-clip CSV and where its videos are (see the module docstring for ``trim``).

    ``segments_root`` defaults to the CSV's folder, ``videos_root`` to ``<CSV folder>/videos``;
    ``video_pattern`` names an untrimmed video from its ``video_id``.
    """

    csv: Path
    task: str
    segments_root: Path | None = None
    videos_root: Path | None = None
    trim: Trim = "auto"
    video_pattern: str = "{video_id}.mp4"


def _label_column(task: str) -> str:
    return lookup(TASKS, task, "task")


def load_clips(source: ClipSource) -> pd.DataFrame:
    """The CSV's clips with ``label`` (int64), ``clip_path`` (absolute str) and ``window_start``/``window_end``
    (seconds in ``clip_path``; NaN for trimmed clips, which are read whole)."""
    csv = Path(source.csv)
    column = _label_column(source.task)
    df = read_ophnet_csv(csv)
    if column not in df.columns:
        raise ValueError(f"{csv}: the {source.task} task needs a {column!r} column; found columns "
                         f"{list(df.columns)} (the phase-only CSV has no operation_id)")
    trim = source.trim
    if trim == "auto":
        trim = "segments" if "segment_path" in df.columns else "untrimmed"
    df = df.copy()
    df["label"] = df[column].astype(np.int64)
    if trim == "segments":
        if "segment_path" not in df.columns:
            raise ValueError(f"{csv}: trim='segments' needs a segment_path column; found {list(df.columns)}; "
                             "use trim='untrimmed' with a videos root instead")
        root = Path(source.segments_root or csv.parent).absolute()
        df["clip_path"] = [str(root / rel) for rel in df["segment_path"]]
        df["window_start"], df["window_end"] = np.nan, np.nan
    elif trim == "untrimmed":
        root = Path(source.videos_root or csv.parent / "videos").absolute()
        df["clip_path"] = [str(root / source.video_pattern.format(video_id=v)) for v in df["video_id"]]
        df["window_start"], df["window_end"] = df["start"].astype(float), df["end"].astype(float)
    else:
        raise ValueError(f"trim must be 'auto', 'segments' or 'untrimmed', got {trim!r}")
    return df


def num_classes_of(*frames: pd.DataFrame) -> int:
    """The largest label + 1 over ``frames`` (OphNet2024 has fixed counts: :data:`OPHNET_NUM_CLASSES`)."""
    return max(int(df["label"].max()) for df in frames if len(df)) + 1


# ---------------------------------------------------------------------------------------------------------
# Probing before training


def _probe_one(path: str) -> tuple[str, dict]:
    try:
        info = probe(path)
    except VideoDecodeError as err:
        return path, {"error": err.reason}
    except Exception as err:  # noqa: BLE001 - any failure is reported with its cause, never hidden
        return path, {"error": f"{type(err).__name__}: {err}"}
    if info.num_frames < 1:
        return path, {"error": "the video has no frame"}
    return path, {"height": info.height, "width": info.width, "fps": info.fps, "duration": info.duration}


def scan_clips(df: pd.DataFrame, workers: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Probe every clip's video (container metadata only). Returns (readable rows with ``height``/``width``/
    ``fps`` added, problems with ``row,video_id,clip_path,reason``). A window past a video's end is a problem."""
    paths = sorted(set(df["clip_path"]))
    with ThreadPoolExecutor(max(1, workers)) as pool:
        found = dict(pool.map(_probe_one, paths))
    reasons = []
    for row in df.itertuples():
        info = found[row.clip_path]
        reason = info.get("error")
        if reason is None and not math.isnan(row.window_start) and row.window_start >= info["duration"]:
            reason = f"window starts at {row.window_start} s, after the video's end ({info['duration']:.2f} s)"
        reasons.append(reason)
    bad = np.array([r is not None for r in reasons], dtype=bool)
    problems = pd.DataFrame({"row": df.index[bad], "video_id": df["video_id"][bad].to_numpy(),
                             "clip_path": df["clip_path"][bad].to_numpy(),
                             "reason": [r for r in reasons if r is not None]})
    ok = df[~bad].copy()
    for key in ("height", "width", "fps"):
        ok[key] = [found[p][key] for p in ok["clip_path"]]
    return ok, problems


# ---------------------------------------------------------------------------------------------------------
# The dataset


def _transforms(sampling: ClipSampling, train: bool):
    """torchvision.transforms.v2 pipeline on a uint8 video [T, 3, H, W] -> float [T, 3, H', W']: random crop,
    flip [and RandAugment] for training; testing only converts (see :func:`spatial_crops`)."""
    from torchvision.transforms import v2

    steps = [v2.RandomCrop(sampling.crop, pad_if_needed=True), v2.RandomHorizontalFlip()] if train else []
    if train and sampling.randaugment is not None:
        magnitude, ops = sampling.randaugment
        steps.append(v2.RandAugment(num_ops=ops, magnitude=magnitude))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(KINETICS_MEAN, KINETICS_STD)]
    return v2.Compose(steps)


def crop_offsets(length: int, size: int, count: int) -> list[int]:
    """Start offsets of ``count`` crops of ``size`` along a side of ``length`` px: the centre for one crop
    (rounded up, as PySlowFast's ``uniform_crop``), else evenly from the first to the last position."""
    if count == 1:
        return [int(math.ceil((length - size) / 2))]
    return [int(math.ceil(k * (length - size) / (count - 1))) for k in range(count)]


def spatial_crops(video: torch.Tensor, size: int, count: int) -> list[torch.Tensor]:
    """``count`` crops of ``size`` x ``size`` of a video [..., H, W]: along the longer side at
    :func:`crop_offsets`, centred on the shorter one. Sides shorter than ``size`` are zero-padded first."""
    height, width = video.shape[-2:]
    if height < size or width < size:
        pad_w, pad_h = max(size - width, 0), max(size - height, 0)
        video = torch.nn.functional.pad(video, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        height, width = video.shape[-2:]
    if height > width:
        left = crop_offsets(width, size, 1)[0]
        return [video[..., top:top + size, left:left + size] for top in crop_offsets(height, size, count)]
    top = crop_offsets(height, size, 1)[0]
    return [video[..., top:top + size, left:left + size] for left in crop_offsets(width, size, count)]


class ClipDataset(torch.utils.data.Dataset):
    """Clips of ``df`` (from :func:`load_clips`, best after :func:`scan_clips`) as model inputs.

    Items are looked up by ``(row position, epoch)`` so that sampling and augmentation depend only on
    (seed, epoch, clip), whatever the number of workers. An item is a dict: ``video`` float [3, T, crop, crop]
    (training) or [V, 3, T, test_crop, test_crop] (testing, V = ``views`` x ``spatial_crops``, crops of one
    temporal view together), ``label`` int, ``index`` (row position),
    ``error`` ('' or why the clip could not be decoded; its video is then zeros).
    """

    def __init__(self, df: pd.DataFrame, sampling: ClipSampling, train: bool, seed: int = 0):
        self.df = df.reset_index(drop=True)
        self.sampling, self.train, self.seed = sampling, train, seed
        self.transform = _transforms(sampling, train)

    def __len__(self) -> int:
        return len(self.df)

    @property
    def short_side(self) -> int:
        return self.sampling.short_side if self.train else self.sampling.test_short_side

    def _size(self, row) -> tuple[int, int] | None:
        height, width = getattr(row, "height", None), getattr(row, "width", None)
        if not height or not width:
            return None
        scale = self.short_side / min(height, width)
        return max(self.short_side, round(height * scale)), max(self.short_side, round(width * scale))

    def _decode(self, row, position: float) -> np.ndarray:
        window = None if math.isnan(row.window_start) else (float(row.window_start), float(row.window_end))
        select = StridedWindow(self.sampling.frames, self.sampling.stride, position)
        frames = read_video(row.clip_path, select, window=window, size=self._size(row))
        if self._size(row) is None:
            frames = _resize_short_side(frames, self.short_side)
        return frames

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        row = next(self.df.iloc[[index]].itertuples())
        s = self.sampling
        views, error = [], ""
        for view, position in enumerate(s.positions(self.train, self.seed, epoch, index)):
            try:
                frames = self._decode(row, position)
            except (VideoDecodeError, ValueError, OSError) as err:
                error = str(err)
                break
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(self.seed, "augment", epoch, index, view))
                video = self.transform(_as_video(frames))
            crops = [video] if self.train else spatial_crops(video, s.test_crop, s.spatial_crops)
            views += [crop.permute(1, 0, 2, 3).contiguous() for crop in crops]
        if error:
            count, size = (1, s.crop) if self.train else (s.test_views, s.test_crop)
            views = [torch.zeros(3, s.frames, size, size) for _ in range(count)]
        video = views[0] if self.train else torch.stack(views)
        return {"video": video, "label": int(row.label), "index": int(index), "error": error}


def _as_video(frames: np.ndarray):
    """uint8 [T, H, W, 3] -> torchvision Video tv_tensor [T, 3, H, W]."""
    from torchvision import tv_tensors

    return tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))


def _resize_short_side(frames: np.ndarray, short_side: int) -> np.ndarray:
    """Resize uint8 [T, H, W, 3] so that min(H, W) == short_side (area filter when shrinking)."""
    import cv2

    height, width = frames.shape[1:3]
    scale = short_side / min(height, width)
    size = (max(short_side, round(width * scale)), max(short_side, round(height * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, size, interpolation=interp) for f in frames])


def describe_problems(problems: pd.DataFrame, limit: int = 20) -> str:
    """Human-readable list of unreadable clips (first ``limit``), for logs and reports."""
    if problems.empty:
        return "all clips readable"
    lines = [f"{len(problems)} unreadable clip(s):"]
    lines += [f"  row {r.row} ({r.video_id}) {r.clip_path}: {r.reason}" for r in problems.head(limit).itertuples()]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)
