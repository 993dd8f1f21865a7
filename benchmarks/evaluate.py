"""Score a generated video set against a real one with the registered metrics (FID, FVD, CLIPScore, KID, ...).

    python -m benchmarks.evaluate --real REAL --fake FAKE [--metrics fid,fvd,clipscore[,kid]] --out FILE.json
        [--protocol fvd=fvd/tf] [--weights auto|random-init|pretrained|METRIC=PATH] [--detector METRIC=PATH]
        [--geometry NAME|fps=F,frames=T,size=HxW,mode=M,filter=F] [--n-real N] [--n-fake N] [--fd-infinity K]
        [--detector-seed S]
        [--fid-frames K|all] [--clip-frames K] [--clip-model ophora-tiny-clip|ViT-L-14] [--tiny-i3d]
        [--seed S] [--batch-size B] [--workers W] [--no-cache] [--strict] [--bootstrap N]

REAL and FAKE: a folder of videos (``*.mp4``, recursive), a generated folder with ``manifest.jsonl`` or an
Ophora-160K CSV; CLIPScore prompts come from the fake set's manifest. Recipe:

1. the metric objects (``benchmarks.metrics``) under their protocols, and their detectors;
2. real set: each metric's reference state from the cache (``benchmarks.cache``) or extracted, then cached;
3. fake set: extracted (``benchmarks.features``): one decode per video, every metric's state in one pass;
4. rank 0: each metric computes its value and bootstrap interval over videos from the two states;
5. rank 0: the self-describing JSON (``ophora.results.write_json``, atomic) and a summary table.

Protocols: ``--protocol METRIC=NAME`` (``benchmarks.metrics.protocol_names()``), e.g. the surgical-domain
``fid=fid/ophsim-surgical``, ``fvd=fvd/ophsim-surgical``, ``clipscore=clipscore/ophsim-surgical`` (and the
metric ``recall``, text-to-video recall@k): their detectors ship in the package and load whatever
``--weights`` says for the whole run, unless one is named for that metric. Detectors: ``--weights
METRIC=PATH`` must be the registered file (its sha256 is checked; other bytes are refused); ``--detector
METRIC=PATH`` scores with a file of your own for the protocol's declared architecture (a state dict, a
TorchScript I3D, a surgical safetensors file), recorded as ``custom:<file name>`` with its sha256 and
``comparable_with_literature: false``.

Detectors by default (``--weights auto``): each metric's published detector where its weights are in the
weights store (``python -m ophora.weights list``), else its surgical protocol with the weights shipped in the
package (``fid/ophsim-surgical``, ``fvd/ophsim-surgical``, ``clipscore/ophsim-surgical``), else random-init; the
result's ``detector_choice`` and the summary say what was chosen and why. ``--weights random-init`` keeps the
random-init stand-ins of the published detectors. Without ``--metrics``, CLIPScore is left out (with a note) when
the generated videos have no prompts.

Geometry (:mod:`ophora.data.geometry`): ``--geometry NAME`` brings the real and the generated set to one frame
rate, clip length and size (resampled by time; short-side resize with a named filter and a centre crop) before
every detector; the result records it under ``geometry``. Without it, two sets whose frame rates or aspect ratios
differ by more than 5% are refused (``--geometry native`` scores them as they are, recorded). Equal N: ``--n-real``
and ``--n-fake`` score that many videos of each set, drawn with ``--seed``; a set with fewer is refused. Where
sets cannot be equal, ``--fd-infinity K`` adds to FID and FVD their extrapolation to infinitely many generated
videos (:func:`fd_infinity`, Chong and Forsyth 2020) under ``fd_infinity``.

Nothing here is specific to one metric: a metric registered in :mod:`benchmarks.metrics` is accepted by
``--metrics`` and appears in the result file.

Under ``torchrun`` / ``accelerate launch`` each process scores a strided shard of each set; statistics are
all-reduced, per-video scores and failures gathered, and only rank 0 writes.

Result file (``format: ophora-eval/1``): ``config`` (this run's :class:`EvalConfig`, with the metrics, protocols
and weights it resolved to), ``seed``, ``provenance`` (git commit, date, Python, platform, package versions),
``inputs`` (each set's spec, kind, root, number of videos scored and in the set, frame rate and size from the
headers; the real set's content fingerprint), ``geometry`` (every field), ``n`` (videos scored per set, whether
drawn), ``detectors`` (identifier, sha256, ``comparable_with_literature``; false for random-init),
``detector_choice`` (under ``--weights auto``), ``comparable_with_literature``, ``notes``, ``metrics`` (per
metric: every field of its protocol under ``protocol``, and its ``result_fields`` such as ``value``, ``n_real``,
``n_fake``, rows, ``ci`` with the 95% bootstrap interval and its method, warnings; and its
``detector``, ``reference_cache`` and ``sample_efficiency``: whether its N is past the N from which the sanity
suite's sample-efficiency study found that metric steady under the same protocol and detector, from the packaged
table ``benchmarks/metrics/steady_n.json``, or that none was measured), ``per_video`` (per-video records of
the metrics that keep them, e.g. CLIPScore: path, prompt, score, tokens, truncated; features are not dumped),
``failed`` (set, path, key, position, reason, metrics it was excluded from), ``timings_s`` per stage,
``world_size`` and ``evaluation_packages``.

Faults: a cache entry that cannot be read is set aside and recomputed, and a cache write that fails (a full
disk) is skipped; both are named in the metric's ``reference_cache.warnings`` and the run goes on. An empty set
(a ``manifest.jsonl`` or CSV listing no video) is refused, naming the file. The command prints user errors
(empty or malformed sets, a full disk, missing weights, a failed input under ``--strict``) as one ``error:``
line without a traceback and exits 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import cache as refcache
from benchmarks import metrics as registry
from benchmarks.detectors import CustomWeights
from benchmarks.features import FailedVideoError, dist_info, extract, gather_objects
from benchmarks.metrics.base import Metric, describe
from benchmarks.metrics.fd import FrechetMetric, frechet_point
from benchmarks.metrics.stats import FeatureStats
from ophora import weights as weights_store
from ophora.cli import add_output, add_progress, add_seed, make_parser, user_message
from ophora.data.external import ExternalVideosError
from ophora.data.geometry import (
    NATIVE,
    Geometry,
    GeometryMismatchError,
    check_compatible,
    parse_geometry,
    set_shape,
)
from ophora.data.manifests import ManifestError
from ophora.data.sets import VideoSet, load_video_set
from ophora.results import package_versions, write_json
from ophora.seeding import rng
from ophora.weights import ChecksumMismatchError, cache_dir

__all__ = ["EvalConfig", "EvaluationInputError", "evaluate", "summary_table", "main", "set_states",
           "sample_efficiency"]

FORMAT = "ophora-eval/1"
DEFAULT_METRICS = ("fid", "fvd", "clipscore")
_EVAL_PACKAGES = ("torch", "pytorch-fid", "open_clip_torch", "scipy", "numpy", "av", "accelerate")
log = logging.getLogger(__name__)


class EvaluationInputError(ValueError):
    """The evaluation's inputs cannot be scored as given (an empty set, an unknown metric, prompts missing)."""


