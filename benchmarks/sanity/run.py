"""The sanity suite's stages: real set, halves, degraded sets, scores, curves and verdicts.

1. the real set: ``--real`` (or the config's ``real``), else the config's OphSim evaluation world, built once;
2. its two halves as generated-video folders (A: the reference, B: what is degraded);
3. every degradation of B at every strength (sets whose needs the real set cannot meet are skipped, noted);
4. every set scored against A by every scorer group (strength 0 is B itself: the real-vs-real noise floor);
5. per scorer and degradation: the curve, its Spearman correlation and its verdict (:mod:`.verdict`);
6. the sample-efficiency study (:mod:`.efficiency`): each distance against N over random subsets, and the N from
   which it is steady (``efficiency.enabled: false`` skips it).

Work lives in ``<work>/<config>/<key>/`` where the key hashes the real set's files and the settings that change
the sets; every set and every score is written atomically and reused by a rerun.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks.sanity.config import SanityConfig, SanityError
from benchmarks.sanity.degrade import DEGRADATIONS
from benchmarks.sanity.efficiency import (
    REAL_PAIR,
    EfficiencySets,
    EfficiencySpec,
    efficiency_spec,
    pairs_of,
    run_efficiency,
)
from benchmarks.sanity.real import RealSet, load_real, split_halves
from benchmarks.sanity.score import ScoreGroup, Scorer, group_scorers, resolve_scorers
from benchmarks.sanity.sets import SetContext, build_set, write_half
from benchmarks.sanity.verdict import Curve, judge
from ophora.cli import user_message
from ophora.data.atomic import remove_stale_temporaries
from ophora.hashing import cache_key
from ophora.sim.world import WorldConfig, build_world
from ophora.weights import ChecksumMismatchError, WeightsNotFoundError

__all__ = ["SanityRun", "run_sanity", "prepare_run", "prepare_real", "work_folder", "efficiency_sets"]

FLOOR = "floor"


@dataclass
class SanityRun:
    """What a run made: the real set and its halves, the scorers, the notes, the scores and the curves."""

    cfg: SanityConfig
    real: RealSet
    work: Path
    half_a: Path
    half_b: Path
    scorers: list[Scorer]
    notes: list[str] = field(default_factory=list)
    degradations: list[tuple[str, tuple[float, ...]]] = field(default_factory=list)  # (name, all strengths)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # set id -> label -> score
    curves: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    scored_now: int = 0  # sets scored in this run (not from the cache)
    efficiency: dict[str, Any] | None = None  # the sample-efficiency study (None: not run)


def prepare_real(cfg: SanityConfig, real: str | None, progress: bool = True) -> RealSet:
    """The real set: ``real`` (or ``cfg.real``), else the OphSim world of ``cfg.world``, built under the work
    folder if it is not there yet."""
    spec = real or cfg.real
    if spec is not None:
        return load_real(spec)
    w = cfg.world
    folder = Path(cfg.work) / "worlds" / f"ophsim-{w.seed}-{cache_key(w)}"
    if not (folder / "world.json").is_file():
        build_world(WorldConfig(videos=w.videos, seed=w.seed, frames=w.frames, size=tuple(w.size), fps=w.fps),
                    folder, progress=progress)
    return load_real(folder)


def work_folder(cfg: SanityConfig, real: RealSet) -> Path:
    """``<work>/<config>/<key>``: the key hashes every real clip (path, size, mtime) and the set settings."""
    files = [(c.key, c.path.stat().st_size, c.path.stat().st_mtime_ns, c.phase, c.prompt) for c in real.clips]
    return Path(cfg.work) / cfg.name / cache_key({"files": files, "seed": cfg.seed, "crf": cfg.crf,
                                                  "collapse_phases": cfg.collapse_phases})


def _unmet(real: RealSet, name: str) -> str | None:
    needs = DEGRADATIONS[name].needs
    if "labels" in needs and not real.has_labels:
        return "the real set has no phase labels (give an OphSim world, or skip it)"
    if "prompts" in needs and not real.has_prompts:
        return "the real set has no prompts"
    if "world" in needs and real.world_config is None:
        return "it re-renders clips with OphSim, and the real set is not an OphSim world"
    return None


def set_id(name: str, strength: float) -> str:
    return f"{name}-{strength:g}"


def _build_sets(run: SanityRun, ctx: SetContext, progress: bool) -> list[tuple[str, float, Path]]:
    todo = []
    for spec in run.cfg.degradations:
        reason = _unmet(run.real, spec.name)
        if reason is not None:
            run.notes.append(f"{spec.name}: skipped, {reason}")
            continue
        run.degradations.append((spec.name, (DEGRADATIONS[spec.name].identity, *spec.strengths)))
        todo += [(spec.name, s, run.work / "sets" / spec.name / f"{s:g}") for s in spec.strengths]
    for name, strength, folder in tqdm(todo, desc="degraded sets", unit="set", disable=not progress):
        build_set(folder, name, strength, ctx)
    return todo


def _score_sets(run: SanityRun, sets: list[tuple[str, float, Path]], progress: bool) -> None:
    groups = [ScoreGroup(g, run.cfg, run.work / "scores") for g in group_scorers(run.scorers)]
    jobs = [(FLOOR, run.half_b)] + [(set_id(name, s), folder) for name, s, folder in sets]
    bar = tqdm(total=len(jobs) * len(groups), desc="scoring sets", unit="set", disable=not progress)
    for group in groups:
        if not _detectors_ready(run, group, [key for key, _ in jobs]):
            bar.update(len(jobs))
            continue
        for key, folder in jobs:
            bar.set_postfix_str(key)
            run.scored_now += group.cached(key) is None
            result = group.score(key, run.half_a, folder, floor=key == FLOOR)
            run.scores.setdefault(key, {}).update(result["scores"])
            bar.update()
    bar.close()


def _detectors_ready(run: SanityRun, group: ScoreGroup, keys: list[str]) -> bool:
    """Load the group's detectors if a set still needs them; a detector that cannot be loaded here (its weights
    file missing or not the registered one) drops the group's scorers with a note instead of ending the run."""
    if all(group.cached(key) is not None for key in keys):
        return True
    try:
        group.load_detectors()
    except (WeightsNotFoundError, ChecksumMismatchError, FileNotFoundError) as err:
        for scorer in group.scorers:
            run.scorers.remove(scorer)
            run.notes.append(f"{scorer.label}: skipped, its detector cannot be loaded here ({user_message(err)})")
        return False
    return True


