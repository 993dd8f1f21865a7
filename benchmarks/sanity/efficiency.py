"""Sample efficiency: each distance against the number of videos N, and the N from which it is steady.

For the real-vs-real pair (half B against half A) and real-vs-degraded pairs (degraded B against A, by default
blur, shuffle and freeze at their middle strengths), every scorer whose metric is computed from per-video
feature rows (FID, FVD, FVMD, JEDi and the kernel distances on their features: KID, KVD, KVMD; not CLIPScore or
recall, which score the generated videos alone, against their prompts) is computed on ``subsets`` random subsets
of N videos of each set, for N in ``ns`` (default 8, 16, 32, ... below the smaller set, and that set's size).

Cost: each set is decoded and its features extracted once per scorer group (:func:`benchmarks.evaluate.set_states`,
cached as float16 rows under the work folder); every subset value is the metric's own ``compute`` on states
restored from the rows of the chosen videos (a video's rows together), so the numbers are the metric's.
The full-N value and its 95% interval are the metric's own, from the same rows (its bootstrap over videos).

Steady N (one rule for every metric). With ``I = [low, high]`` the full-N 95% interval of a pair, N is *steady*
when at least ``coverage`` (default 0.5) of the subset values at N lie in ``I`` (closed); the steady N of a pair
is the smallest N of the grid below the set's size from which every larger N of the grid is steady too. The set's
size itself is the reference, never a candidate (its subsets are the whole set, inside by construction): None
means not even the largest N below it is steady, so the metric needs more videos than the study has. A metric's
steady N on a protocol and detector is the largest over its pairs (None if any pair has none).

Why not the mean over subsets: the unbiased MMD (KVD, KVMD: one row per video or window) has the same expectation
at every N, so the mean of its subsets lies in ``I`` from the first N (only the spread says it is not yet usable),
while the Fréchet distance's mean carries a bias of about c / N that leaves ``I`` for small N; a rule on the mean
measures bias alone and grants every unbiased estimator the smallest N. Asking that a typical single evaluation
at N (at least half of them) land inside the interval counts both bias and spread. The mean rule is reported
beside it (``steady_n_mean``), not used. (KID on several frames per video is unbiased for independent frames only:
frames of one video are alike, its within-set sums include them, and at few videos it is biased upwards too.)
The subsets are drawn without replacement from one finite set, so near the set's size they overlap and their
spread understates that of independent sets of N: absolute steady Ns are optimistic, for every metric alike.

Kernel against Fréchet on the same features: KID against FID, KVD against FVD, KVMD against FVMD, paired where
the kernel scorer reads the features of the Fréchet scorer's protocol with the same detector (identifier and
sha256). The issue's target: the kernel distance's steady N is at most half the Fréchet distance's.

Config (``efficiency:`` of a sanity config; every key optional, an unknown key is refused naming it):

==================  ===========================================================================================
``enabled``         true (default) or false: skip the study
``world``           an OphSim world for the study alone ({videos, seed, frames, size, fps} as the config's
                    ``world``), e.g. 16 surgeries: 192 clips, halves of 96; default: the run's real set and halves
``ns``              increasing subset sizes >= 2 (default: 8, 16, 32, ... below the smaller set); the set's size
                    is always added as the last point
``subsets``         random subsets per N (default 20)
``degradations``    names (at their middle configured strength) or ``{name, strength}``; default: blur, shuffle,
                    freeze where configured
``scorers``         scorer labels of the config to study (default: every one computed from feature rows)
``coverage``        fraction of subsets inside the interval for N to be steady (default 0.5)
``bootstrap``       replicates of the full-N intervals (default: the config's ``bootstrap``)
==================  ===========================================================================================

``python -m benchmarks.sanity.steady refresh RESULTS/results.json`` writes the packaged table of steady Ns
(``benchmarks/metrics/steady_n.json``) that :mod:`benchmarks.evaluate` reads into each result's
``sample_efficiency``; ``python -m benchmarks.sanity.steady study --config demo --out DIR`` runs the study alone.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmarks.evaluate import STEADY_N, EvalConfig, resolve_metrics, set_states
from benchmarks.metrics.fd import FrechetState
from benchmarks.sanity.config import SanityConfig, WorldSpec
from benchmarks.sanity.degrade import DEGRADATIONS
from benchmarks.sanity.score import ScoreGroup, Scorer, group_scorers
from benchmarks.sanity.verdict import middle_index
from ophora.configs import ConfigError
from ophora.data.atomic import atomic_path, atomic_write_text
from ophora.hashing import cache_key
from ophora.results import provenance
from ophora.seeding import rng

__all__ = ["EfficiencySpec", "EfficiencySets", "efficiency_spec", "pairs_of", "steady_n", "judge", "subset_draws",
           "subset_state", "study_curve", "run_efficiency", "steady_table", "write_steady_table",
           "KERNEL_OF", "REAL_PAIR"]

KEYS = ("enabled", "world", "ns", "subsets", "degradations", "scorers", "coverage", "bootstrap")
DEFAULT_DEGRADATIONS = ("blur", "shuffle", "freeze")
KERNEL_OF = {"kid": "fid", "kvd": "fvd", "kvmd": "fvmd"}  # kernel metric -> the Fréchet metric of its features
REAL_PAIR = "real"
TABLE_FORMAT = "ophora-steady-n/1"


@dataclass(frozen=True)
class EfficiencySpec:
    """The study's settings (see the module docstring); ``degradations``: (name, strength or None = middle)."""

    enabled: bool = True
    world: WorldSpec | None = None
    ns: tuple[int, ...] = ()
    subsets: int = 20
    degradations: tuple[tuple[str, float | None], ...] = ()
    scorers: tuple[str, ...] = ()
    coverage: float = 0.5
    bootstrap: int | None = None


