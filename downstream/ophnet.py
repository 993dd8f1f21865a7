"""OphNet2024 clip datasets for phase and operation recognition (and any CSV in the OphNet format: OphSim's,
synthetic sets).

A clip is one CSV row (``video_id,start,end,split,surgery_id,phase_id[,operation_id][,segment_path]``, read by
:func:`ophora.data.manifests.read_ophnet_csv`). Its frames come from one of two places:

- ``trim="segments"``: the trimmed clip ``<segments_root>/<segment_path>`` (OphSim, the trimmed OphNet release,
  synthetic sets whose ``segment_path`` is relative to their CSV's folder);
- ``trim="untrimmed"``: the untrimmed video ``<videos_root>/<video_id>.mp4`` cut on the fly to [start, end)
  seconds (the challenge CSVs, which have no ``segment_path``);
- ``trim="auto"``: segments when the CSV has ``segment_path``, else untrimmed.

**Sampling** (:class:`ClipSampling`, one per model recipe). **In seconds** (``target_fps`` set, the paper
recipes: 30 fps, PySlowFast's ``DATA.TARGET_FPS``): a window of ``frames * stride / target_fps`` seconds
(``frames * stride * fps / target_fps`` frames of a clip at ``fps``) with ``frames`` indices spaced evenly across
it (:class:`TimedWindow`, PySlowFast's ``get_start_end_idx`` + ``temporal_sampling``), so a real clip at 15, 30
or 60 fps and a synthetic clip at 8 fps are seen over the same time (the 8 fps clip's frames repeat).
**In source frames** (``target_fps: null``, the earlier behaviour): ``frames`` frames ``stride`` source frames
apart, covering ``span = (frames - 1) * stride + 1`` frames (:class:`StridedWindow`), so the time depends on
the source rate. Either window starts at ``position * (N - window)`` for a clip of N frames: a random position in
[0, 1] per (seed, epoch, clip) for training, ``views`` evenly spaced positions (0.5 for one view) for testing.
**Short clips**: when a clip is shorter than the window it starts at frame 0 and every index past the end is
clamped to the last frame, so the last frame repeats (PySlowFast's ``temporal_sampling`` does the same).
:func:`window_report` says, per data source, the frame rates, the window in seconds and the time it covers.
Frames are resized so the shorter side is ``short_side`` pixels (drawn in ``jitter`` for training when set),
then augmented for training as the recipe says (:func:`_transforms`: timm RandAugment, random or
random-resized crop, flip, random erasing; ``num_sample`` augmentations of one decoded window) and normalised
with the Kinetics mean and std used by PySlowFast (0.45, 0.225). **Testing** follows PySlowFast's multi-view test:
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

from ophora.data.frames import FrameSelection
from ophora.data.manifests import read_ophnet_csv
from ophora.data.video import Strided, VideoDecodeError, probe, read_video
from ophora.registry import lookup
from ophora.seeding import derive_seed, rng

__all__ = ["TASKS", "OPHNET_NUM_CLASSES", "KINETICS_MEAN", "KINETICS_STD", "ClipSampling", "StridedWindow",
           "TimedWindow", "window_report",
           "crop_offsets", "spatial_crops",
           "ClipSource", "load_clips", "scan_clips", "describe_problems", "ClipDataset", "num_classes_of"]

TASKS = {"phase": "phase_id", "operation": "operation_id"}
OPHNET_NUM_CLASSES = {"phase": 52, "operation": 107}  # OphNet2024 challenge: "Others" is phase 51, operation 106
KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
Trim = Literal["auto", "segments", "untrimmed"]


@dataclass(frozen=True)
class ClipSampling:
    """How a model sees a clip: ``frames`` frames ``stride`` frames apart, resized to ``short_side`` px
    (shorter side) and cropped to ``crop`` px for training; at test time ``views`` temporal views times
    ``spatial_crops`` crops of ``test_crop`` px (default ``crop``; see the module docstring), averaged.

    ``target_fps``: the stride counts frames of the clip resampled to this rate (PySlowFast's
    ``DATA.TARGET_FPS``, 30), so a window spans ``frames * stride / target_fps`` seconds whatever the source rate;
    None counts source frames (the suite's earlier behaviour, an ablation). Training augmentation: ``jitter``
    (a, b) draws the shorter side in [a, b] px per clip (SlowFast's short-side jitter) instead of ``short_side``;
    ``rrc_scale`` (lo, hi) replaces the random crop by a random-resized crop of that area fraction and aspect
    ``rrc_ratio`` (MViTv2); ``randaugment``: a timm RandAugment string (``rand-m7-n4-mstd0.5-inc1``,
    :mod:`downstream.augment`), with ``randaugment_impl: torchvision`` the earlier torchvision RandAugment at that
    m and n; ``erase_prob``: PySlowFast's cube random erasing; ``num_sample``: augmented samples per decoded clip
    (repeated augmentation)."""

    frames: int
    stride: int
    crop: int
    short_side: int
    views: int = 1
    randaugment: str | None = None
    spatial_crops: int = 1
    test_crop: int | None = None
    target_fps: float | None = None
    jitter: tuple[int, int] | None = None
    rrc_scale: tuple[float, float] | None = None
    rrc_ratio: tuple[float, float] = (0.75, 4 / 3)
    randaugment_impl: str = "timm"
    erase_prob: float = 0.0
    num_sample: int = 1
    test_offset: bool = True

    def __post_init__(self):
        if self.test_crop is None:
            object.__setattr__(self, "test_crop", self.crop)
        if min(self.frames, self.stride, self.crop, self.short_side, self.views, self.spatial_crops,
               self.test_crop, self.num_sample) < 1:
            raise ValueError(f"ClipSampling fields must be >= 1, got {self}")
        if self.short_side < self.crop:
            raise ValueError(f"short_side ({self.short_side}) must be >= crop ({self.crop})")
        if self.test_short_side < self.test_crop:
            raise ValueError(f"short_side ({self.short_side}) must be >= test_crop ({self.test_crop})")
        if self.target_fps is not None and self.target_fps <= 0:
            raise ValueError(f"target_fps must be positive or None, got {self.target_fps}")
        if self.jitter is not None:
            object.__setattr__(self, "jitter", tuple(int(v) for v in self.jitter))
            if len(self.jitter) != 2 or not self.crop <= self.jitter[0] <= self.jitter[1]:
                raise ValueError(f"jitter must be [low, high] with crop ({self.crop}) <= low <= high, "
                                 f"got {list(self.jitter)}")
        if self.rrc_scale is not None:
            object.__setattr__(self, "rrc_scale", tuple(float(v) for v in self.rrc_scale))
            if len(self.rrc_scale) != 2 or not 0 < self.rrc_scale[0] <= self.rrc_scale[1] <= 1:
                raise ValueError(f"rrc_scale must be [low, high] with 0 < low <= high <= 1, got {self.rrc_scale}")
        object.__setattr__(self, "rrc_ratio", tuple(float(v) for v in self.rrc_ratio))
        if self.randaugment_impl not in ("timm", "torchvision"):
            raise ValueError(f"randaugment_impl must be 'timm' or 'torchvision', got {self.randaugment_impl!r}")
        if self.randaugment is not None:
            from downstream.augment import parse_randaugment

            if not isinstance(self.randaugment, str):
                raise ValueError(f"randaugment must be a timm RandAugment string such as 'rand-m7-n4-mstd0.5-inc1' "
                                 f"(the earlier [m, n] pair of torchvision's RandAugment is randaugment: rand-m<m>-n<n>"
                                 f" with randaugment_impl: torchvision), got {self.randaugment!r}")
            parse_randaugment(self.randaugment)
        if not 0.0 <= self.erase_prob <= 1.0:
            raise ValueError(f"erase_prob must be in [0, 1], got {self.erase_prob}")

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
        """Source frames covered by one sample when frames are counted at the source rate (``target_fps`` None)."""
        return (self.frames - 1) * self.stride + 1

    def window_seconds(self, fps: float) -> float:
        """Seconds one sample spans in a clip at ``fps`` that is long enough: ``frames * stride / target_fps``
        (PySlowFast's clip size), or ``span / fps`` when frames are counted at the source rate."""
        if self.target_fps is not None:
            return self.frames * self.stride / self.target_fps
        return self.span / fps

    def selection(self, position: float) -> "StridedWindow | TimedWindow":
        """The frame selection of one sample at ``position`` in [0, 1]."""
        if self.target_fps is not None:
            return TimedWindow(self.frames, self.stride, position, self.target_fps)
        return StridedWindow(self.frames, self.stride, position)

    def positions(self, train: bool, seed: int, epoch: int, index: int) -> list[float]:
        """Start positions in [0, 1]: one random (training) or ``views`` evenly spaced (testing). PySlowFast's
        ``get_start_end_idx``: with ``test_offset`` (``DATA.USE_OFFSET_SAMPLING``, MViTv2) from the first to the
        last position (the centre for one view); without it (the default, SlowFast) ``k / views`` for view k,
        so the last view does not reach the end (the start for one view)."""
        if train:
            return [float(rng(seed, "position", epoch, index).random())]
        if not self.test_offset:
            return [k / self.views for k in range(self.views)]
        if self.views == 1:
            return [0.5]
        return [k / (self.views - 1) for k in range(self.views)]


@dataclass(frozen=True)
class TimedWindow(FrameSelection):
    """PySlowFast's sampling in seconds (``decoder.get_start_end_idx`` + ``temporal_sampling``): a window of
    ``frames * stride / target_fps`` seconds, i.e. ``frames * stride * fps / target_fps`` source frames, starts
    ``position`` of the way into the clip (0 first, 1 as late as it fits; 0 when the clip is shorter) and
    ``frames`` indices are spaced evenly from its first to its last frame (linspace, truncated); indices past
    the clip's end repeat its last frame. The window covers the same time at any source rate."""

    frames: int
    stride: int
    position: float
    target_fps: float

    def indices(self, num_frames: int, fps: float) -> np.ndarray:
        if num_frames < 1:
            raise ValueError("the clip has no frame")
        if fps <= 0:
            raise ValueError(f"the clip's frame rate must be positive, got {fps}")
        size = self.frames * self.stride * fps / self.target_fps
        start = min(max(self.position, 0.0), 1.0) * max(num_frames - size, 0.0)
        index = np.linspace(start, start + size - 1, self.frames)
        return np.clip(index, 0, num_frames - 1).astype(np.int64)


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
    whole = np.array([found[p]["duration"] for p in ok["clip_path"]], dtype=float)
    start, end = ok["window_start"].to_numpy(float), ok["window_end"].to_numpy(float)
    windowed = ~np.isnan(start)
    ok["duration"] = np.where(windowed, np.minimum(np.nan_to_num(end, nan=0.0), whole) - np.nan_to_num(start), whole)
    return ok, problems


def window_report(df: pd.DataFrame, sampling: ClipSampling) -> dict:
    """How much time one training sample of ``sampling`` covers in the clips of ``df`` (rows of
    :func:`scan_clips`, with ``fps`` and ``duration``): the clips' frame rates and durations (min, median, max),
    the window in seconds (``frames * stride / target_fps``, or the span of source frames at each clip's rate),
    the seconds it actually covers (the window, or the whole clip when shorter: its last frame then repeats) and
    how many clips are shorter than the window."""
    if not len(df) or "fps" not in df.columns:
        return {"clips": int(len(df))}
    fps = df["fps"].to_numpy(float)
    window = np.array([sampling.window_seconds(f) for f in fps])
    duration = df["duration"].to_numpy(float) if "duration" in df.columns else np.full(len(df), np.nan)
    covered = np.where(np.isnan(duration), window, np.minimum(window, duration))

    def spread(values: np.ndarray) -> list[float]:
        values = values[~np.isnan(values)]
        return [round(float(v), 4) for v in (values.min(), np.median(values), values.max())] if values.size else []

    return {"clips": int(len(df)), "fps": spread(fps), "clip_s": spread(duration), "window_s": spread(window),
            "covered_s": spread(covered), "shorter_than_window": int(np.sum(duration < window - 1e-9)),
            "sampling": "seconds at %g fps" % sampling.target_fps if sampling.target_fps else "source frames"}


# ---------------------------------------------------------------------------------------------------------
# The dataset


def _transforms(sampling: ClipSampling, train: bool):
    """The pipeline on a uint8 video [T, 3, H, W] -> float [T, 3, H', W'] (torchvision.transforms.v2 and
    :mod:`downstream.augment`). Training, in PySlowFast's order: timm RandAugment on the whole frames, a random
    crop (or random-resized crop), a horizontal flip, normalisation, random erasing; with
    ``randaugment_impl: torchvision`` the earlier pipeline (crop, flip, torchvision RandAugment). Testing only
    converts (see :func:`spatial_crops`)."""
    from torchvision.transforms import v2

    from downstream.augment import VideoRandAugment, VideoRandomErasing, parse_randaugment

    normalise = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(KINETICS_MEAN, KINETICS_STD)]
    if not train:
        return v2.Compose(normalise)
    steps = []
    timm = sampling.randaugment is not None and sampling.randaugment_impl == "timm"
    if timm:
        steps.append(VideoRandAugment(sampling.randaugment))
    if sampling.rrc_scale is not None:
        # PySlowFast's random_resized_crop: torchvision's crop parameters, then bilinear interpolation without
        # antialiasing (F.interpolate, align_corners=False)
        steps.append(v2.RandomResizedCrop(sampling.crop, scale=sampling.rrc_scale, ratio=sampling.rrc_ratio,
                                          antialias=False))
    else:
        steps.append(v2.RandomCrop(sampling.crop, pad_if_needed=True))
    steps.append(v2.RandomHorizontalFlip())
    if sampling.randaugment is not None and not timm:
        spec = parse_randaugment(sampling.randaugment)
        steps.append(v2.RandAugment(num_ops=spec.num_ops, magnitude=int(spec.magnitude)))
    steps += normalise
    if sampling.erase_prob > 0:
        steps.append(VideoRandomErasing(sampling.erase_prob))
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
    (training; [S, 3, T, crop, crop] with ``num_sample`` S > 1: S augmentations of one decoded window) or
    [V, 3, T, test_crop, test_crop] (testing, V = ``views`` x ``spatial_crops``, crops of one temporal view
    together), ``label`` int, ``index`` (row position), ``error`` ('' or why the clip could not be decoded; its
    video is then zeros).
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

    def short_side_of(self, epoch, index: int) -> int:
        """The shorter side frames are decoded at: drawn in ``jitter`` per (seed, epoch, clip) for training
        (PySlowFast: ``int(round(uniform(low, high)))``), else :attr:`short_side`."""
        if self.train and self.sampling.jitter is not None:
            low, high = self.sampling.jitter
            return int(round(rng(self.seed, "jitter", epoch, index).uniform(low, high)))
        return self.short_side

    @staticmethod
    def _size(row, short_side: int) -> tuple[int, int] | None:
        height, width = getattr(row, "height", None), getattr(row, "width", None)
        if not height or not width:
            return None
        scale = short_side / min(height, width)
        return max(short_side, round(height * scale)), max(short_side, round(width * scale))

    def _decode(self, row, position: float, short_side: int | None = None) -> np.ndarray:
        short_side = short_side or self.short_side
        window = None if math.isnan(row.window_start) else (float(row.window_start), float(row.window_end))
        size = self._size(row, short_side)
        frames = read_video(row.clip_path, self.sampling.selection(position), window=window, size=size)
        if size is None:
            frames = _resize_short_side(frames, short_side)
        return frames

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        row = next(self.df.iloc[[index]].itertuples())
        s = self.sampling
        samples = s.num_sample if self.train else 1
        views, error = [], ""
        for view, position in enumerate(s.positions(self.train, self.seed, epoch, index)):
            try:
                frames = self._decode(row, position, self.short_side_of(epoch, index))
            except (VideoDecodeError, ValueError, OSError) as err:
                error = str(err)
                break
            for sample in range(samples):
                with torch.random.fork_rng(devices=[]):
                    keys = (epoch, index, view) if sample == 0 else (epoch, index, view, "sample", sample)
                    torch.manual_seed(derive_seed(self.seed, "augment", *keys))
                    video = self.transform(_as_video(frames))
                crops = [video] if self.train else spatial_crops(video, s.test_crop, s.spatial_crops)
                views += [crop.permute(1, 0, 2, 3).contiguous() for crop in crops]
        if error:
            count, size = (samples, s.crop) if self.train else (s.test_views, s.test_crop)
            views = [torch.zeros(3, s.frames, size, size) for _ in range(count)]
        if self.train:
            video = views[0] if samples == 1 else torch.stack(views)
        else:
            video = torch.stack(views)
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
