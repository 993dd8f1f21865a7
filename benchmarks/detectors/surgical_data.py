"""Training data of the surgical detectors, read from the real datasets' formats (OphNet CSVs, Ophora-160K CSVs).

- :func:`load_runs`: an OphNet CSV (``video_id,start,end,split,surgery_id,phase_id[,operation_id]``) and the
  folder of its untrimmed videos (``<videos_root>/<video_id>.mp4``) -> :class:`Run` s. A run is a stretch of
  one video in one phase: consecutive rows of the same video and phase whose times touch (OphNet's operation
  rows inside a phase, or one phase row). Each run keeps at most ``max_frames`` consecutive frames (its middle
  ones) as detector input, and a label per frame: phase, operation (-1 where the CSV has none), and, for an
  OphSim world (a ``world.json`` two folders above the CSV), the operation's instrument and the patient's iris
  colour and eye side. The frames stay in time order: the video detector's arrow-of-time branch learns from it.
- :func:`load_pairs`: an Ophora-160K CSV (``clip id,instruction``, clips in ``clips/``) -> :class:`Pair` s.

Frames become detector input with :func:`benchmarks.detectors.surgical.to_input`, the function evaluation
uses, and are held as float16 [T, 3, 64, 64] (24 KB a frame): ``max_frames`` bounds memory per run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.detectors.surgical import to_input
from ophora.data.manifests import read_instruction_set, read_ophnet_csv
from ophora.data.video import Consecutive, probe, read_video
from ophora.sim.patient import IRIS_COLORS
from ophora.sim.phases import operations

__all__ = ["Run", "Pair", "ANATOMY", "INSTRUMENTS", "CAPTURE_CLASSES", "SEVERITY_BINS", "CAPTURE_RANGES", "load_runs",
           "load_pairs", "middle_frames", "capture_degrade", "capture_degrade_together"]

EYE_SIDES = ("left", "right")
ANATOMY = {"iris": IRIS_COLORS, "side": EYE_SIDES}
INSTRUMENTS = tuple(sorted({op.instrument for op in operations()}))
_TOUCH_S = 0.5  # rows of one phase whose times are this close (seconds) form one run


@dataclass
class Run:
    """One stretch of video in one phase: ``frames`` float16 [T, 3, 64, 64] in [0, 1], ``labels``
    {head: int64 [T]} (-1: no label for that frame); frames in time order."""

    key: str
    frames: torch.Tensor
    labels: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Pair:
    """One instruction-clip pair: ``frames`` float16 [T, 3, 64, 64] in [0, 1] and the instruction."""

    key: str
    frames: torch.Tensor
    text: str


def middle_frames(path: Path, max_frames: int, window: tuple[float, float] | None = None) -> tuple[np.ndarray, int]:
    """(uint8 [T, H, W, 3], index of the first kept frame within the window): the middle ``max_frames``
    consecutive frames of ``path`` (or of its ``window`` in seconds), all of them when fewer."""
    info = probe(path)
    first = 0 if window is None else int(np.ceil(window[0] * info.fps - 1e-6))
    stop = info.num_frames if window is None else min(int(np.ceil(window[1] * info.fps - 1e-6)), info.num_frames)
    count = stop - first
    offset = max((count - max_frames) // 2, 0)
    frames = read_video(path, select=Consecutive(min(count, max_frames), offset), window=window)
    return frames, offset


def _runs_of(frame) -> list[list[int]]:
    """Row indices grouped into runs: same video and phase, each row starting within _TOUCH_S of the last end."""
    order = frame.sort_values(["video_id", "start"], kind="stable").index.tolist()
    runs: list[list[int]] = []
    for i in order:
        row, last = frame.loc[i], frame.loc[runs[-1][-1]] if runs else None
        if last is not None and row.video_id == last.video_id and row.phase_id == last.phase_id \
                and row.start - last.end <= _TOUCH_S:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _world_patients(csv: Path) -> dict[str, dict] | None:
    """An OphSim world's patients by case id (``world.json`` beside the ``ophnet/`` folder), else None."""
    world = csv.resolve().parent.parent / "world.json"
    if not world.is_file():
        return None
    return json.loads(world.read_text()).get("patients")