@dataclass(frozen=True)
class EvalConfig:
    """Everything a run depends on (recorded in the result as ``config``).

    ``protocols``: (metric, protocol name) overrides; ``detector_weights``: (metric, weights) overrides of
    ``weights`` ("random-init", "pretrained", "auto" or a file verified against the registry; ``auto``: each
    metric's published detector where its weights are present, else its surgical protocol with the shipped
    weights, else random-init, recorded under ``detector_choice``); ``custom_detectors``:
    (metric, file) of a user's own detector, not verified, recorded as custom; ``fid_frames``: frames per
    video for FID (an int or "all"; None: the protocol's default); ``bootstrap``: replicates for the 95%
    intervals (0: none); ``metrics``: None for :data:`DEFAULT_METRICS` (CLIPScore dropped, with a note, when the
    generated set has no prompts); ``geometry``: the evaluation geometry every set is brought to (None: refuse
    sets whose frame rates or aspect ratios differ); ``n_real`` / ``n_fake``: equal N, drawn with ``seed``.
    """

    real: str
    fake: str
    metrics: tuple[str, ...] | None = None  # None: DEFAULT_METRICS, those needing prompts only where there are any
    protocols: tuple[tuple[str, str], ...] = ()
    weights: str = "random-init"
    detector_weights: tuple[tuple[str, str], ...] = ()
    custom_detectors: tuple[tuple[str, str], ...] = ()
    detector_seed: int = 0
    fid_frames: int | str | None = None
    clip_frames: int | None = None
    clip_model: str = "ViT-L-14"
    tiny_i3d: bool = False
    seed: int = 0
    batch_size: int = 8
    workers: int | None = None
    no_cache: bool = False
    strict: bool = False
    bootstrap: int = 200
    out: str | None = None
    progress: bool = True
    fake_prompts: str | None = None  # video,prompt CSV for a folder of videos from official code
    geometry: str | None = None  # evaluation geometry (ophora.data.geometry): a name or key=value pairs
    n_real: int | None = None  # score this many real videos, drawn with ``seed`` (None: all)
    n_fake: int | None = None  # score this many generated videos, drawn with ``seed`` (None: all)
    fd_infinity: int = 0  # FID/FVD extrapolated to N = infinity from this many subset sizes (0: not computed)


@dataclass
class _Run:
    """State of one evaluation shared by the steps below."""

    cfg: EvalConfig
    metrics: dict[str, Metric]  # requested metrics and those whose features they use, in registry order
    detectors: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # view -> (module, DetectorInfo)
    timings: dict[str, float] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)
    references: dict[str, refcache.Reference] = field(default_factory=dict)
    fake: dict[str, Any] = field(default_factory=dict)  # view -> the metric's state of the fake set
    fingerprint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # records the payload keeps (detector choice, set shapes)
    cache_notes: dict[str, list[str]] = field(default_factory=dict)  # view -> cache faults met (set aside, skipped)
    geometry: Geometry = NATIVE  # what every set is brought to before the detectors
    notes: list[str] = field(default_factory=list)  # what the run decided for the user (dropped metrics, ...)

    def views(self) -> list[str]:
        """Metrics that extract features of their own (KID uses FID's)."""
        return [name for name, metric in self.metrics.items() if metric.features_from is None]

    def real_views(self) -> list[str]:
        return [view for view in self.views() if self.metrics[view].needs_real]

    def needs_rows(self, view: str) -> bool:
        if self.cfg.fd_infinity and isinstance(self.metrics[view], FrechetMetric):
            return True  # the extrapolation draws subsets of the generated videos' rows
        return any(self.metrics[m].needs_rows(self.cfg.bootstrap) for m in self.cfg.metrics
                   if self.metrics[m].source == view)


class _Feed:
    """Feeds one set's batches of a view to its metric's state (a consumer of ``benchmarks.features.extract``)."""

    def __init__(self, metric: Metric, detector: Any, state: Any):
        self.metric, self.detector, self.state = metric, detector, state

    def consume(self, positions: list[int], batch: torch.Tensor) -> None:
        self.metric.update(self.state, self.detector, positions, batch)

    def reduce(self) -> None:
        self.state.all_reduce()


# ---------------------------------------------------------------------------------------------------------
# 1. metrics, protocols and detectors


def resolve_metrics(cfg: EvalConfig) -> dict[str, Metric]:
    """Each requested metric under its protocol after overrides, and the metrics whose features they use."""
    known = registry.names()
    unknown = [m for m in cfg.metrics if m not in known]
    if unknown or not cfg.metrics:
        raise EvaluationInputError(f"unknown metric(s) {unknown}; choose from {', '.join(known)}")
    chosen = dict(cfg.protocols)
    wanted = set(cfg.metrics) | {registry.get(m).features_from for m in cfg.metrics} - {None}
    return {m: registry.build(m, cfg, chosen.get(m)) for m in known if m in wanted}


SURGICAL = "ophsim-surgical"


