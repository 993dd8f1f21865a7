"""What every curation stage shares: the clip being curated, the verdict a stage returns, the stage base class.

A stage is a small class with a ``name``, an algorithm ``version`` and a frozen config dataclass. Its
``check_many`` returns one :class:`Verdict` per clip: keep or drop, a human-readable reason and the scores the
decision was made from. The pipeline records every verdict of every clip, so a dropped clip is always explained.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

from ophora.curation.config import plain
from ophora.data.video import VideoInfo
from ophora.hashing import cache_key

__all__ = ["ClipItem", "Verdict", "Stage", "config_digest"]


@dataclass
class ClipItem:
    """One input clip while it moves through the stages.

    ``start``/``end`` are seconds in the source video; ``info`` is filled by the resolution stage (container
    metadata) so that later stages need not probe again; ``instruction`` is filled by the rewrite stage;
    ``fingerprint`` identifies the input row and file (:func:`ophora.curation.inputs.fingerprint`).
    """

    clip_id: str
    caption: str
    path: Path
    source_video: str = ""
    start: float = 0.0
    end: float = 0.0
    info: VideoInfo | None = None
    instruction: str | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class Verdict:
    """A stage's decision about one clip.

    ``keep``: whether the clip passes; ``reason``: why (always set, "ok" for kept clips); ``scores``: plain
    JSON values the decision was made from (units in the stage's docstring); ``output``: text the stage made
    (the instruction, for the rewrite stage); ``error``: the stage could not evaluate the clip (unreadable
    video, endpoint failure), which drops it with the failure as reason.
    """

    stage: str
    version: str
    keep: bool
    reason: str
    scores: dict[str, Any] = field(default_factory=dict)
    output: str | None = None
    error: bool = False

    @property
    def status(self) -> str:
        """"keep", "drop" or "error"."""
        return "error" if self.error else ("keep" if self.keep else "drop")

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "version": self.version, "status": self.status, "reason": self.reason,
                "scores": self.scores, "output": self.output}


def config_digest(config: Any) -> str:
    """The cache key (:func:`ophora.hashing.cache_key`) of a config dataclass, secrets and operational knobs left
    out: changes when any setting that can change a verdict does."""
    return cache_key(plain(config, digest=True))


class Stage:
    """Base class: subclasses set ``name``, ``algorithm`` (bumped when the method changes) and ``gate``.

    ``gate`` is "160k" for stages that decide membership of the curated set, "28k" for the privacy stage
    that only decides membership of the privacy-preserving subset.
    """

    name: ClassVar[str] = "stage"
    algorithm: ClassVar[int] = 1
    gate: ClassVar[str] = "160k"

    def __init__(self, config: Any):
        self.config = config

    @property
    def version(self) -> str:
        """``<name>/v<algorithm>+<config digest>``: identifies the method and every threshold behind a verdict."""
        return f"{self.name}/v{self.algorithm}+{config_digest(self.config)}"

    def verdict(self, keep: bool, reason: str, scores: dict | None = None, output: str | None = None,
                error: bool = False) -> Verdict:
        return Verdict(self.name, self.version, keep and not error, reason, dict(scores or {}), output, error)

    def check(self, item: ClipItem) -> Verdict:
        raise NotImplementedError

    def check_many(self, items: Sequence[ClipItem]) -> list[Verdict]:
        """One verdict per item, in order (stages that call remote services override this to batch)."""
        return [self.check(item) for item in items]

    def close(self) -> None:
        """Release resources (thread pools, connections)."""
