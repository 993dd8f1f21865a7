"""What every metric object is: protocols, a state per video set, compute, direction, display name, result fields.

A metric is one class (torchmetrics style) registered under its name in :mod:`benchmarks.metrics`:

- ``protocols``: its named, versioned protocols (frozen dataclasses; the first is the default). A protocol says
  which frames are read (``frame_indices``), how they become the detector's input in a DataLoader worker
  (``prepare``) and how the set's numbers are formed; ``dataclasses.asdict`` of it goes into every result;
- ``new_state``: the mergeable state of one video set (``update`` / ``merge`` / ``all_reduce``: sufficient
  statistics summed across processes, never per-batch metrics averaged); ``update(state, detector, positions,
  batch)`` runs the detector on one prepared batch and adds it to the state;
- ``compute(real, fake, n_boot=, seed=)``: the value and the bootstrap interval over videos that results report,
  as a dict whose keys are ``result_fields``;
- ``higher_is_better`` and ``display_name``: what tables print and how they pick the best row.

Geometry: every protocol reads its frames from the clip the evaluation geometry made of a video
(:mod:`ophora.data.geometry`: frame rate, clip length, size), and its default geometry is ``native``: the video's
own frame rate, length and size, as the reference implementations (pytorch-fid, StyleGAN-V, torchmetrics) read the
frames they are given. ``python -m benchmarks.evaluate --geometry`` and Table 1's ``metrics.geometry`` choose
another for a run; the result records it.

A metric whose ``features_from`` names another metric (KID on the FID features) has no state or detector of its
own: it is computed on that metric's states. ``needs_real``: whether a real set is extracted (and its state
cached) for it; ``needs_prompts``: whether the generated videos must come with prompts.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

__all__ = ["Metric", "ShortVideoError", "describe"]


class ShortVideoError(ValueError):
    """A video has fewer frames than the protocol reads."""


def describe(protocol: Any) -> dict[str, Any]:
    """Every field of ``protocol`` as a JSON-ready dict (what results record)."""
    return dataclasses.asdict(protocol)


class Metric:
    """Base of the metric classes; an instance is the metric under one protocol (see the module docstring)."""

    name: ClassVar[str]
    display_name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    protocols: ClassVar[tuple[Any, ...]]
    result_fields: ClassVar[tuple[str, ...]]
    features_from: ClassVar[str | None] = None
    needs_real: ClassVar[bool] = True
    needs_prompts: ClassVar[bool] = False

    def __init__(self, protocol: Any = None) -> None:
        self.protocol = self.with_changes(self.protocols[0] if protocol is None else protocol)

    @property
    def source(self) -> str:
        """The metric whose extracted states this one is computed on (itself unless ``features_from``)."""
        return self.features_from or self.name

    @classmethod
    def with_changes(cls, protocol: Any, **changes: Any) -> Any:
        """``protocol`` (one of this metric's) with fields replaced by ``changes``, e.g. ``frames_per_video=4``
        for FID; a protocol of another metric raises ValueError, unknown fields TypeError."""
        if protocol.metric != cls.name:
            raise ValueError(f"protocol {protocol.name!r} is a {protocol.metric} protocol, not one for {cls.name!r}")
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(protocol)})
        if unknown:
            raise TypeError(f"protocol {protocol.name!r} has no field(s) {unknown}")
        return dataclasses.replace(protocol, **changes) if changes else protocol

    @classmethod
    def options(cls, cfg: Any) -> dict[str, Any]:
        """Protocol fields set by the evaluation's options ``cfg`` (an ``EvalConfig``); none by default."""
        return {}

    def weights_for(self, mode: str) -> str:
        """The weights this metric's detector loads when the run names none for it: the run-wide ``mode``
        (random-init or pretrained), except that a protocol whose detector ships in the package
        (``shipped_weights``, e.g. fid/ophsim-surgical) always loads its shipped file."""
        return "pretrained" if getattr(self.protocol, "shipped_weights", False) else mode

    def detector_weights(self, cfg: Any) -> str | None:
        """Weights-registry entry of the published detector under options ``cfg`` (None: no file needed)."""
        return None

    def load_detector(self, weights: str, cfg: Any) -> tuple[Any, Any]:
        """(module, DetectorInfo) of this metric's detector: ``weights`` is random-init, pretrained or a file."""
        raise NotImplementedError(f"{self.name} has no detector of its own (features from {self.source!r})")

    def needs_rows(self, n_boot: int) -> bool:
        """Whether the states this metric is computed on must keep every row (per-video resampling, kernels)."""
        return False

    def new_state(self, *, video_set: Any = None, detector: Any = None, rows_path: Any = None) -> Any:
        """An empty state for one video set (``rows_path``: where per-row features go when they are kept)."""
        raise NotImplementedError(f"{self.name} has no state of its own (features from {self.source!r})")

    def restore_state(self, arrays: dict[str, Any], videos: int) -> Any:
        """A state from the arrays its ``to_arrays`` wrote (cached reference statistics)."""
        raise NotImplementedError(f"{self.name} has no cacheable state")

    def update(self, state: Any, detector: Any, positions: list[int], batch: Any) -> None:
        """Run ``detector`` on one batch of the protocol's inputs for the videos at ``positions``; add to ``state``."""
        raise NotImplementedError(f"{self.name} has no detector of its own (features from {self.source!r})")

    def compute(self, real: Any, fake: Any, *, n_boot: int = 0, seed: int = 0) -> dict[str, Any]:
        """The result (keys among ``result_fields``) from the states of the real and generated sets."""
        raise NotImplementedError

    def per_video(self, fake: Any) -> list[dict[str, Any]] | None:
        """Per-video records of the generated set that the result keeps beside the value (None: none)."""
        return None
