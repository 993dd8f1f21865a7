"""A rating study as data: the YAML file a study starts from, validated into :class:`StudyConfig` by the suite's
one config loader (:mod:`ophora.configs.loader`).

A study names the video sets to compare (a Table 1 row's generated folder, any folder or manifest the harness
reads, or real clips as a control), where each video's surgical phase comes from, the criteria (seven by
default, each scored on a 1-5 scale with a one-line anchor), the raters, how many videos of each set and phase
each rater sees, and the attention checks. Relative paths are read from the folder the command runs in.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

from ophora.configs.loader import ConfigError, load_config

__all__ = ["CriterionSpec", "SetSpec", "RaterSpec", "ChecksSpec", "StudyConfig", "DEFAULT_CRITERIA", "SHIPPED",
           "load_study"]

SHIPPED = resources.files("benchmarks.rating") / "studies"
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class CriterionSpec:
    """One criterion: ``key`` (lower-case identifier, used in exports), ``label`` (shown to raters) and
    ``anchor``, the one-line description of what the low and the high end of the scale mean."""

    key: str
    label: str
    anchor: str

    def __post_init__(self):
        if not _KEY.match(self.key):
            raise ConfigError("key", f"expected a lower-case identifier (a-z, 0-9, _), got {self.key!r}")
        if not self.label.strip() or not self.anchor.strip():
            raise ConfigError("label", "label and anchor must not be empty")


DEFAULT_CRITERIA: tuple[CriterionSpec, ...] = (
    CriterionSpec("visual_realism", "Visual realism",
                  "1: clearly synthetic (blur, artefacts, impossible textures); 5: indistinguishable from a "
                  "real operating-microscope recording"),
    CriterionSpec("anatomical_fidelity", "Anatomical fidelity",
                  "1: cornea, iris, pupil or lens implausible or missing; 5: eye anatomy correct and stable"),
    CriterionSpec("instrument_realism", "Instrument realism",
                  "1: instruments absent, melted or of impossible shape; 5: instruments look and move as real ones"),
    CriterionSpec("instruction_alignment", "Instruction alignment",
                  "1: the video ignores the instruction; 5: every action the instruction names is shown"),
    CriterionSpec("temporal_consistency", "Temporal consistency",
                  "1: flicker, jumps or objects appearing and vanishing; 5: smooth, continuous motion"),
    CriterionSpec("phase_correctness", "Phase correctness",
                  "1: the video shows another surgical phase; 5: unmistakably the phase the prompt names"),
    CriterionSpec("clinical_plausibility", "Overall clinical plausibility",
                  "1: could not come from a real cataract surgery; 5: a surgeon would accept it as real surgery"),
)


@dataclass(frozen=True)
class SetSpec:
    """One video set. Exactly one source: ``table1`` (a Table 1 ``results.json``) with ``row`` (a row's name,
    or ``real`` for the held-out real clips it was scored against), or ``videos`` (a folder of mp4 files, a
    generated folder with ``manifest.jsonl``, an Ophora-160K CSV, or ``external:DIR``; ``prompts``: a
    ``video,prompt`` CSV for external folders). ``role``: ``real`` marks the control set of real clips
    (calibration checks use it). The name never reaches a rater's browser."""

    name: str
    role: Literal["generated", "real"] = "generated"
    table1: str | None = None
    row: str | None = None
    videos: str | None = None
    prompts: str | None = None

    def __post_init__(self):
        if not self.name.strip():
            raise ConfigError("name", "a set needs a name")
        if (self.table1 is None) == (self.videos is None):
            raise ConfigError("videos", f"set {self.name!r}: give exactly one of 'table1' (with 'row') or 'videos'")
        if self.table1 is not None and not self.row:
            raise ConfigError("row", f"set {self.name!r}: 'table1' needs 'row' (a row name, or 'real')")


@dataclass(frozen=True)
class RaterSpec:
    """A rater: ``id`` (short identifier, used in exports and on the command line), ``name`` (for the study
    lead only; never shown to other raters)."""

    id: str
    name: str = ""

    def __post_init__(self):
        if not re.match(r"^[A-Za-z0-9_-]{1,40}$", self.id):
            raise ConfigError("id", f"expected 1-40 letters, digits, '_' or '-', got {self.id!r}")


