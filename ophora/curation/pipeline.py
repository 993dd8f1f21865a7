"""The curation recipe: resolution -> dynamics -> rewrite gate the curated (160K-style) set; privacy gates
the 28K-style subset. Every verdict of every clip goes into its record; a dropped clip skips later stages.

A record (one ledger line, one provenance row) is::

    {"clip_id", "in_160k", "in_28k", "instruction", "drop_stage", "drop_reason", "verdicts": [...]}

``drop_stage``/``drop_reason`` name the first stage that dropped the clip from the 160K set (empty when
kept); a kept clip left out of the 28K set has the privacy verdict's reason.
"""
from __future__ import annotations

from typing import Sequence

from ophora.curation.config import CurationConfig
from ophora.curation.dynamics import DynamicsStage
from ophora.curation.privacy import make_privacy_stage
from ophora.curation.resolution import ResolutionStage
from ophora.curation.rewrite import RewriteStage
from ophora.curation.stage import ClipItem, Stage

__all__ = ["Pipeline", "build_stages", "STAGE_NAMES"]

STAGE_NAMES = ("resolution", "dynamics", "rewrite", "privacy")


def build_stages(config: CurationConfig) -> list[Stage]:
    """The four stages in order, built from their config sections."""
    return [ResolutionStage(config.resolution), DynamicsStage(config.dynamics), RewriteStage(config.rewrite),
            make_privacy_stage(config.privacy)]


class Pipeline:
    """Runs ``stages`` over batches of clips. Build once per worker process and reuse."""

    def __init__(self, config: CurationConfig, stages: list[Stage] | None = None):
        self.config = config
        self.stages = stages if stages is not None else build_stages(config)

    def versions(self) -> dict[str, str]:
        return {stage.name: stage.version for stage in self.stages}

    def run(self, items: Sequence[ClipItem]) -> list[dict]:
        """One record per item, in order (see the module docstring)."""
        records = {item.clip_id: _new_record(item) for item in items}
        alive = list(items)
        for stage in self.stages:
            if not alive:
                break
            verdicts = _check(stage, alive)
            survivors = []
            for item, verdict in zip(alive, verdicts):
                record = records[item.clip_id]
                record["verdicts"].append(verdict.to_json())
                if stage.gate == "28k":
                    record["in_28k"] = verdict.keep
                    continue
                if verdict.keep:
                    survivors.append(item)
                else:
                    record.update(drop_stage=stage.name, drop_reason=verdict.reason)
            if stage.gate != "28k":
                alive = survivors
        for item in alive:
            records[item.clip_id].update(in_160k=True, instruction=item.instruction)
        return [records[item.clip_id] for item in items]

    def close(self) -> None:
        for stage in self.stages:
            stage.close()


def _check(stage: Stage, items: list[ClipItem]) -> list:
    """Verdicts of ``stage``; an unexpected exception becomes an error verdict of the clip that raised it."""
    try:
        return stage.check_many(items)
    except Exception:  # noqa: BLE001 - one bad clip must not stop a run over 160K clips
        verdicts = []
        for item in items:
            try:
                verdicts.append(stage.check(item))
            except Exception as err:  # noqa: BLE001
                verdicts.append(stage.verdict(False, f"stage failed: {type(err).__name__}: {err}", error=True))
        return verdicts


def _new_record(item: ClipItem) -> dict:
    return {"clip_id": item.clip_id, "in_160k": False, "in_28k": False, "instruction": None,
            "drop_stage": "", "drop_reason": "", "verdicts": []}