def _published_present(metric: Metric, cfg: EvalConfig) -> tuple[bool, str | None]:
    """Whether the published detector of ``metric`` (its protocol's weights-registry entry) is on this machine,
    and the entry's name (None: the detector has no published file, e.g. the tiny I3D)."""
    name = metric.detector_weights(cfg)
    if name is None:
        return False, None
    try:
        weights_store.resolve(name)
    except (KeyError, FileNotFoundError, RuntimeError, ValueError):
        return False, name
    return True, name


def _published_asked(metric: str, cfg: EvalConfig) -> str | None:
    """The option by which ``cfg`` asks for ``metric``'s published-protocol detector itself (``--tiny-i3d``, a
    ``--clip-model`` other than the default), which ``--weights auto`` keeps (random-init where its weights are
    absent) instead of switching to the surgical protocol; None when there is none."""
    if metric == "fvd" and cfg.tiny_i3d:
        return "--tiny-i3d"
    if metric == "clipscore" and cfg.clip_model != EvalConfig.clip_model:
        return f"--clip-model {cfg.clip_model}"
    return None


def resolve_auto(cfg: EvalConfig) -> tuple[EvalConfig, dict[str, dict[str, str]]]:
    """``weights="auto"``: for each metric extracting features of its own, the published detector where its
    weights are present (``pretrained``), else the metric's surgical protocol (``METRIC/ophsim-surgical``, weights
    shipped in the package) unless a protocol was named for it, else random-init. Returns the config with those
    choices made explicit (per-metric protocols and weights; ``weights`` stays "auto") and, per metric, what was
    chosen and why (``detector_choice`` in the result). Other modes return ``cfg`` and no choices."""
    if cfg.weights != "auto":
        return cfg, {}
    named_protocols, named_weights = dict(cfg.protocols), dict(cfg.detector_weights)
    custom = dict(cfg.custom_detectors)
    choices: dict[str, dict[str, str]] = {}
    for name, metric in resolve_metrics(cfg).items():
        if metric.features_from is not None or name in custom or name in named_weights:
            continue
        if getattr(metric.protocol, "shipped_weights", False):
            choices[name] = {"protocol": metric.protocol.name, "weights": "shipped",
                             "why": f"{metric.protocol.name}: its detector ships with the suite (nothing to fetch)"}
            continue
        present, entry = _published_present(metric, cfg)
        absent = (f"published weights {entry!r} not on this machine (`python -m ophora.weights fetch {entry}` gets "
                  f"them)" if entry else "this detector has no published weights file")
        asked = _published_asked(name, cfg)
        surgical = f"{name}/{SURGICAL}"
        if present:
            named_weights[name] = "pretrained"
            choices[name] = {"protocol": metric.protocol.name, "weights": "pretrained",
                             "why": f"published weights {entry!r} found in the weights store"}
        elif name not in named_protocols and surgical in registry.protocol_names() and not asked:
            named_protocols[name] = surgical
            choices[name] = {"protocol": surgical, "weights": "shipped",
                             "why": f"{absent}; the surgical detector shipped with the suite scores instead (not "
                                    f"comparable with published numbers)"}
        else:
            if asked:
                reason = f"{asked} asks for this protocol's own detector"
            elif name in named_protocols:
                reason = f"{metric.protocol.name} was named"
            else:
                reason = f"no surgical protocol for {name}"
            named_weights[name] = "random-init"
            choices[name] = {"protocol": metric.protocol.name, "weights": "random-init",
                             "why": f"{absent}; {reason}: random-init (ranks nothing)"}
    return dataclasses.replace(cfg, protocols=tuple(sorted(named_protocols.items())),
                               detector_weights=tuple(sorted(named_weights.items()))), choices


def detector_weights(run: _Run, view: str) -> Any:
    """What the detector of ``view`` loads: a user's own file (``custom_detectors``), the weights named for the
    metric (``detector_weights``), else the run-wide ``weights`` as the metric's protocol takes it."""
    custom, named = dict(run.cfg.custom_detectors), dict(run.cfg.detector_weights)
    if view in custom:
        return CustomWeights(custom[view])
    return named[view] if view in named else run.metrics[view].weights_for(run.cfg.weights)


def _load_detector(run: _Run, view: str) -> tuple[Any, Any]:
    weights = detector_weights(run, view)
    try:
        return run.metrics[view].load_detector(weights, run.cfg)
    except ChecksumMismatchError as err:
        if weights not in ("random-init", "pretrained"):
            raise ChecksumMismatchError(f"{err}; to score with this file as your own detector (recorded as custom, "
                                        f"not comparable with published numbers), pass --detector {view}={weights}") \
                from None
        raise


def load_detectors(run: _Run, given: dict[str, tuple[Any, Any]] | None, device: Any) -> None:
    """Load (or take from ``given``) the detector of every view, in eval mode on ``device``."""
    start = time.perf_counter()
    unknown = sorted({m for m, _ in run.cfg.custom_detectors} - set(run.views()))
    if unknown:
        raise EvaluationInputError(f"--detector names {unknown}, which extract no features of their own in this run; "
                                   f"choose among {', '.join(run.views())}")
    for view in run.views():
        module, info = (given or {}).get(view) or _load_detector(run, view)
        target = module if isinstance(module, torch.nn.Module) else module.model  # ClipDetector wraps its model
        target.to(device).eval()
        run.detectors[view] = (module, info)
    run.timings["load_detectors"] = time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------------
# 2. real set: cached or extracted reference statistics


def _cache_lookup(run: _Run, real_set: Any) -> dict[str, str]:
    """Rank 0: keys of the real-set views and the cached entries found; every process learns which views hit."""
    keys: dict[str, str] = {}
    if dist_info()[0] == 0 and not run.cfg.no_cache:
        start = time.perf_counter()
        run.fingerprint = refcache.set_fingerprint(real_set)
        run.timings["fingerprint_real"] = time.perf_counter() - start
        for view in run.real_views():
            metric, info = run.metrics[view], run.detectors[view][1]
            keys[view] = refcache.reference_key(run.fingerprint, metric.protocol, info.sha256, run.cfg.seed,
                                                geometry=None if run.geometry.is_native else run.geometry.to_dict())
            hit = refcache.load_reference(keys[view], metric.protocol, metric.restore_state,
                                          need_rows=run.needs_rows(view), notes=run.cache_notes.setdefault(view, []))
            if hit is not None:
                run.references[view] = hit
    hits = gather_objects(sorted(run.references))[0]
    for view in hits:
        run.references.setdefault(view, None)  # placeholder on ranks > 0
    return keys