def _error(cfg: SanityConfig, key: str, message: str) -> ConfigError:
    return ConfigError(f"efficiency.{key}", message, cfg.source or None)


def efficiency_spec(cfg: SanityConfig) -> EfficiencySpec:
    """``cfg.efficiency`` validated; errors name the key (``efficiency.ns``) and the config file."""
    raw = dict(cfg.efficiency or {})
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise _error(cfg, unknown[0], f"unknown key; known: {list(KEYS)}")
    out: dict[str, Any] = {}
    if "enabled" in raw:
        if not isinstance(raw["enabled"], bool):
            raise _error(cfg, "enabled", f"expected true or false, got {raw['enabled']!r}")
        out["enabled"] = raw["enabled"]
    if raw.get("world") is not None:
        world = raw["world"]
        if not isinstance(world, dict):
            raise _error(cfg, "world", f"expected a mapping {{videos, seed, frames, size, fps}}, got {world!r}")
        fields = set(WorldSpec.__dataclass_fields__)
        bad = sorted(set(world) - fields)
        if bad:
            raise _error(cfg, f"world.{bad[0]}", f"unknown key; known: {sorted(fields)}")
        try:
            spec = WorldSpec(**{**world, **({"size": tuple(world["size"])} if "size" in world else {})})
        except ConfigError as err:
            raise _error(cfg, f"world.{err.key}", err.reason) from None
        if not isinstance(spec.videos, int) or spec.videos < 2:
            raise _error(cfg, "world.videos", f"expected at least 2 surgeries, got {spec.videos!r}")
        out["world"] = spec
    if raw.get("ns") is not None:
        ns = raw["ns"]
        if not isinstance(ns, (list, tuple)) or not ns or not all(isinstance(n, int) and n >= 2 for n in ns) \
                or list(ns) != sorted(set(ns)):
            raise _error(cfg, "ns", f"expected increasing whole numbers >= 2, got {ns!r}")
        out["ns"] = tuple(ns)
    if "subsets" in raw:
        if not isinstance(raw["subsets"], int) or raw["subsets"] < 2:
            raise _error(cfg, "subsets", f"expected a whole number >= 2, got {raw['subsets']!r}")
        out["subsets"] = raw["subsets"]
    if raw.get("degradations") is not None:
        out["degradations"] = tuple(_degradation(cfg, i, d) for i, d in enumerate(raw["degradations"]))
    if raw.get("scorers") is not None:
        labels = {s.name for s in cfg.scorers}
        scorers = raw["scorers"]
        if not isinstance(scorers, (list, tuple)) or not all(isinstance(s, str) for s in scorers):
            raise _error(cfg, "scorers", f"expected a list of scorer labels, got {scorers!r}")
        for label in scorers:
            if cfg.scorers and label not in labels:
                raise _error(cfg, "scorers", f"{label!r} is not a scorer label of this config; labels: "
                                             f"{sorted(labels)}")
        out["scorers"] = tuple(scorers)
    if "coverage" in raw:
        c = raw["coverage"]
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c <= 1:
            raise _error(cfg, "coverage", f"expected a fraction in (0, 1], got {c!r}")
        out["coverage"] = float(c)
    if raw.get("bootstrap") is not None:
        if not isinstance(raw["bootstrap"], int) or raw["bootstrap"] < 10:
            raise _error(cfg, "bootstrap", f"expected a whole number >= 10, got {raw['bootstrap']!r}")
        out["bootstrap"] = raw["bootstrap"]
    return EfficiencySpec(**out)