def _frame_labels(frame, rows: list[int], times: np.ndarray) -> dict[str, np.ndarray]:
    """Phase and operation of each frame time (seconds): the row whose [start, end) holds it (-1 if none)."""
    phase = np.full(len(times), -1, np.int64)
    operation = np.full(len(times), -1, np.int64)
    for i in rows:
        row = frame.loc[i]
        inside = (times >= row.start - 1e-6) & (times < row.end - 1e-6)
        phase[inside] = row.phase_id
        if "operation_id" in frame.columns:
            operation[inside] = row.operation_id
    phase[phase < 0] = frame.loc[rows[0]].phase_id  # frames between touching rows keep the run's phase
    return {"phase": phase, "operation": operation}


def _ophsim_labels(labels: dict[str, np.ndarray], patient: dict) -> dict[str, np.ndarray]:
    """OphSim's extra ground truth: the instrument of each frame's operation, the patient's iris and eye side."""
    by_op = {op.op_id: INSTRUMENTS.index(op.instrument) for op in operations()}
    n = len(labels["phase"])
    return {**labels,
            "instrument": np.array([by_op.get(int(o), -1) for o in labels["operation"]], np.int64),
            "iris": np.full(n, IRIS_COLORS.index(patient["iris_color"]), np.int64),
            "side": np.full(n, EYE_SIDES.index(patient["eye_side"]), np.int64)}


def load_runs(csv: str | Path, videos_root: str | Path, max_frames: int = 32, split: str | None = "train",
              prefix: str = "") -> list[Run]:
    """The runs of an OphNet CSV's rows (``split`` only, or all with None); see the module docstring.

    Videos are ``<videos_root>/<video_id>.mp4`` (untrimmed); a missing one raises naming the path and the row.
    """
    csv, videos_root = Path(csv), Path(videos_root)
    frame = read_ophnet_csv(csv)
    if split is not None:
        frame = frame[frame["split"] == split]
    patients = _world_patients(csv)
    runs = []
    for rows in _runs_of(frame):
        first = frame.loc[rows[0]]
        path = videos_root / f"{first.video_id}.mp4"
        if not path.is_file():
            raise FileNotFoundError(f"{csv}: video {first.video_id!r} (row at {first.start} s) expected at {path}; "
                                    "--videos-root must hold the untrimmed videos as <video_id>.mp4")
        window = (float(first.start), float(frame.loc[rows[-1]].end))
        pixels, offset = middle_frames(path, max_frames, window)
        fps = probe(path).fps
        start_frame = int(np.ceil(window[0] * fps - 1e-6)) + offset
        times = (start_frame + np.arange(len(pixels))) / fps
        labels = _frame_labels(frame, rows, times)
        if patients is not None and first.video_id in patients:
            labels = _ophsim_labels(labels, patients[first.video_id])
        runs.append(Run(f"{prefix}{first.video_id}@{window[0]:g}", to_input(pixels).half(), labels))
    return runs


def load_pairs(csv: str | Path, max_frames: int = 32, prefix: str = "") -> list[Pair]:
    """Instruction-clip pairs of an Ophora-160K CSV, each clip's middle ``max_frames`` frames."""
    pairs = []
    for clip in read_instruction_set(csv):
        pixels, _ = middle_frames(clip.path, max_frames)
        pairs.append(Pair(f"{prefix}{clip.clip_id}", to_input(pixels).half(), clip.instruction))
    return pairs


# ---------------------------------------------------------------------------------------------------------
# capture quality: the frame detector's self-supervised auxiliary objective

CAPTURE_CLASSES = ("clean", "noise", "compression", "blur", "resolution", "colour")
SEVERITY_BINS = 4  # severity classes: 0 clean, 1..4 the quarters of each kind's range
# Parameter range of each kind, drawn uniformly per frame (deliberately not the sanity suite's strengths): noise
# std (grey levels; Gaussian, independent per pixel and channel), JPEG quality (the range runs from mild to
# strong), Gaussian blur sigma (px), downscale factor (bilinear with antialiasing down, bicubic up), colour cast
# magnitude (grey levels along a random RGB direction).
CAPTURE_RANGES = {"noise": (3.0, 30.0), "compression": (85.0, 10.0), "blur": (0.5, 2.5), "resolution": (1.5, 4.0),
                  "colour": (6.0, 50.0)}