def real_statistics(run: _Run, real_set: Any, workdir: Path) -> None:
    """Fill ``run.references`` for every real-set view: cache hits, then one extraction pass for the misses."""
    keys = _cache_lookup(run, real_set)
    misses = [v for v in run.real_views() if v not in run.references]
    if misses:
        states = {v: _new_state(run, v, real_set, workdir / f"real-{v}.f16") for v in misses}
        done = _extract(run, real_set, "real", states)
        run.timings["extract_real"] = done["seconds"]
        if dist_info()[0] == 0:
            for view in misses:
                run.references[view] = _new_reference(run, view, states[view], done["failed"], keys.get(view))
    for reference in run.references.values():
        if reference is not None and reference.hit:
            run.failed.extend(reference.failed)


def _new_reference(run: _Run, view: str, state: Any, failed: list[dict[str, Any]],
                   key: str | None) -> refcache.Reference:
    """Reference statistics from a fresh extraction (rank 0), cached unless ``no_cache`` (a failed write only
    skips the cache: noted in ``run.cache_notes``)."""
    mine = [f for f in failed if view in f["views"]]
    reference = refcache.Reference(key or "", state, mine)
    if key is not None:
        reference.path = refcache.save_reference(reference, run.metrics[view].protocol, {
            "real_set": run.cfg.real, "fingerprint": run.fingerprint, "seed": run.cfg.seed,
            "geometry": run.geometry.to_dict(),
            "detector": run.detectors[view][1].to_dict()}, notes=run.cache_notes.setdefault(view, []))
    return reference


# ---------------------------------------------------------------------------------------------------------
# 3. extraction (the fake set: every view)


def _new_state(run: _Run, view: str, video_set: Any, rows_path: Path) -> Any:
    return run.metrics[view].new_state(video_set=video_set, detector=run.detectors[view][0],
                                       rows_path=rows_path if run.needs_rows(view) else None)


def _extract(run: _Run, video_set: Any, role: str, states: dict[str, Any]) -> dict[str, Any]:
    views = {name: run.metrics[name].protocol for name in states}
    consumers = {name: _Feed(run.metrics[name], run.detectors[name][0], state) for name, state in states.items()}
    done = extract(video_set, role, views, consumers, seed=run.cfg.seed, batch_size=run.cfg.batch_size,
                   workers=run.cfg.workers, strict=run.cfg.strict, progress=run.cfg.progress,
                   geometry=run.geometry)
    run.failed.extend(done["failed"])
    return done


def fake_features(run: _Run, fake_set: Any, workdir: Path) -> None:
    """One extraction pass over the fake set for every view."""
    run.fake = {view: _new_state(run, view, fake_set, workdir / f"fake-{view}.f16") for view in run.views()}
    run.timings["extract_fake"] = _extract(run, fake_set, "fake", run.fake)["seconds"]


# ---------------------------------------------------------------------------------------------------------
# 4. metrics (rank 0)


def _detector_record(info: Any) -> dict[str, Any]:
    """The detector as results record it: ``comparable_with_literature`` in place of DetectorInfo's ``comparable``
    (one field, one name)."""
    record = {k: v for k, v in info.to_dict().items() if k != "comparable"}
    return {**record, "comparable_with_literature": bool(info.comparable)}


def _score(run: _Run, name: str) -> dict[str, Any]:
    """One metric's result from its source view's states, checked against its declared ``result_fields``."""
    metric = run.metrics[name]
    reference = run.references.get(metric.source)
    result = metric.compute(reference.state if reference is not None else None, run.fake[metric.source],
                            n_boot=run.cfg.bootstrap, seed=run.cfg.seed)
    undeclared = sorted(set(result) - set(metric.result_fields))
    if undeclared:
        raise RuntimeError(f"metric {name!r} returned field(s) {undeclared} missing from its result_fields "
                           f"{metric.result_fields}")
    return result


def fd_infinity(real: Any, fake: Any, divisor: str, points: int, seed: int, repeats: int = 5) -> dict[str, Any]:
    """Fréchet distance extrapolated to infinitely many generated videos (Chong and Forsyth, "Effectively
    Unbiased FID and Inception Score and where to find them", CVPR 2020): FD of ``points`` subset sizes n from
    N/4 to N videos of the generated set (each the mean over ``repeats`` seeded draws without replacement, all
    rows of a drawn video kept), the real statistics fixed; a least-squares line FD(n) = FD_inf + k / n; ``value``
    is its intercept. Comparable across sets of unequal N, where FD itself is biased by N."""
    rows, positions = fake.row_arrays()
    videos = np.unique(positions)
    sizes = np.unique(np.round(np.linspace(max(2, len(videos) / 4), len(videos), points)).astype(int))
    if len(sizes) < 2:
        return {"value": None, "error": f"needs at least 2 subset sizes; {len(videos)} generated videos give "
                                        f"{len(sizes)}"}
    generator = rng(seed, "fd-infinity")
    values = []
    for n in sizes:
        draws = []
        for _ in range(repeats if n < len(videos) else 1):
            chosen = np.isin(positions, generator.choice(videos, size=n, replace=False))
            stats = FeatureStats(rows.shape[1]).update(np.asarray(rows[chosen], dtype=np.float64))
            draws.append(frechet_point(real.stats, stats, divisor, real.root())[0])
        values.append(float(np.mean(draws)))
    slope, intercept = np.polyfit(1.0 / sizes, values, 1)
    return {"value": float(intercept), "slope": float(slope), "sizes": sizes.tolist(), "values": values,
            "repeats": repeats, "seed": seed,
            "method": "FD(n) = FD_inf + k/n fitted by least squares over subsets of the generated videos (Chong and "
                      "Forsyth 2020); real statistics fixed"}