def _degradation(cfg: SanityConfig, i: int, entry: Any) -> tuple[str, float | None]:
    name, strength = (entry, None) if isinstance(entry, str) else \
        ((entry.get("name"), entry.get("strength")) if isinstance(entry, dict) else (None, None))
    if isinstance(entry, dict) and set(entry) - {"name", "strength"}:
        raise _error(cfg, f"degradations[{i}]", f"unknown key(s) {sorted(set(entry) - {'name', 'strength'})}; "
                                                "known: name, strength")
    if name not in DEGRADATIONS:
        raise _error(cfg, f"degradations[{i}]", f"expected a degradation name or {{name, strength}} with a name of "
                                                f"{sorted(DEGRADATIONS)}, got {entry!r}")
    configured = {d.name for d in cfg.degradations}
    if strength is None and name not in configured:
        raise _error(cfg, f"degradations[{i}]", f"{name} is not among the config's degradations, so it has no "
                                                "middle strength: give {name, strength}")
    if strength is not None and (isinstance(strength, bool) or not isinstance(strength, (int, float))
                                 or strength <= DEGRADATIONS[name].identity):
        raise _error(cfg, f"degradations[{i}].strength", f"expected a number above {DEGRADATIONS[name].identity} "
                                                         f"(the identity), got {strength!r}")
    return name, None if strength is None else float(strength)


def pairs_of(cfg: SanityConfig, spec: EfficiencySpec) -> list[tuple[str, float]]:
    """(degradation, strength) of the real-vs-degraded pairs."""
    chosen = spec.degradations or tuple((n, None) for n in DEFAULT_DEGRADATIONS
                                        if n in {d.name for d in cfg.degradations})
    strengths = {d.name: d.strengths for d in cfg.degradations}
    out = []
    for name, strength in chosen:
        if strength is None:
            full = (DEGRADATIONS[name].identity, *strengths[name])
            strength = full[middle_index(len(full) - 1)]
        out.append((name, float(strength)))
    return out


def grid(ns: tuple[int, ...], n_max: int) -> list[int]:
    """The subset sizes below ``n_max`` (default 8, 16, 32, ...), then ``n_max``."""
    base = ns or tuple(8 * 2 ** k for k in range(32) if 8 * 2 ** k < n_max)
    return [n for n in base if 2 <= n < n_max] + [n_max]


# ---------------------------------------------------------------------------------------------------------
# the rule


def steady_n(ns: list[int], ok: list[bool]) -> int | None:
    """The smallest N of ``ns`` (increasing) from which ``ok`` holds at it and every larger N; None when it
    fails at the largest."""
    found = None
    for n, good in zip(reversed(ns), reversed(ok)):
        if not good:
            break
        found = n
    return found


def inside_fraction(values: np.ndarray, low: float, high: float) -> float:
    """Fraction of ``values`` in the closed interval [low, high] (a None value counts as outside)."""
    v = np.asarray([np.nan if x is None else x for x in values], float)
    return float(np.mean((v >= low) & (v <= high))) if len(v) else 0.0


