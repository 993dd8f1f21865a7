"""The Ophora-28K privacy filter: ``overlay`` (embedded, no model) or ``vlm`` (vision chat model)."""
from __future__ import annotations

from ophora.curation.config import PrivacyConfig
from ophora.curation.stage import Stage

__all__ = ["make_privacy_stage"]


def make_privacy_stage(config: PrivacyConfig) -> Stage:
    """The stage of ``config.backend``."""
    if config.backend == "vlm":
        from ophora.curation.privacy.vlm import VlmPrivacyStage

        return VlmPrivacyStage(config.vlm)
    from ophora.curation.privacy.overlay import OverlayPrivacyStage

    return OverlayPrivacyStage(config.overlay)