STEADY_N = "steady_n.json"  # benchmarks/metrics: steady N per metric, protocol and detector (sanity study)


def steady_table() -> dict[str, Any] | None:
    """The packaged table of steady Ns (written by ``python -m benchmarks.sanity.steady refresh``), None when
    the package has none."""
    entry = resources.files("benchmarks") / "metrics" / STEADY_N
    if not entry.is_file():
        return None
    return json.loads(entry.read_text(encoding="utf-8"))


def _feature_name(result: dict[str, Any]) -> str | None:
    source = result.get("features_protocol")
    return source.get("name") if isinstance(source, dict) else None


def sample_efficiency(name: str, result: dict[str, Any], table: dict[str, Any] | None) -> dict[str, Any]:
    """Whether this result's N (videos per set, the smaller set for two-set metrics) is past the N from which
    the sanity suite's sample-efficiency study found ``name`` steady under the same protocol, features and
    detector (identifier and sha256): ``{n, steady_n, past, measured_on, note}``; ``past`` is None where no
    steady N was measured for them, or the study never reached one up to an N below this result's."""
    counts = [result.get(k) for k in ("n_real", "n_fake") if isinstance(result.get(k), int)]
    n = min(counts) if counts else None
    protocol = (result.get("protocol") or {}).get("name")
    detector = result.get("detector") or {}
    out = {"n": n, "steady_n": None, "past": None, "measured_on": None}
    entries = (table or {}).get("entries", [])
    same = [e for e in entries if e["metric"] == name and e["protocol"] == protocol
            and e.get("features_protocol") == _feature_name(result)]
    match = next((e for e in same if e["detector"].get("identifier") == detector.get("identifier")
                  and e["detector"].get("sha256") == detector.get("sha256")), None)
    if match is None:
        others = ", ".join(sorted({str(e["detector"].get("identifier")) for e in same}))
        out["note"] = (f"no steady N measured for {name} under {protocol} with detector "
                       f"{detector.get('identifier')}" + (f" (measured only for {others})" if others else "")
                       + "; python -m benchmarks.sanity.steady study measures it")
        return out
    out.update(steady_n=match["steady_n"], measured_on=(table or {}).get("measured_on"))
    if match["steady_n"] is None:
        reached = n is not None and n <= match["n_max"]
        out["past"] = False if reached else None
        out["note"] = f"not steady up to N = {match['n_max']} in the study"
    elif n is not None:
        out["past"] = n >= match["steady_n"]
        out["note"] = (f"N = {n} is {'past' if out['past'] else 'below'} the steady N {match['steady_n']} the "
                       f"sanity study measured")
    return out