# ---------------------------------------------------------------------------------------------------------
# subsets


def subset_draws(videos: np.ndarray, n: int, subsets: int, seed: int, *keys: str) -> list[np.ndarray]:
    """``subsets`` draws of ``n`` of ``videos`` (their positions) without replacement, seeded by (``seed``,
    "efficiency", ``keys``, n); one draw (every video) when n is all of them. The study draws the reference
    half's subsets with the key "reference" and every other set's with "other": the same subsets for every metric
    and pair, and a degraded set's subset holds the degraded versions of the real-vs-real subset's videos."""
    videos = np.sort(np.asarray(videos))
    if n > len(videos):
        raise ValueError(f"cannot draw {n} of {len(videos)} videos")
    if n == len(videos):
        return [videos]
    g = rng(seed, "efficiency", *keys, n)
    return [np.sort(g.choice(videos, n, replace=False)) for _ in range(subsets)]


def subset_state(view_metric: Any, rows: np.ndarray, positions: np.ndarray, chosen: np.ndarray | None = None
                 ) -> FrechetState:
    """The state of the videos ``chosen`` (None: all) of one set, restored through the metric's own
    ``restore_state`` from their rows (every row of a chosen video): statistics, covariance factor, rows."""
    mask = np.ones(len(positions), bool) if chosen is None else np.isin(positions, chosen)
    r, p = np.asarray(rows)[mask], np.asarray(positions)[mask]
    base = FrechetState(r.shape[1], view_metric.protocol.divisor)
    base.update(np.asarray(r, np.float64), p)
    arrays = base.to_arrays()
    if arrays is None:
        raise ValueError(f"a subset needs at least 2 rows; these videos have {len(r)}")
    arrays.update(rows=np.asarray(r, np.float16), positions=p)
    return view_metric.restore_state(arrays, videos=int(len(np.unique(p))))


def study_curve(metric: Any, view_metric: Any, ref: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray],
                *, ns: tuple[int, ...], subsets: int, seed: int, pair: str, n_boot: int,
                coverage: float) -> dict[str, Any]:
    """One metric on one pair: the full-N value and interval, and per N of the grid the subset values' mean,
    2.5 and 97.5 percentiles, the fraction inside the full-N interval and the steady N by both rules."""
    videos_ref, videos_other = np.unique(ref[1]), np.unique(other[1])
    n_max = int(min(len(videos_ref), len(videos_other)))
    full = metric.compute(subset_state(view_metric, *ref), subset_state(view_metric, *other), n_boot=n_boot,
                          seed=seed)
    ci = full.get("ci") or {}
    curve: dict[str, Any] = {"pair": pair, "n_ref": len(videos_ref), "n_other": len(videos_other), "n_max": n_max,
                             "full": full.get("value"), "low": ci.get("low"), "high": ci.get("high"),
                             "n_boot": n_boot, "ns": [], "mean": [], "p025": [], "p975": [], "std": [],
                             "inside": [], "subsets": [], "error": full.get("error")}
    if full.get("value") is None or ci.get("low") is None:
        curve.update(steady_n=None, steady_n_mean=None, error=full.get("error") or "no full-N interval")
        return curve
    for n in grid(ns, n_max):
        draws_ref = subset_draws(videos_ref, n, subsets, seed, "reference")
        draws_other = subset_draws(videos_other, n, subsets, seed, "other")
        if len(draws_ref) != len(draws_other):  # one set is whole at this N: its only draw goes with each other
            count = max(len(draws_ref), len(draws_other))
            draws_ref, draws_other = (draws_ref * count)[:count], (draws_other * count)[:count]
        values = np.array([_value(metric, view_metric, ref, other, a, b, seed) for a, b in zip(draws_ref, draws_other)])
        finite = values[np.isfinite(values)]
        curve["ns"].append(n)
        curve["subsets"].append(len(values))
        curve["mean"].append(float(finite.mean()) if len(finite) else None)
        curve["std"].append(float(finite.std(ddof=1)) if len(finite) > 1 else 0.0)
        curve["p025"].append(float(np.percentile(finite, 2.5)) if len(finite) else None)
        curve["p975"].append(float(np.percentile(finite, 97.5)) if len(finite) else None)
        curve["inside"].append(inside_fraction(values, curve["low"], curve["high"]))
    return judge(curve, coverage)