@dataclass(frozen=True)
class ChecksSpec:
    """Attention and calibration checks. ``repeats``: videos each rater sees a second time, later, under another
    id; a repeat fails when the mean absolute difference of its scores from the first rating exceeds
    ``repeat_tolerance``. ``real_floor``: a rater whose mean score over the real clips (all criteria) falls
    below it is flagged (calibration)."""

    repeats: int = 2
    repeat_tolerance: float = 1.0
    real_floor: float = 2.5

    def __post_init__(self):
        if self.repeats < 0:
            raise ConfigError("repeats", f"expected 0 or more, got {self.repeats}")
        if self.repeat_tolerance < 0:
            raise ConfigError("repeat_tolerance", f"expected 0 or more, got {self.repeat_tolerance}")


@dataclass(frozen=True)
class StudyConfig:
    """A rating study. A video's phase comes from its prompt: ``phases`` lists the phase names (the one named
    earliest in the prompt, case-insensitive, wins; the list's order is the figures' order), or
    ``phase_pattern`` is a regular expression with one group, searched in each prompt, whose match is the phase
    (neither: one phase, ``all``); ``per_set_per_phase``: how many videos of each set and phase each rater sees
    (None: every video, a fully crossed design), ``shared`` of them the same for every rater (the videos
    inter-rater agreement is measured on; the others rotate among raters); ``database``: a SQLAlchemy URL (None:
    SQLite, ``study.sqlite`` in the study folder); ``comment_max``: characters allowed in a comment."""

    name: str
    sets: tuple[SetSpec, ...]
    raters: tuple[RaterSpec, ...]
    description: str = ""
    criteria: tuple[CriterionSpec, ...] = DEFAULT_CRITERIA
    scale: tuple[int, int] = (1, 5)
    phases: tuple[str, ...] = ()
    phase_pattern: str | None = None
    per_set_per_phase: int | None = None
    shared: int = 1
    seed: int = 0
    checks: ChecksSpec = field(default_factory=ChecksSpec)
    database: str | None = None
    comment_max: int = 2000
    instructions: str = ("Rate each video on every criterion from 1 (worst) to 5 (best). The videos loop; "
                         "watch each one at least once through before you rate it.")

    def __post_init__(self):
        _unique("sets", [s.name for s in self.sets])
        _unique("raters", [r.id for r in self.raters])
        _unique("criteria", [c.key for c in self.criteria])
        if not self.sets:
            raise ConfigError("sets", "a study needs at least one video set")
        if not self.raters:
            raise ConfigError("raters", "a study needs at least one rater")
        if not self.criteria:
            raise ConfigError("criteria", "a study needs at least one criterion")
        low, high = self.scale
        if not 0 <= low < high <= 10:
            raise ConfigError("scale", f"expected [low, high] with 0 <= low < high <= 10, got {list(self.scale)}")
        if self.per_set_per_phase is not None and self.per_set_per_phase < 1:
            raise ConfigError("per_set_per_phase", f"expected 1 or more (or null: all), got {self.per_set_per_phase}")
        if self.per_set_per_phase is not None and not 0 <= self.shared <= self.per_set_per_phase:
            raise ConfigError("shared", f"expected 0 to per_set_per_phase ({self.per_set_per_phase}), "
                                        f"got {self.shared}")
        if not 1 <= self.comment_max <= 20000:
            raise ConfigError("comment_max", f"expected 1 to 20000 characters, got {self.comment_max}")
        if self.phases and self.phase_pattern is not None:
            raise ConfigError("phase_pattern", "give 'phases' or 'phase_pattern', not both")
        _unique("phases", [p.lower() for p in self.phases])
        if self.phase_pattern is not None:
            try:
                groups = re.compile(self.phase_pattern).groups
            except re.error as err:
                raise ConfigError("phase_pattern", f"not a regular expression ({err})") from None
            if groups != 1:
                raise ConfigError("phase_pattern", f"expected exactly one group (the phase), found {groups}")


def _unique(key: str, names: list[str]) -> None:
    seen = set()
    for index, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"{key}[{index}]", f"{name!r} appears twice")
        seen.add(name)


def load_study(name_or_path: str, overrides: dict | None = None) -> StudyConfig:
    """A shipped study by name (``demo``) or a study YAML by path, validated."""
    return load_config(StudyConfig, name_or_path, overrides, shipped=SHIPPED, what="rating study")