def _capture_one(frame: np.ndarray, kind: str, value: float, g: np.random.Generator) -> np.ndarray:
    """One uint8 [H, W, 3] frame through one capture degradation with parameter ``value``."""
    import cv2

    h, w = frame.shape[:2]
    if kind == "noise":
        out = frame.astype(np.float32) + g.normal(0.0, value, frame.shape).astype(np.float32)
    elif kind == "compression":
        ok, data = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(round(value))])
        out = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32)
    elif kind == "blur":
        out = cv2.GaussianBlur(frame, (0, 0), sigmaX=value, borderType=cv2.BORDER_REFLECT).astype(np.float32)
    elif kind == "resolution":
        x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
        small = (max(1, round(h / value)), max(1, round(w / value)))
        x = torch.nn.functional.interpolate(x, size=small, mode="bilinear", antialias=True, align_corners=False)
        out = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)[0]
        out = out.permute(1, 2, 0).numpy()
    else:
        direction = g.normal(size=3)
        out = frame.astype(np.float32) + (value * direction / np.linalg.norm(direction)).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _draw_capture(g: np.random.Generator) -> tuple[int, float, float]:
    """One random capture degradation: (kind index into :data:`CAPTURE_CLASSES`, 1.., position u in its range
    0..1, parameter value)."""
    k = int(g.integers(1, len(CAPTURE_CLASSES)))
    u = float(g.random())
    lo, hi = CAPTURE_RANGES[CAPTURE_CLASSES[k]]
    return k, u, lo + u * (hi - lo)


def capture_degrade_together(frames: torch.Tensor, g: np.random.Generator, fraction: float = 0.5) -> torch.Tensor:
    """A ``fraction`` of the items of ``frames`` (float [N, K, 3, H, W] in [0, 1]: N items of K frames each)
    through a random capture degradation: the same kind, strength and colour-cast direction for the K frames of
    an item, noise drawn afresh per frame, as in a degraded video. Returns float32 [N, K, 3, H, W], every frame
    quantised to 8 bits."""
    x = frames.float().clamp(0, 1)
    pixels = (x.permute(0, 1, 3, 4, 2) * 255).round().to(torch.uint8).numpy()
    out = pixels.copy()
    for i in np.flatnonzero(g.random(len(x)) < fraction):
        k, _, value = _draw_capture(g)
        name, key = CAPTURE_CLASSES[k], int(g.integers(2 ** 62))
        for k in range(x.shape[1]):  # one colour-cast direction per item; fresh noise per frame
            frame_g = np.random.default_rng([key, k] if name == "noise" else key)
            out[i, k] = _capture_one(pixels[i, k], name, value, frame_g)
    return torch.from_numpy(out).permute(0, 1, 4, 2, 3).float().div_(255.0)


def capture_degrade(frames: torch.Tensor, g: np.random.Generator,
                    fraction: float = 0.5) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """A ``fraction`` of ``frames`` (float [N, 3, H, W] in [0, 1]) through a random capture degradation.

    Returns (frames float32 [N, 3, H, W], kind int64 [N] (index into :data:`CAPTURE_CLASSES`, 0 clean),
    severity int64 [N] (0 clean, 1..:data:`SEVERITY_BINS` the quarter of the kind's range)). Every frame is
    quantised to 8 bits as a decoded video frame is."""
    x = frames.float().clamp(0, 1)
    pixels = (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    kind = np.zeros(len(x), np.int64)
    severity = np.zeros(len(x), np.int64)
    out = pixels.copy()
    for i in np.flatnonzero(g.random(len(x)) < fraction):
        k, u, value = _draw_capture(g)
        out[i] = _capture_one(pixels[i], CAPTURE_CLASSES[k], value, g)
        kind[i], severity[i] = k, 1 + min(int(u * SEVERITY_BINS), SEVERITY_BINS - 1)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0), kind, severity