def judge(curve: dict[str, Any], coverage: float) -> dict[str, Any]:
    """``curve`` with its steady N by the rule (``steady_n``) and by the mean (``steady_n_mean``). The last N of
    the grid, the set's size, is the reference and no candidate: there every subset is (nearly) the whole set, so
    it lies inside trivially; a curve not steady at the largest N below it gets None."""
    ns = curve["ns"][:-1]
    inside = [f >= coverage for f in curve["inside"][:-1]]
    means = [m is not None and curve["low"] <= m <= curve["high"] for m in curve["mean"][:-1]]
    curve["steady_n"], curve["steady_n_mean"] = steady_n(ns, inside), steady_n(ns, means)
    return curve


def _value(metric: Any, view_metric: Any, ref: tuple, other: tuple, a: np.ndarray, b: np.ndarray,
           seed: int) -> float:
    result = metric.compute(subset_state(view_metric, *ref, a), subset_state(view_metric, *other, b), n_boot=0,
                            seed=seed)
    return np.nan if result.get("value") is None else float(result["value"])


# ---------------------------------------------------------------------------------------------------------
# the study inside a sanity run


@dataclass
class EfficiencySets:
    """The study's sets, made by :func:`benchmarks.sanity.run.efficiency_sets`: the OphSim world settings (None:
    not a world), the real set's size, (id, folder, role) of half A ("A", the reference, role "real"), half B
    (:data:`REAL_PAIR`) and each degraded set, the work folder, and notes on sets skipped."""

    world: dict[str, Any] | None
    real_videos: int
    sets: list[tuple[str, Path, str]]
    work: Path
    notes: list[str]


def _supported(scorer: Scorer, template: EvalConfig) -> bool:
    metrics = resolve_metrics(replace(template, metrics=(scorer.metric,)))
    try:
        state = metrics[metrics[scorer.metric].source].new_state()
    except Exception:  # a state that needs a video set or a detector (CLIPScore, recall): not rows
        return False
    return isinstance(state, FrechetState)


def _features(group: ScoreGroup, set_id: str, folder: Path, role: str) -> dict[str, Any]:
    """``{view: {rows, positions, detector, protocol}}`` of one set for one group, from the cache or extracted."""
    path = group.folder / f"{set_id}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return {view: {"rows": data[f"{view}_rows"], "positions": data[f"{view}_positions"], **meta[view]}
                    for view in meta}
    with tempfile.TemporaryDirectory(prefix="ophora-eff-") as tmp:
        metrics, states, failed = set_states(group.template, str(folder), role, Path(tmp),
                                             detectors=group.load_detectors())
        out, arrays, meta = {}, {}, {}
        for view, state in states.items():
            if not isinstance(state, FrechetState):
                continue
            rows, positions = state.row_arrays()
            info = group.load_detectors()[view][1]
            meta[view] = {"protocol": metrics[view].protocol.name, "detector": info.to_dict(),
                          "failed": sum(view in f["views"] for f in failed)}
            arrays[f"{view}_rows"], arrays[f"{view}_positions"] = np.array(rows, np.float16), np.asarray(positions)
            out[view] = {"rows": arrays[f"{view}_rows"], "positions": arrays[f"{view}_positions"], **meta[view]}
    group.folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp_path, open(tmp_path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta, default=str)), **arrays)
    return out


