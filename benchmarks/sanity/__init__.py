"""The sanity suite: does each metric respond to what matters, and by how much beyond its own noise?

``python -m benchmarks.sanity [--real DIR] [--config demo|FILE]`` splits a real set into two disjoint halves,
degrades half B at graded strengths (spatial: blur, noise, JPEG, colour shift, lost resolution; temporal: frame
shuffle, reversal, freezing, dropped frames, slow motion; content: mode collapse onto one or two phases, and on
OphSim clips re-rendered with an instrument that does not belong to the phase; text: prompts that name another
phase), scores every set against half A with every configured metric through :func:`benchmarks.evaluate.evaluate`,
and reports per metric and degradation the response curve with intervals, its Spearman correlation with
strength, the real-vs-real noise floor and a verdict (responds, weak, blind, wrong direction).

Modules: :mod:`.config` (YAML -> :class:`SanityConfig`), :mod:`.degrade` (what each degradation does to frames),
:mod:`.real` (the real set, labels, halves), :mod:`.sets` (degraded generated-video folders), :mod:`.score`
(scorers and evaluation passes), :mod:`.verdict` (Spearman and verdicts), :mod:`.run` (the stages),
:mod:`.report` (tables, JSON, plots).
"""
from benchmarks.sanity.config import SanityConfig, load_sanity_config
from benchmarks.sanity.report import write_report
from benchmarks.sanity.run import SanityRun, run_sanity

__all__ = ["SanityConfig", "SanityRun", "load_sanity_config", "run_sanity", "write_report"]