def compute_metrics(run: _Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every requested metric with its protocol, detector and cache record; per-video records."""
    start = time.perf_counter()
    metrics, per_video = {}, {}
    table = steady_table()
    for name in run.cfg.metrics:
        metric, view = run.metrics[name], run.metrics[name].source
        result = _score(run, name)
        if run.cfg.fd_infinity and isinstance(metric, FrechetMetric) and result.get("value") is not None:
            result["fd_infinity"] = fd_infinity(run.references[view].state, run.fake[view], metric.protocol.divisor,
                                                run.cfg.fd_infinity, run.cfg.seed)
        records = metric.per_video(run.fake[view])
        if records is not None:
            per_video[name] = records
        result["protocol"] = describe(metric.protocol)
        if metric.features_from is not None:  # written whole once: under its own metric when that one is scored
            source = describe(run.metrics[view].protocol)
            result["features_protocol"] = ({"name": source["name"], "recorded_under": f"metrics.{view}.protocol"}
                                           if view in run.cfg.metrics else source)
        result["detector"] = _detector_record(run.detectors[view][1])
        if view in run.references:
            ref = run.references[view]
            result["reference_cache"] = {"key": ref.key or None, "hit": ref.hit,
                                         "path": str(ref.path) if ref.path else None,
                                         "warnings": list(run.cache_notes.get(view, []))}
        result["sample_efficiency"] = sample_efficiency(name, result, table)
        metrics[name] = result
    run.timings["metrics"] = time.perf_counter() - start
    return metrics, per_video


# ---------------------------------------------------------------------------------------------------------
# 5. orchestration, result file and summary


def _failed_entries(run: _Run) -> list[dict[str, Any]]:
    """Failures merged by (set, path, reason); ``metrics`` names what each one excluded the video from."""
    merged: dict[tuple, dict[str, Any]] = {}
    for f in run.failed:
        entry = merged.setdefault((f["set"], f["path"], f["reason"]), {**f, "views": set()})
        entry["views"] |= set(f["views"])
    out = []
    for entry in merged.values():
        views = entry.pop("views")
        entry["metrics"] = sorted({m for m in run.cfg.metrics if run.metrics[m].source in views})
        out.append(entry)
    return sorted(out, key=lambda e: (e["set"], e["position"], e["reason"]))


def _init_distributed() -> Any:
    """The accelerate state (initialises the torch.distributed group under torchrun / accelerate launch)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _default_metrics(cfg: EvalConfig, fake_set: VideoSet) -> tuple[EvalConfig, list[str]]:
    """``cfg`` with ``metrics`` filled: :data:`DEFAULT_METRICS` when none were named, without those that need
    prompts when the generated set has none (with a note); metrics named explicitly are kept (and refused later
    if their prompts are missing)."""
    if cfg.metrics is not None:
        return cfg, []
    metrics, notes = [], []
    for name in DEFAULT_METRICS:
        if registry.get(name).needs_prompts and not fake_set.has_prompts:
            notes.append(f"{name} left out: the generated set {cfg.fake!r} ({fake_set.kind}) has no prompts (give a "
                         f"manifest.jsonl, an Ophora-160K CSV or --fake-prompts CSV, or name it in --metrics to "
                         f"require it)")
            continue
        metrics.append(name)
    return dataclasses.replace(cfg, metrics=tuple(metrics)), notes


def draw(video_set: VideoSet, n: int | None, seed: int, role: str) -> VideoSet:
    """``n`` videos of ``video_set`` drawn without replacement by ``seed`` (kept in the set's order); all of them
    for None. A set with fewer than ``n`` videos is refused, naming it, its N and the N required."""
    if n is None:
        return video_set
    if n < 1:
        raise EvaluationInputError(f"--n-{role} must be at least 1, got {n}")
    if len(video_set) < n:
        raise EvaluationInputError(f"the {role} set {video_set.spec!r} has N={len(video_set)} videos, fewer than the "
                                   f"N={n} required (equal N): give it more videos or ask for N <= {len(video_set)}")
    chosen = np.sort(rng(seed, "equal-n", role).permutation(len(video_set))[:n])
    return dataclasses.replace(video_set, items=tuple(video_set.items[i] for i in chosen))


def _geometry(cfg: EvalConfig, real_set: VideoSet, fake_set: VideoSet) -> tuple[Geometry, dict[str, Any]]:
    """The evaluation geometry (``cfg.geometry``; none named: the native one, after checking that the two sets
    agree in frame rate and aspect ratio) and the sets' shapes as their headers give them."""
    shapes = {"real": set_shape(real_set), "fake": set_shape(fake_set)}
    if cfg.geometry is None:
        check_compatible([(f"real set {cfg.real!r}", shapes["real"]), (f"generated set {cfg.fake!r}", shapes["fake"])])
        geometry = NATIVE
    else:
        geometry = parse_geometry(cfg.geometry)
    return geometry, {role: {"fps": s.fps, "width": s.width, "height": s.height, "probed": s.probed}
                      for role, s in shapes.items()}


def _check_prompts(run: _Run, fake_set: Any) -> None:
    for name in (n for n, m in run.metrics.items() if m.needs_prompts and not fake_set.has_prompts):
        raise EvaluationInputError(
            f"{name} needs a prompt per generated video, but the fake set {run.cfg.fake!r} ({fake_set.kind}) has "
            "none: pass a folder with manifest.jsonl or an Ophora-160K CSV, or videos from official code with "
            f"--fake-prompts (a video,prompt CSV), or drop {name} from --metrics (an unconditional model's videos "
            "have no prompts)")


def _require_videos(video_set: VideoSet, role: str, spec: str) -> None:
    """Refuse a set that lists no video (every metric would be n/a), naming the file that defines it."""
    if len(video_set) == 0:
        source = video_set.manifest or video_set.root
        raise EvaluationInputError(f"{source}: the {role} set ({spec!r}) lists no videos; nothing to score. "
                                   f"Pass a set with at least one video as --{role}")


def evaluate(cfg: EvalConfig, detectors: dict[str, tuple[Any, Any]] | None = None) -> dict[str, Any] | None:
    """Run the evaluation; rank 0 returns the result payload (and writes ``cfg.out``), other ranks None.

    ``detectors``: optional preloaded ``{view: (module, DetectorInfo)}`` (views fid, fvd, clipscore).
    """
    start = time.perf_counter()
    state = _init_distributed()
    real_set, fake_set = load_video_set(cfg.real), load_video_set(cfg.fake, prompts=cfg.fake_prompts)
    _require_videos(real_set, "real", cfg.real)
    _require_videos(fake_set, "fake", cfg.fake)
    sizes = {"real": len(real_set), "fake": len(fake_set)}
    real_set, fake_set = draw(real_set, cfg.n_real, cfg.seed, "real"), draw(fake_set, cfg.n_fake, cfg.seed, "fake")
    cfg, notes = _default_metrics(cfg, fake_set)
    cfg, choices = resolve_auto(cfg)
    geometry, shapes = _geometry(cfg, real_set, fake_set)
    run = _Run(cfg, resolve_metrics(cfg), geometry=geometry, notes=notes)
    run.extra = {"detector_choice": choices, "set_shapes": shapes, "set_sizes": sizes}
    _check_prompts(run, fake_set)
    load_detectors(run, detectors, state.device)
    with tempfile.TemporaryDirectory(prefix="ophora-eval-", ignore_cleanup_errors=True) as tmp:
        if run.real_views():
            real_statistics(run, real_set, Path(tmp))
        fake_features(run, fake_set, Path(tmp))
        if dist_info()[0] != 0:
            return None
        metrics, per_video = compute_metrics(run)
    run.timings["total"] = time.perf_counter() - start
    payload = _payload(run, real_set, fake_set, metrics, per_video)
    if cfg.out:
        write_json(cfg.out, payload, config=run.cfg, seed=cfg.seed,
                   roots={"$real": real_set.root, "$fake": fake_set.root, "$cache": cache_dir()})
    return payload


def set_states(cfg: EvalConfig, spec: str, role: str, workdir: Path,
               detectors: dict[str, tuple[Any, Any]] | None = None) -> tuple[dict[str, Metric], dict[str, Any], list]:
    """One set's state of every view of ``cfg.metrics``, each keeping its rows (the per-video features), as the
    evaluation extracts it for ``role`` ("real": FVD's seeded clip offsets; "fake"), at ``cfg.geometry`` (None:
    native). Returns (the metrics by name, ``{view: state}``, failed inputs); the rows live under ``workdir``.
    The sample-efficiency study (:mod:`benchmarks.sanity.efficiency`) computes each metric on subsets of videos
    from these, so a set is decoded once whatever the number of subsets."""
    if role not in ("real", "fake"):
        raise ValueError(f"role must be 'real' or 'fake', got {role!r}")
    video_set = load_video_set(spec)
    _require_videos(video_set, role, spec)
    cfg = dataclasses.replace(cfg, real=spec, fake=spec)
    cfg, _ = resolve_auto(cfg)
    geometry = NATIVE if cfg.geometry is None else parse_geometry(cfg.geometry)
    run = _Run(cfg, resolve_metrics(cfg), geometry=geometry)
    load_detectors(run, detectors, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    states = {view: run.metrics[view].new_state(video_set=video_set, detector=run.detectors[view][0],
                                                rows_path=Path(workdir) / f"{role}-{view}.f16")
              for view in run.views()}
    done = _extract(run, video_set, role, states)
    return run.metrics, states, done["failed"]


def _payload(run: _Run, real_set: Any, fake_set: Any, metrics: dict[str, Any],
             per_video: dict[str, Any]) -> dict[str, Any]:
    def describe_set(video_set: Any, fingerprint: str | None = None) -> dict[str, Any]:
        return {"spec": video_set.spec, "kind": video_set.kind, "root": str(video_set.root),
                "videos": len(video_set), "fingerprint": fingerprint}

    detectors = {view: _detector_record(info) for view, (_, info) in run.detectors.items()}
    inputs = {"real": describe_set(real_set, run.fingerprint), "fake": describe_set(fake_set)}
    for role in inputs:
        inputs[role]["videos_in_set"] = run.extra.get("set_sizes", {}).get(role, len(inputs[role]))
        inputs[role]["header_shape"] = run.extra.get("set_shapes", {}).get(role)
    return {
        "format": FORMAT,
        "inputs": inputs,
        "geometry": run.geometry.to_dict(),
        "n": {"real": len(real_set), "fake": len(fake_set), "drawn_with_seed": run.cfg.seed,
              "real_drawn": run.cfg.n_real is not None, "fake_drawn": run.cfg.n_fake is not None},
        "detectors": detectors,
        "detector_choice": run.extra.get("detector_choice", {}),
        "comparable_with_literature": all(d["comparable_with_literature"] for d in detectors.values()),
        "notes": list(run.notes),
        "metrics": metrics,
        "per_video": per_video,
        "failed": _failed_entries(run),
        "timings_s": {k: round(v, 4) for k, v in run.timings.items()},
        "world_size": dist_info()[1],
        "evaluation_packages": package_versions(_EVAL_PACKAGES),
    }


def _kind(detector: dict[str, Any]) -> str:
    """How a detector that is not comparable came to be: random-init, custom, a weight-free tracker (FVMD's
    OpenCV Lucas-Kanade) or surgical."""
    identifier = detector.get("identifier", "")
    if identifier.startswith("opencv-lk"):
        return "weight-free tracker"
    return identifier.split(":", 1)[0] if identifier.startswith(("random-init", "custom")) else "surgical-domain"


def summary_table(payload: dict[str, Any]) -> str:
    """A short text table (metric, value, 95% interval, N real, N fake, protocol, comparable), then what the JSON
    knows and a reader should not miss: each metric's warnings (rank-deficient covariances, N below the feature
    dimension), a distance interval reaching below zero (printed clipped at 0, with a note), a CLIPScore clamped
    at 0 (with its unclamped mean), and for random-init detectors a banner with the command that fetches the
    published weights."""
    lines = [f"{'metric':<10} {'value':>12} {'95% CI':>25} {'N real':>7} {'N fake':>7}  protocol"]
    notes: list[str] = list(payload.get("notes") or [])
    geometry = payload.get("geometry")
    if geometry:
        notes.append(f"geometry {_geometry_line(geometry)}")
    n = payload.get("n")
    if n and (n.get("real_drawn") or n.get("fake_drawn")):
        inputs = payload.get("inputs", {})
        parts = [f"{n[role]} of the {inputs.get(role, {}).get('videos_in_set', '?')} {word} videos"
                 if n.get(f"{role}_drawn") else f"all {n[role]} {word} videos"
                 for role, word in (("real", "real"), ("fake", "generated"))]
        notes.append(f"equal N: {' and '.join(parts)}, drawn with seed {n['drawn_with_seed']}")
    for name, choice in (payload.get("detector_choice") or {}).items():
        notes.append(f"{name}: --weights auto chose {choice['protocol']} ({choice['weights']}): {choice['why']}")
    for name, m in payload["metrics"].items():
        value = "n/a" if m.get("value") is None else f"{m['value']:.4f}"
        ci = m.get("ci")
        ci_text = "-"
        if ci:
            distance = not registry.get(name).higher_is_better
            low = max(ci["low"], 0.0) if distance else ci["low"]
            ci_text = f"[{low:.4f}, {ci['high']:.4f}]"
            if distance and ci["low"] < 0:
                notes.append(f"{name}: the interval's lower end {ci['low']:.4f} lies below zero (a distance cannot); "
                             f"printed clipped at 0, the result file keeps it")
        flag = "" if m["detector"]["comparable_with_literature"] else f"  ({_kind(m['detector'])}: not comparable)"
        lines.append(f"{name:<10} {value:>12} {ci_text:>25} {m.get('n_real', '-')!s:>7} {m.get('n_fake', '-')!s:>7}"
                     f"  {m['protocol']['name']}{flag}")
        notes += [f"{name}: {w}" for w in m.get("warnings") or []]
        efficiency = m.get("sample_efficiency")
        if efficiency and efficiency.get("note"):
            notes.append(f"{name}: sample efficiency: {efficiency['note']}")
        extrapolated = m.get("fd_infinity") or {}
        if extrapolated.get("value") is not None:
            notes.append(f"{name}: extrapolated to N = infinity (Chong and Forsyth): {extrapolated['value']:.4f} "
                         f"(from subsets of {extrapolated['sizes'][0]} to {extrapolated['sizes'][-1]} generated "
                         f"videos; FD at this N carries a bias of about {extrapolated['slope'] / m['n_fake']:.4f})")
        unclamped = m.get("mean_unclamped")
        if unclamped is not None and m.get("value") is not None and unclamped < m["value"]:
            notes.append(f"{name}: the mean over videos is {unclamped:.4f}, clamped at 0 as torchmetrics does")
    if payload["failed"]:
        notes.append(f"{len(payload['failed'])} failed input(s); see 'failed' in the result file")
    random = sorted({d["detector"] for d in payload.get("detectors", {}).values()
                     if str(d.get("identifier", "")).startswith("random-init")})
    if random:
        notes.append(f"RANDOM-INIT detectors ({', '.join(random)}): these numbers rank nothing and are not "
                     f"comparable with any published value; `python -m ophora.weights list` names the published "
                     f"files and `python -m ophora.weights fetch NAME` downloads one, then pass --weights pretrained")
    return "\n".join(lines + [f"note: {n}" for n in notes])


def _geometry_line(geometry: dict[str, Any]) -> str:
    """``endora-128: 8 fps, 16 frames, 128x128 (short-side-crop, lanczos)`` from a result's geometry record."""
    return parse_geometry(dict(geometry)).summary()


def _metric_value(text: str, option: str) -> tuple[str, str]:
    metric, sep, value = text.partition("=")
    if not sep or metric not in registry.names():
        raise argparse.ArgumentTypeError(f"{option} expects METRIC=VALUE with METRIC in {', '.join(registry.names())}, "
                                         f"got {text!r}")
    return metric, value


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("benchmarks.evaluate", __doc__.split("\n\n")[0])
    p.add_argument("--real", required=True, help="real videos: folder, manifest.jsonl folder or Ophora-160K CSV")
    p.add_argument("--fake", required=True, help="generated videos (prompts from its manifest)")
    p.add_argument("--fake-prompts", default=None, metavar="CSV",
                   help="video,prompt CSV for a folder of videos from official code (ophora.data.external)")
    p.add_argument("--metrics", default=None,
                   help=f"comma list of {', '.join(registry.names())} (default {','.join(DEFAULT_METRICS)}; "
                        "clipscore left out, with a note, when the generated videos have no prompts)")
    p.add_argument("--protocol", action="append", default=[], metavar="METRIC=NAME",
                   help="e.g. fvd=fvd/tf, fid=fid/ophsim-surgical (see benchmarks.metrics.protocol_names())")
    p.add_argument("--weights", action="append", default=[], metavar="MODE|METRIC=MODE",
                   help="auto (default: the published detector where its weights are present, else the surgical "
                        "one shipped with the suite), pretrained, random-init or a file; METRIC=... for one detector")
    p.add_argument("--geometry", default=None, metavar="NAME|KEY=VALUE,...",
                   help="bring both sets to one frame rate, clip length and size before the detectors: a name "
                        "(endora-128, square-256, ophora-480x720, native) or fps=8,frames=16,size=128x128,"
                        "mode=short-side-crop,filter=lanczos (default: none; sets whose frame rates or aspect "
                        "ratios differ are refused)")
    p.add_argument("--n-real", type=int, default=None, metavar="N",
                   help="score N real videos drawn with --seed (equal N)")
    p.add_argument("--n-fake", type=int, default=None, metavar="N",
                   help="score N generated videos drawn with --seed (equal N)")
    p.add_argument("--fd-infinity", type=int, default=0, metavar="K",
                   help="also extrapolate FID/FVD to N = infinity from K subset sizes of the generated set "
                        "(Chong and Forsyth 2020; 0: off)")
    p.add_argument("--detector", action="append", default=[], metavar="METRIC=PATH",
                   help="your own detector file for METRIC's protocol (recorded as custom, not comparable)")
    p.add_argument("--detector-seed", type=int, default=0, help="seed of random-init detectors")
    p.add_argument("--fid-frames", default=None, help="frames per video for FID: an integer or 'all' (default 8)")
    p.add_argument("--clip-frames", type=int, default=None, help="frames per video for CLIPScore (default 8)")
    p.add_argument("--clip-model", default="ViT-L-14", help="open_clip model (ophora-tiny-clip for tests)")
    p.add_argument("--tiny-i3d", action="store_true",
                   help="tiny random-init video detectors (I3D; also VideoMAE for fvd/videomae and V-JEPA 2 for "
                        "jedi): tests and demos only")
    add_seed(p, "real clips' offsets, geometry windows, equal-N draws, KID subsets, bootstrap")
    p.add_argument("--batch-size", type=int, default=8, help="videos per DataLoader batch")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="DataLoader workers (default: min(2, CPUs); 0: decode in the main process)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached reference statistics")
    p.add_argument("--strict", action="store_true", help="a failed input is fatal")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates for 95%% intervals (0: none)")
    add_output(p, "result JSON file", required=True, type=str, metavar="FILE")
    add_progress(p)
    return p


def _checked_geometry(spec: str | None) -> str | None:
    """``spec`` unchanged once it parses (an unknown name or field is a usage error, before any work)."""
    if spec is not None:
        parse_geometry(spec)
    return spec


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """An :class:`EvalConfig` from parsed command-line arguments."""
    weights, per_metric = "auto", []
    for text in args.weights:
        if "=" in text:
            per_metric.append(_metric_value(text, "--weights"))
        else:
            weights = text
    fid_frames = args.fid_frames if args.fid_frames in (None, "all") else int(args.fid_frames)
    return EvalConfig(
        real=args.real, fake=args.fake,
        metrics=None if args.metrics is None else tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        protocols=tuple(_metric_value(t, "--protocol") for t in args.protocol), weights=weights,
        detector_weights=tuple(per_metric), detector_seed=args.detector_seed,
        custom_detectors=tuple(_metric_value(t, "--detector") for t in args.detector), fid_frames=fid_frames,
        clip_frames=args.clip_frames, clip_model=args.clip_model, tiny_i3d=args.tiny_i3d, seed=args.seed,
        batch_size=args.batch_size, workers=args.workers, no_cache=args.no_cache, strict=args.strict,
        bootstrap=args.bootstrap, out=args.out, progress=args.progress, fake_prompts=args.fake_prompts,
        geometry=_checked_geometry(args.geometry),
        n_real=args.n_real, n_fake=args.n_fake, fd_infinity=args.fd_infinity)


# What the command reports as one line (no traceback): problems of the inputs or the machine, not of the code.
_USER_ERRORS = (FailedVideoError, EvaluationInputError, ManifestError, ExternalVideosError, ChecksumMismatchError,
                GeometryMismatchError, OSError)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("benchmarks").setLevel(logging.INFO)  # cache hits and misses
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (argparse.ArgumentTypeError, ValueError) as err:
        parser.error(str(err))
    try:
        payload = evaluate(cfg)
    except _USER_ERRORS as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        return 2
    if payload is None:
        return 0
    print(summary_table(payload))
    print(f"wrote {cfg.out}")
    if payload["metrics"] and all(m.get("value") is None for m in payload["metrics"].values()):
        print(f"error: no metric could be computed: {len(payload['failed'])} input(s) failed (reasons under 'failed' "
              f"in {cfg.out or 'the result'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