def run_efficiency(run: Any, spec: EfficiencySpec, sets: EfficiencySets, progress: bool = True,
                   start: float | None = None) -> dict[str, Any]:
    """The study of ``run``'s scorers (a :class:`benchmarks.sanity.run.SanityRun`) on ``sets``: every curve, per
    scorer its steady N, the kernel-against-Fréchet comparisons. Features and curves are cached under the sets'
    work folder (written atomically), so a rerun computes only what is missing."""
    start = time.perf_counter() if start is None else start
    cfg = run.cfg
    notes: list[str] = list(sets.notes)
    n_boot = spec.bootstrap or cfg.bootstrap
    chosen = [s for s in run.scorers if not spec.scorers or s.label in spec.scorers]
    missing = sorted(set(spec.scorers) - {s.label for s in run.scorers})
    notes += [f"efficiency: {label} did not run here (see the run's notes)" for label in missing]
    groups, studied = [], []
    for members in group_scorers(chosen):
        group = ScoreGroup(members, cfg, sets.work / "features")
        keep = [s for s in members if _supported(s, group.template)]
        notes += [f"efficiency: {s.label} left out, its metric ({s.metric}) scores the generated videos alone "
                  "(no per-video rows of two sets to subsample)" for s in members if s not in keep]
        if keep:
            groups.append(ScoreGroup(keep, cfg, sets.work / "features"))
            studied += keep
    features: dict[tuple[int, str], dict[str, Any]] = {}
    bar = tqdm(total=len(groups) * len(sets.sets), desc="efficiency features", unit="set", disable=not progress)
    for g, group in enumerate(groups):
        for set_id, folder, role in sets.sets:
            bar.set_postfix_str(set_id)
            features[g, set_id] = _features(group, set_id, folder, role)
            bar.update()
    bar.close()
    extracted = time.perf_counter()
    settings = {"ns": spec.ns, "subsets": spec.subsets, "coverage": spec.coverage, "n_boot": n_boot, "seed": cfg.seed}
    curves: list[dict[str, Any]] = []
    jobs = [(g, s, set_id) for g, group in enumerate(groups) for s in group.scorers
            for set_id, _, _ in sets.sets[1:]]
    for g, scorer, set_id in tqdm(jobs, desc="efficiency curves", unit="curve", disable=not progress):
        group = groups[g]
        metrics = resolve_metrics(group.template)
        metric = metrics[scorer.metric]
        view = metric.source
        ref, other = features[g, "A"][view], features[g, set_id][view]
        key = cache_key({"group": group.folder.name, "scorer": scorer.label, "pair": set_id, **settings})
        path = sets.work / "curves" / f"{key}.json"
        if path.is_file():
            curve = judge(json.loads(path.read_text(encoding="utf-8")), spec.coverage)
        else:
            curve = study_curve(metric, metrics[view], (ref["rows"], ref["positions"]),
                                (other["rows"], other["positions"]), ns=spec.ns, subsets=spec.subsets,
                                seed=cfg.seed, pair=set_id, n_boot=n_boot, coverage=spec.coverage)
            curve.update(scorer=scorer.label, metric=scorer.metric, protocol=scorer.protocol,
                         features_protocol=ref["protocol"] if view != scorer.metric else None,
                         detector=ref["detector"], higher_is_better=scorer.higher_is_better)
            atomic_write_text(path, json.dumps(curve, indent=1, default=str))
        curves.append(curve)
    summary = _summaries(studied, curves)
    return {"settings": {**settings, "ns": list(spec.ns) or "8, 16, 32, ... below the smaller set",
                         "pairs": [REAL_PAIR] + [s for s, _, _ in sets.sets[2:]],
                         "rule": f"steady at N: at least {spec.coverage:g} of the subset values at N inside the "
                                 "full-N 95% interval; steady N: the smallest N of the grid below the set's size "
                                 "from which every larger N below it is steady (none: not even the largest); a "
                                 "metric's: the largest over its pairs"},
            "world": sets.world, "real_videos": sets.real_videos, "work": str(sets.work),
            "curves": curves, "scorers": summary, "comparisons": _comparisons(summary), "notes": notes,
            "seconds": round(time.perf_counter() - start, 1),
            "timings_s": {"sets_and_features": round(extracted - start, 1),
                          "curves": round(time.perf_counter() - extracted, 1)}}


