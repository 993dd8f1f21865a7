"""Curation: narrated surgical clips -> Ophora-160K-style and Ophora-28K-style instruction sets.

Stages (``resolution`` -> ``dynamics`` -> ``rewrite`` -> ``privacy``) each return a :class:`Verdict` per clip;
:func:`curate` runs them sharded, resumably, locally or on Ray, and writes the sets, a provenance table and
a report. CLI: ``python -m ophora.curate``.
"""
from ophora.curation.config import CurationConfig
from ophora.curation.pipeline import Pipeline, build_stages
from ophora.curation.run import CurationFailed, curate
from ophora.curation.stage import ClipItem, Stage, Verdict

__all__ = ["CurationConfig", "CurationFailed", "Pipeline", "build_stages", "curate", "ClipItem",
           "Stage", "Verdict"]
