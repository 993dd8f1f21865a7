"""The one-call API: score generated videos against real ones from Python, from folders or from tensors.

Folders (the same run as ``python -m benchmarks.evaluate``, same numbers)::

    import ophora
    result = ophora.evaluate_videos("real_clips/", "my_videos/")                  # FID and FVD
    result = ophora.evaluate_videos("real_clips/", "my_videos/", prompts="prompts.csv")  # + CLIPScore
    result["fid"], result.intervals["fid"], result.n["fid"]                         # value, 95% CI, N

``real`` and ``fake`` are anything :func:`ophora.data.sets.load_video_set` reads (a folder of videos, a folder
with ``manifest.jsonl``, an Ophora-160K CSV, videos from official code). ``prompts``: a ``video,prompt`` CSV or
a ``{video file name or stem: prompt}`` mapping for a plain folder of generated videos. ``metrics``: None picks
FID and FVD, plus CLIPScore when the generated videos have prompts. Every other option of
:class:`benchmarks.evaluate.EvalConfig` is a keyword (``weights="pretrained"``, ``bootstrap=0``, ``seed=3``,
``protocols={"fid": "fid/ophsim-surgical"}``, ...).

Tensors, inside a training loop (:class:`VideoMetrics`)::

    scorer = ophora.VideoMetrics(["fid", "fvd"], weights="pretrained")
    for batch in real_loader:
        scorer.update(batch, real=True)              # uint8 [B, T, H, W, 3] or [B, T, 3, H, W]
    samples = model.sample(...)                      # float in [0, 1] (value_range=(-1, 1) for [-1, 1])
    scorer.update(samples, prompts=texts)            # prompts needed for clipscore
    result = scorer.compute()                        # an EvaluationResult, like evaluate_videos'
    scorer.reset(real=False)                         # keep the real statistics for the next round

A video given as a tensor goes through the protocol's own frame selection and preparation (resize, scaling)
exactly as a decoded file does, so the tensor path equals the folder path on the same frames. Videos are
identified by ``keys`` (default: ``real/000000``, ``fake/000000``, ... in the order given); the key of a real
video seeds its FVD clip offset, as a file's path relative to its folder does. Float videos are mapped from
``value_range`` to [0, 255], clamped and rounded to uint8 (what a video file would hold).

Scope: one process. Under torch.distributed, gather the videos to one rank and score them there.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from benchmarks import cache as refcache
from benchmarks import evaluate as harness
from benchmarks.evaluate import EvalConfig
from benchmarks.metrics import get as get_metric
from ophora.data.sets import VideoItem, VideoSet, load_video_set
from ophora.registry import did_you_mean

__all__ = ["EvaluationResult", "VideoMetrics", "evaluate_videos"]

_DEFAULT_METRICS = ("fid", "fvd")
_ROLES = ("real", "fake")


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """The outcome of one evaluation, typed; ``payload`` is the whole self-describing result (what
    ``python -m benchmarks.evaluate --out`` writes, less the provenance that :func:`ophora.results.write_json`
    adds when a file is written).

    ``values``: metric -> value (None where it could not be computed); ``intervals``: metric -> (low, high) of
    the 95% bootstrap interval over videos (None without one); ``n``: metric -> ``{"real": N, "fake": N}``
    videos that entered it (``"real"`` absent for CLIPScore, which reads no real video); ``protocols``: metric
    -> protocol name (every field of each is in ``payload["protocols"]``);
    ``higher_is_better``: metric -> direction; ``comparable_with_literature``: whether every detector was the
    published one; ``failed``: the inputs that could not be scored; ``path``: the result file written, if any.
    """

    values: Mapping[str, float | None]
    intervals: Mapping[str, tuple[float, float] | None]
    n: Mapping[str, Mapping[str, int]]
    protocols: Mapping[str, str]
    higher_is_better: Mapping[str, bool]
    comparable_with_literature: bool
    failed: tuple[Mapping[str, Any], ...]
    payload: Mapping[str, Any] = dataclasses.field(repr=False)
    path: Path | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], path: str | os.PathLike | None = None) -> "EvaluationResult":
        """The typed view of a result payload (``benchmarks.evaluate.evaluate``'s return value or its file)."""
        metrics = payload["metrics"]

        def counts(m: Mapping[str, Any]) -> Mapping[str, int]:
            return MappingProxyType({role: int(m[f"n_{role}"]) for role in _ROLES if m.get(f"n_{role}") is not None})

        def ci(m: Mapping[str, Any]) -> tuple[float, float] | None:
            return (float(m["ci"]["low"]), float(m["ci"]["high"])) if m.get("ci") else None

        return cls(
            values=MappingProxyType({k: m.get("value") for k, m in metrics.items()}),
            intervals=MappingProxyType({k: ci(m) for k, m in metrics.items()}),
            n=MappingProxyType({k: counts(m) for k, m in metrics.items()}),
            protocols=MappingProxyType({k: m["protocol"]["name"] for k, m in metrics.items()}),
            higher_is_better=MappingProxyType({k: get_metric(k).higher_is_better for k in metrics}),
            comparable_with_literature=bool(payload["comparable_with_literature"]),
            failed=tuple(payload.get("failed", ())),
            payload=payload, path=Path(path) if path is not None else None)

    def __getitem__(self, metric: str) -> float | None:
        """The value of ``metric``; an unknown name raises KeyError naming the metrics of this result."""
        if metric not in self.values:
            hint = did_you_mean(metric, self.values)
            raise KeyError(f"no metric {metric!r} in this result{'; ' + hint if hint else ''} (it has "
                           f"{', '.join(self.values)})")
        return self.values[metric]

    def table(self) -> str:
        """The text table ``python -m benchmarks.evaluate`` prints (values, intervals, N, protocols, notes)."""
        return harness.summary_table(dict(self.payload))


# The command's default detectors: published where their weights are present, else the shipped surgical ones.
_DEFAULT_WEIGHTS = "auto"


def _options(metrics: Sequence[str] | str, real: str, fake: str, options: Mapping[str, Any]) -> EvalConfig:
    """An EvalConfig from keyword options (``weights`` defaults to the command's default); an unknown option
    raises TypeError with the close matches."""
    fields = {f.name for f in dataclasses.fields(EvalConfig)} - {"real", "fake", "metrics"}
    unknown = sorted(set(options) - fields)
    if unknown:
        hints = [h for h in (did_you_mean(u, fields) for u in unknown) if h]
        raise TypeError(f"unknown option(s) {unknown}{'; ' + '; '.join(hints) if hints else ''}; the options are "
                        f"the fields of benchmarks.evaluate.EvalConfig: {', '.join(sorted(fields))}")
    values = {"weights": _DEFAULT_WEIGHTS, **options}
    for name in ("protocols", "detector_weights", "custom_detectors"):  # a dict is accepted for these pairs
        if isinstance(values.get(name), Mapping):
            values[name] = tuple(values[name].items())
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    return EvalConfig(real=real, fake=fake, metrics=tuple(m.strip() for name in names for m in name.split(",")
                                                          if m.strip()), **values)


def _prompts_csv(prompts: Mapping[str, str], folder: Path) -> Path:
    """A ``video,prompt`` CSV of ``prompts`` in ``folder`` (what :mod:`ophora.data.external` reads)."""
    path = folder / "prompts.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "prompt"])
        writer.writerows([str(video), str(prompt)] for video, prompt in prompts.items())
    return path


def evaluate_videos(real: str | os.PathLike, fake: str | os.PathLike,
                    prompts: str | os.PathLike | Mapping[str, str] | None = None,
                    metrics: Sequence[str] | str | None = None, *, out: str | os.PathLike | None = None,
                    progress: bool = False, **options: Any) -> EvaluationResult:
    """Score the generated videos ``fake`` against the real videos ``real``; see the module docstring.

    ``out``: also write the result JSON there (atomically, with provenance). Raises what the command reports
    as ``error:`` lines: ``benchmarks.evaluate.EvaluationInputError`` (an empty set, an unknown metric, prompts
    missing), ``FileNotFoundError`` (no such folder), ``ophora.data.manifests.ManifestError`` (a malformed
    manifest or prompts CSV), ``ophora.weights.ChecksumMismatchError``.
    """
    with tempfile.TemporaryDirectory(prefix="ophora-prompts-") as tmp:
        if isinstance(prompts, Mapping):
            prompts = _prompts_csv(prompts, Path(tmp))
        prompts = os.fspath(prompts) if prompts is not None else None
        if metrics is None:
            has_prompts = load_video_set(fake, prompts=prompts).has_prompts
            metrics = _DEFAULT_METRICS + (("clipscore",) if has_prompts else ())
        cfg = _options(metrics, os.fspath(real), os.fspath(fake),
                       {**options, "fake_prompts": prompts, "progress": progress,
                        "out": os.fspath(out) if out is not None else None})
        payload = harness.evaluate(cfg)
    return EvaluationResult.from_payload(payload, out)


def _as_uint8_videos(videos: Any, value_range: tuple[float, float]) -> list[np.ndarray]:
    """Videos as uint8 [T, H, W, 3] numpy arrays, from a tensor or array [B, T, H, W, 3] or [B, T, 3, H, W]
    (uint8, or float in ``value_range``) or a sequence of [T, H, W, 3] / [T, 3, H, W] videos."""
    if isinstance(videos, (torch.Tensor, np.ndarray)):
        if videos.ndim != 5:
            raise ValueError(f"videos: expected a 5-D batch [B, T, H, W, 3] or [B, T, 3, H, W], got shape "
                             f"{tuple(videos.shape)}" + (" (one video? add a batch dimension: videos[None])"
                                                         if videos.ndim == 4 else ""))
        batch = list(videos)
    elif isinstance(videos, Sequence) and not isinstance(videos, (str, bytes)):
        batch = list(videos)
    else:
        raise TypeError(f"videos: expected a torch.Tensor, a numpy array or a list of videos, got "
                        f"{type(videos).__name__}")
    return [_as_uint8_video(v, value_range, i) for i, v in enumerate(batch)]


def _as_uint8_video(video: Any, value_range: tuple[float, float], index: int) -> np.ndarray:
    x = torch.as_tensor(video).detach().cpu()
    if x.ndim != 4 or 3 not in (x.shape[-1], x.shape[1]):
        raise ValueError(f"videos[{index}]: expected [T, H, W, 3] or [T, 3, H, W] (3 RGB channels), got shape "
                         f"{tuple(x.shape)}")
    if x.shape[-1] != 3:
        x = x.permute(0, 2, 3, 1)
    if x.shape[0] < 1:
        raise ValueError(f"videos[{index}]: has no frames (shape {tuple(x.shape)})")
    if x.dtype == torch.uint8:
        return np.ascontiguousarray(x.numpy())
    if not x.is_floating_point():
        raise TypeError(f"videos[{index}]: expected uint8 or a float dtype, got {x.dtype}")
    low, high = value_range
    scaled = (x.double() - low) * (255.0 / (high - low))
    return np.ascontiguousarray(scaled.clamp_(0, 255).round_().to(torch.uint8).numpy())


class VideoMetrics:
    """Metrics of generated videos given as tensors (see the module docstring): ``update`` real and generated
    batches, then ``compute`` an :class:`EvaluationResult`. Detectors load once, at construction.

    ``metrics``: registered metric names (default fid, fvd); ``device``: where detectors run (default CUDA when
    available); ``value_range``: the range of float videos; ``options``: fields of
    :class:`benchmarks.evaluate.EvalConfig` (``weights``, ``protocols``, ``bootstrap``, ``seed``, ``fid_frames``,
    ``clip_model``, ``tiny_i3d``, ...). States are mergeable statistics (per-row features spilled to a temporary
    file only when bootstrap intervals need them), so memory does not grow with the number of videos.
    """

    def __init__(self, metrics: Sequence[str] | str = _DEFAULT_METRICS, *, device: str | torch.device | None = None,
                 value_range: tuple[float, float] = (0.0, 1.0), **options: Any) -> None:
        if not value_range[1] > value_range[0]:
            raise ValueError(f"value_range: expected (low, high) with high > low, got {value_range}")
        folder_only = sorted(k for k in ("geometry", "n_real", "n_fake", "fake_prompts", "out")
                             if options.get(k) not in (None, "native"))
        if folder_only:
            raise TypeError(f"option(s) {folder_only} apply to folders (evaluate_videos), not to tensors: bring the "
                            "videos to one size and frame count, and pass as many as you mean to score")
        self.config = _options(metrics, "<tensors:real>", "<tensors:fake>", {**options, "progress": False})
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        resolved, choices = harness.resolve_auto(self.config)
        self._run = harness._Run(resolved, harness.resolve_metrics(resolved))
        self._run.extra["detector_choice"] = choices
        harness.load_detectors(self._run, None, self.device)
        self._tmp = tempfile.TemporaryDirectory(prefix="ophora-videometrics-", ignore_cleanup_errors=True)
        self._items: dict[str, list[VideoItem]] = {}
        self._states: dict[str, dict[str, Any]] = {}
        self._failed: list[dict[str, Any]] = []
        self._resets = 0
        self.reset()

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.config.metrics

    def videos(self, role: str = "fake") -> int:
        """Videos given so far to the ``real`` or ``fake`` side."""
        return len(self._items[role])

    def reset(self, real: bool = True, fake: bool = True) -> None:
        """Forget the videos given so far (``real=False`` keeps the real side's statistics)."""
        self._resets += 1
        roles = [r for r, keep in zip(_ROLES, (real, fake)) if keep]
        views = {"real": self._run.real_views(), "fake": self._run.views()}
        empty = VideoSet("<tensors>", "tensors", Path(self._tmp.name), ())
        for role in roles:
            self._items[role] = []
            self._states[role] = {
                v: self._run.metrics[v].new_state(
                    video_set=empty, detector=self._run.detectors[v][0],
                    rows_path=Path(self._tmp.name) / f"{role}-{v}-{self._resets}.f16" if self._run.needs_rows(v)
                    else None)
                for v in views[role]}
        self._failed = [f for f in self._failed if f["set"] not in roles]

    def update(self, videos: Any, real: bool = False, prompts: Sequence[str] | None = None,
               keys: Sequence[str] | None = None) -> None:
        """Add a batch of videos to the real (``real=True``) or generated side.

        ``videos``: uint8 or float [B, T, H, W, 3] or [B, T, 3, H, W] (torch or numpy), or a list of [T, H, W, 3]
        / [T, 3, H, W] videos of different lengths; ``prompts``: one per video, required on the generated side
        when a metric needs prompts (clipscore, recall); ``keys``: one name per video (default: role/position).
        A video too short for a protocol (FVD's 16 frames) is recorded under ``failed`` and left out of that
        metric, as a short file is.
        """
        role = "real" if real else "fake"
        frames = _as_uint8_videos(videos, self.value_range)
        first = len(self._items[role])
        keys = [f"{role}/{first + i:06d}" for i in range(len(frames))] if keys is None else list(keys)
        prompts = self._check_prompts(role, prompts, len(frames))
        if len(keys) != len(frames):
            raise ValueError(f"keys: {len(keys)} given for {len(frames)} videos; expected one per video")
        items = [VideoItem(Path(k), k, p) for k, p in zip(keys, prompts)]
        states = self._states[role]
        for state in states.values():  # per-video records (CLIPScore, recall) index their keys and prompts
            if hasattr(state, "keys") and hasattr(state, "prompts"):
                state.keys.extend(keys)
                state.prompts.extend(prompts)
        self._items[role].extend(items)
        for view, state in states.items():
            self._feed(role, view, state, range(first, first + len(frames)), frames)

    def _check_prompts(self, role: str, prompts: Sequence[str] | None, count: int) -> list[str | None]:
        needing = [m for m in self.metrics if self._run.metrics[m].needs_prompts]
        if role == "real" or (prompts is None and not needing):
            return [None] * count
        if prompts is None or isinstance(prompts, str):
            raise ValueError(f"prompts: {', '.join(needing)} need one prompt per generated video; pass "
                             f"update(videos, prompts=[...]) with {count} prompt(s)")
        if len(prompts) != count:
            raise ValueError(f"prompts: {len(prompts)} given for {count} videos; expected one per video")
        return [str(p) for p in prompts]

    def _feed(self, role: str, view: str, state: Any, positions: range, frames: list[np.ndarray]) -> None:
        """Each video through the protocol's frame selection and preparation, then the detector in groups of
        equal input shape (as the DataLoader's collate groups them)."""
        metric, detector = self._run.metrics[view], self._run.detectors[view][0]
        groups: dict[tuple, tuple[list[int], list[torch.Tensor]]] = {}
        for position, video in zip(positions, frames):
            key = self._items[role][position].key
            try:
                indices = metric.protocol.frame_indices(len(video), role, self.config.seed, key)
            except ValueError as err:
                self._failed.append({"set": role, "path": key, "key": key, "position": position, "views": [view],
                                     "reason": str(err)})
                continue
            tensor = metric.protocol.prepare(video[indices])
            group = groups.setdefault((tuple(tensor.shape), tensor.dtype), ([], []))
            group[0].append(position)
            group[1].append(tensor)
        with torch.no_grad():
            for group_positions, tensors in groups.values():
                for start in range(0, len(tensors), self.config.batch_size):
                    metric.update(state, detector, group_positions[start:start + self.config.batch_size],
                                  torch.stack(tensors[start:start + self.config.batch_size]))

    def compute(self) -> EvaluationResult:
        """Every metric from the videos given so far (value, bootstrap interval, N, protocols, payload)."""
        if not self._items["fake"]:
            raise ValueError("no generated videos yet: call update(videos) before compute()")
        if self._run.real_views() and not self._items["real"]:
            raise ValueError(f"{', '.join(self._run.real_views())} need real videos: call update(videos, real=True) "
                             "before compute()")
        start = time.perf_counter()
        run = dataclasses.replace(self._run, timings={}, failed=[], references={}, fake=self._states["fake"])
        run.references = {v: refcache.Reference("", self._states["real"][v], []) for v in run.real_views()}
        run.failed = sorted(self._failed, key=lambda f: (f["set"], f["position"]))
        sets = {role: VideoSet(f"<tensors:{role}>", "tensors", Path("."), tuple(self._items[role])) for role in _ROLES}
        metrics, per_video = harness.compute_metrics(run)
        run.timings["total"] = time.perf_counter() - start
        return EvaluationResult.from_payload(harness._payload(run, sets["real"], sets["fake"], metrics, per_video))