def _curves(run: SanityRun) -> None:
    for scorer in run.scorers:
        floor = run.scores[FLOOR][scorer.label]
        for name, strengths in run.degradations:
            points = [floor] + [run.scores[set_id(name, s)][scorer.label] for s in strengths[1:]]
            curve = Curve(strengths, [p["value"] for p in points], (floor["low"], floor["high"]),
                          scorer.higher_is_better)
            run.curves.append({"scorer": scorer.label, "metric": scorer.metric, "protocol": scorer.protocol,
                               "degradation": name, "family": DEGRADATIONS[name].family,
                               "unit": DEGRADATIONS[name].unit, "strengths": list(strengths),
                               "values": curve.values, "low": [p["low"] for p in points],
                               "high": [p["high"] for p in points], "n_fake": [p["n_fake"] for p in points],
                               "errors": [p["error"] for p in points], "detector": floor["detector"],
                               "comparable": floor["comparable"], "higher_is_better": scorer.higher_is_better,
                               **judge(curve)})


def efficiency_sets(run: SanityRun, spec: EfficiencySpec, progress: bool = True) -> EfficiencySets:
    """The sample-efficiency study's sets: the run's halves and degraded sets (built here when the study asks for a
    strength the run did not), or, with ``efficiency.world``, that OphSim world built and split under the work
    folder, with its own degraded sets."""
    cfg = run.cfg
    if spec.world is None:
        real, work, half_a, half_b = run.real, run.work / "efficiency", run.half_a, run.half_b
        sets_root = run.work / "sets"
    else:
        study_cfg = replace(cfg, world=spec.world)
        real = prepare_real(study_cfg, None, progress)
        work = work_folder(study_cfg, real) / "efficiency"
        a, b = split_halves(real, cfg.seed)
        half_a, half_b = write_half(work / "real" / "A", a, "A"), write_half(work / "real" / "B", b, "B")
        sets_root = work / "sets"
    sets, notes = [("A", half_a, "real"), (REAL_PAIR, half_b, "fake")], []
    ctx = SetContext(real, tuple(split_halves(real, cfg.seed)[1]), cfg.seed, cfg.crf, cfg.collapse_phases)
    for name, strength in tqdm(pairs_of(cfg, spec), desc="efficiency sets", unit="set", disable=not progress):
        reason = _unmet(real, name)
        if reason is not None:
            notes.append(f"efficiency: {name} skipped, {reason}")
            continue
        folder = sets_root / name / f"{strength:g}"
        build_set(folder, name, strength, ctx)
        sets.append((set_id(name, strength), folder, "fake"))
    world = asdict(spec.world) if spec.world is not None else (asdict(cfg.world) if real.world_config else None)
    return EfficiencySets(world, len(real.clips), sets, work, notes)


def prepare_run(cfg: SanityConfig, real: str | None = None, progress: bool = True) -> SanityRun:
    """Stages 1 and 2 and the scorers: the real set, its halves written under the work folder, the scorers that
    can run here (nothing is scored)."""
    start = time.perf_counter()
    efficiency_spec(cfg)  # a wrong efficiency key fails now, not after the scores
    real_set = prepare_real(cfg, real, progress)
    work = work_folder(cfg, real_set)
    work.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(work, recursive=True)
    half_a, half_b = split_halves(real_set, cfg.seed)
    scorers, notes = resolve_scorers(cfg, real_set.has_prompts)
    if not scorers:
        raise SanityError("no scorer can run here: " + "; ".join(notes))
    run = SanityRun(cfg, real_set, work, write_half(work / "real" / "A", half_a, "A"),
                    write_half(work / "real" / "B", half_b, "B"), scorers, notes)
    run.timings["prepare"] = time.perf_counter() - start
    return run


def run_sanity(cfg: SanityConfig, real: str | None = None, progress: bool = True) -> SanityRun:
    """Run stages 1-6 (see the module docstring) and return what they made; nothing is written to results."""
    start = time.perf_counter()
    run = prepare_run(cfg, real, progress)
    ctx = SetContext(run.real, tuple(split_halves(run.real, cfg.seed)[1]), cfg.seed, cfg.crf, cfg.collapse_phases)
    sets = _build_sets(run, ctx, progress)
    run.timings["sets"] = time.perf_counter() - start - run.timings["prepare"]
    _score_sets(run, sets, progress)
    if not run.scorers:
        raise SanityError("no scorer could run here: " + "; ".join(run.notes))
    _curves(run)
    run.timings["scores"] = time.perf_counter() - start - run.timings["sets"] - run.timings["prepare"]
    spec = efficiency_spec(cfg)
    if spec.enabled:
        mark = time.perf_counter()
        run.efficiency = run_efficiency(run, spec, efficiency_sets(run, spec, progress), progress, start=mark)
        run.timings["efficiency"] = time.perf_counter() - mark
        run.notes += run.efficiency["notes"]
    run.timings["total"] = time.perf_counter() - start
    return run