def _summaries(scorers: list[Scorer], curves: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for s in scorers:
        mine = [c for c in curves if c["scorer"] == s.label]
        if not mine:
            continue
        values = [c["steady_n"] for c in mine]
        out[s.label] = {"metric": s.metric, "protocol": s.protocol, "features_protocol": mine[0]["features_protocol"],
                        "detector": mine[0]["detector"], "n_max": min(c["n_max"] for c in mine),
                        "steady_n": None if None in values else max(values),
                        "steady_n_mean": None if None in [c["steady_n_mean"] for c in mine]
                        else max(c["steady_n_mean"] for c in mine),
                        "per_pair": {c["pair"]: c["steady_n"] for c in mine}}
    return out


def _same_features(kernel: dict[str, Any], frechet: dict[str, Any]) -> bool:
    a, b = kernel["detector"], frechet["detector"]
    return kernel["features_protocol"] == frechet["protocol"] and a.get("identifier") == b.get("identifier") \
        and a.get("sha256") == b.get("sha256")


def _comparisons(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each kernel scorer against the Fréchet scorer on the same features: both steady Ns and the target."""
    out = []
    for k_label, k in summary.items():
        if k["metric"] not in KERNEL_OF:
            continue
        for f_label, f in summary.items():
            if f["metric"] != KERNEL_OF[k["metric"]] or not _same_features(k, f):
                continue
            kn, fn, n_max = k["steady_n"], f["steady_n"], min(k["n_max"], f["n_max"])
            if kn is None:
                holds, why = False, f"the kernel distance is not steady up to N = {n_max}"
            elif fn is None:
                holds = kn <= n_max / 2
                why = f"the Fréchet distance is not steady up to N = {n_max}; the kernel is at {kn}"
            else:
                holds, why = kn <= fn / 2, f"kernel {kn} vs Fréchet {fn}"
            out.append({"features": f["protocol"], "frechet": f_label, "kernel": k_label, "frechet_steady_n": fn,
                        "kernel_steady_n": kn, "n_max": n_max, "target_holds": holds, "why": why})
    return out


# ---------------------------------------------------------------------------------------------------------
# the packaged table read by benchmarks.evaluate


def steady_table(study: dict[str, Any], source: str, config: str) -> dict[str, Any]:
    """The packaged table from a study (``results.json``'s ``efficiency`` section): one entry per scorer."""
    entries = []
    for label, s in study["scorers"].items():
        entries.append({"metric": s["metric"], "protocol": s["protocol"], "features_protocol": s["features_protocol"],
                        "detector": {"identifier": s["detector"].get("identifier"),
                                     "sha256": s["detector"].get("sha256")},
                        "steady_n": s["steady_n"], "n_max": s["n_max"], "scorer": label, "per_pair": s["per_pair"]})
    world = study.get("world")
    where = (f"OphSim world seed {world['seed']}, {world['videos']} surgeries ({study['real_videos']} clips, "
             f"{world['frames']} frames {world['size'][0]}x{world['size'][1]})" if world
             else f"{study['real_videos']} real clips")
    halves = min(e["n_max"] for e in entries) if entries else 0
    return {"format": TABLE_FORMAT, "measured_on": f"{where}, halves of {halves} videos; sanity config {config}",
            "rule": study["settings"]["rule"], "settings": study["settings"], "source": source,
            "provenance": {k: provenance()[k] for k in ("git_commit", "created_utc")}, "entries": entries}


def packaged_path() -> Path:
    return Path(str(resources.files("benchmarks") / "metrics" / STEADY_N))


def write_steady_table(results: str | Path, out: str | Path | None = None) -> Path:
    """Write the packaged table (default ``benchmarks/metrics/steady_n.json``) from a sanity ``results.json``
    (its ``efficiency`` section) or an ``efficiency.json``."""
    document = json.loads(Path(results).read_text(encoding="utf-8"))
    study = document.get("efficiency", document)
    if not isinstance(study, dict) or "scorers" not in study:
        raise ValueError(f"{results}: no efficiency study in it (run the sanity suite with efficiency enabled)")
    recorded = document.get("config") or {}
    config = f"{recorded.get('name', '?')} ({recorded.get('source') or 'a config given in code'})"
    table = steady_table(study, Path(results).name, config)
    if "provenance" in document:
        table["provenance"] = {"git_commit": document["provenance"].get("git_commit"),
                               "created_utc": document["provenance"].get("created_utc")}
    return atomic_write_text(out or packaged_path(), json.dumps(table, indent=1) + "\n")
