"""Score a generated video set against a real one: FID, FVD, CLIPScore and KID under named protocols.

    python -m benchmarks.evaluate --real REAL --fake FAKE --metrics fid,fvd,clipscore[,kid] --out FILE.json
        [--protocol fvd=fvd/tf] [--weights random-init|pretrained|METRIC=PATH] [--detector-seed S]
        [--fid-frames K|all] [--clip-frames K] [--clip-model ophora-tiny-clip|ViT-L-14] [--tiny-i3d]
        [--seed S] [--batch-size B] [--workers W] [--no-cache] [--strict] [--bootstrap N]

REAL and FAKE: a folder of videos (``*.mp4``, recursive), a generated folder with ``manifest.jsonl`` or an
Ophora-160K CSV; CLIPScore prompts come from the fake set's manifest. Recipe:

1. resolve the protocols (``benchmarks.protocols``) and load their detectors (``benchmarks.detectors``);
2. real set: reference statistics from the cache (``benchmarks.cache``) or extracted, then cached;
3. fake set: extracted (``benchmarks.features``): one decode per video, all metrics in one pass;
4. rank 0: distances, KID, CLIPScore and bootstrap intervals over videos (``benchmarks.scoring``);
5. rank 0: the self-describing JSON (``ophora.results.write_json``, atomic) and a summary table.

Under ``torchrun`` / ``accelerate launch`` each process scores a strided shard of each set; statistics are
all-reduced, per-video scores and failures gathered, and only rank 0 writes.

Result file (``format: ophora-eval/1``): ``config`` (this run's :class:`EvalConfig`), ``seed``,
``provenance`` (git commit, date, Python, platform, package versions), ``inputs`` (each set's spec, kind,
root, number of videos; the real set's content fingerprint), ``protocols`` (every field of each metric's
protocol), ``detectors`` (identifier, sha256, ``comparable_with_literature``; false for random-init),
``comparable_with_literature``, ``metrics`` (per metric: ``value``, ``n_real``, ``n_fake``, rows, ``ci``
with the 95% bootstrap interval and its method, warnings, its protocol and detector, ``reference_cache``),
``per_video`` (CLIPScore per video: path, prompt, score, tokens, truncated; features are not dumped),
``failed`` (set, path, key, position, reason, metrics it was excluded from), ``timings_s`` per stage,
``world_size`` and ``evaluation_packages``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks import cache as refcache
from benchmarks.clipscore import ClipScores, clipscore_result
from benchmarks.features import FailedVideoError, FrechetFeatures, dist_info, extract, gather_objects
from benchmarks.protocols import describe, protocol_for
from benchmarks.scoring import (GroupedRows, frechet_point, grouped_bootstrap_frechet, kid_with_interval,
                                reference_root)
from ophora.results import package_versions, write_json
from ophora.seeding import derive_seed
from ophora.data.sets import load_video_set

__all__ = ["EvalConfig", "evaluate", "summary_table", "main", "METRICS"]

METRICS = ("fid", "fvd", "clipscore", "kid")
FORMAT = "ophora-eval/1"
_EVAL_PACKAGES = ("torch", "pytorch-fid", "open_clip_torch", "scipy", "numpy", "av", "accelerate")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Everything a run depends on (recorded in the result as ``config``).

    ``protocols``: (metric, protocol name) overrides; ``detector_weights``: (metric, weights) overrides of
    ``weights`` ("random-init", "pretrained" or a file); ``fid_frames``: frames per video for FID (an int or
    "all"; None: the protocol's default); ``bootstrap``: replicates for the 95% intervals (0: none).
    """

    real: str
    fake: str
    metrics: tuple[str, ...] = ("fid", "fvd", "clipscore")
    protocols: tuple[tuple[str, str], ...] = ()
    weights: str = "random-init"
    detector_weights: tuple[tuple[str, str], ...] = ()
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


@dataclass
class _Run:
    """State of one evaluation shared by the steps below."""

    cfg: EvalConfig
    protocols: dict[str, Any]  # view name -> protocol (views: fid, fvd, clipscore)
    detectors: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # view -> (module, DetectorInfo)
    timings: dict[str, float] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)
    references: dict[str, refcache.Reference] = field(default_factory=dict)
    fake: dict[str, Any] = field(default_factory=dict)  # view -> consumer
    fingerprint: str | None = None

    def needs_rows(self, view: str) -> bool:
        return self.cfg.bootstrap > 0 or (view == "fid" and "kid" in self.cfg.metrics)


# ---------------------------------------------------------------------------------------------------------
# 1. protocols and detectors


def resolve_protocols(cfg: EvalConfig) -> dict[str, Any]:
    """Protocol of each metric after overrides (KID also needs the FID protocol, under view "fid")."""
    unknown = [m for m in cfg.metrics if m not in METRICS]
    if unknown or not cfg.metrics:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    names = dict(cfg.protocols)
    changes: dict[str, dict[str, Any]] = {"fid": {}, "clipscore": {"model": cfg.clip_model}}
    if cfg.fid_frames == "all":
        changes["fid"] = {"frames": "all", "frames_per_video": None}
    elif cfg.fid_frames is not None:
        changes["fid"] = {"frames": "uniform", "frames_per_video": int(cfg.fid_frames)}
    if cfg.clip_frames is not None:
        changes["clipscore"]["frames_per_video"] = int(cfg.clip_frames)
    wanted = set(cfg.metrics) | ({"fid"} if "kid" in cfg.metrics else set())
    return {m: protocol_for(m, names.get(m), **changes.get(m, {})) for m in METRICS if m in wanted}


def _load_fid(protocol: Any, weights: str, cfg: EvalConfig) -> tuple[Any, Any]:
    from benchmarks.detectors.inception import load_fid_inception

    return load_fid_inception(weights, cfg.detector_seed)


def _load_fvd(protocol: Any, weights: str, cfg: EvalConfig) -> tuple[Any, Any]:
    from benchmarks.detectors.i3d import load_i3d

    return load_i3d(weights, cfg.detector_seed, tiny=cfg.tiny_i3d)


def _load_clip(protocol: Any, weights: str, cfg: EvalConfig) -> tuple[Any, Any]:
    from benchmarks.detectors.clip import load_clip

    detector = load_clip(protocol.model, weights, cfg.detector_seed, tag=protocol.pretrained_tag)
    return detector, detector.info


_LOADERS: dict[str, Callable[[Any, str, EvalConfig], tuple[Any, Any]]] = {
    "fid": _load_fid, "fvd": _load_fvd, "clipscore": _load_clip}


def load_detectors(run: _Run, given: dict[str, tuple[Any, Any]] | None, device: Any) -> None:
    """Load (or take from ``given``) the detector of every view, in eval mode on ``device``."""
    start = time.perf_counter()
    overrides = dict(run.cfg.detector_weights)
    for view in (v for v in run.protocols if v != "kid"):
        module, info = (given or {}).get(view) or _LOADERS[view](run.protocols[view],
                                                                 overrides.get(view, run.cfg.weights), run.cfg)
        target = module if isinstance(module, torch.nn.Module) else module.model  # ClipDetector wraps its model
        target.to(device).eval()
        run.detectors[view] = (module, info)
    run.timings["load_detectors"] = time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------------
# 2. real set: cached or extracted reference statistics


def _fd_views(run: _Run) -> list[str]:
    return [v for v in ("fid", "fvd") if v in run.protocols]


def _cache_lookup(run: _Run, real_set: Any) -> dict[str, str]:
    """Rank 0: keys of the FD views and the cached entries found; every process learns which views hit."""
    keys: dict[str, str] = {}
    if dist_info()[0] == 0 and not run.cfg.no_cache:
        start = time.perf_counter()
        run.fingerprint = refcache.set_fingerprint(real_set)
        run.timings["fingerprint_real"] = time.perf_counter() - start
        for view in _fd_views(run):
            protocol, info = run.protocols[view], run.detectors[view][1]
            keys[view] = refcache.reference_key(run.fingerprint, protocol, info.sha256, run.cfg.seed)
            hit = refcache.load_reference(keys[view], protocol, need_rows=run.needs_rows(view))
            if hit is not None:
                run.references[view] = hit
    hits = gather_objects(sorted(run.references))[0]
    for view in hits:
        run.references.setdefault(view, None)  # placeholder on ranks > 0
    return keys


def real_statistics(run: _Run, real_set: Any, workdir: Path) -> None:
    """Fill ``run.references`` for every FD view: cache hits, then one extraction pass for the misses."""
    keys = _cache_lookup(run, real_set)
    misses = [v for v in _fd_views(run) if v not in run.references]
    if misses:
        consumers = {v: FrechetFeatures(run.protocols[v], run.detectors[v][0],
                                        workdir / f"real-{v}.f16" if run.needs_rows(v) else None) for v in misses}
        done = _extract(run, real_set, "real", consumers)
        run.timings["extract_real"] = done["seconds"]
        if dist_info()[0] == 0:
            for view in misses:
                run.references[view] = _new_reference(run, view, consumers[view], done["failed"], keys.get(view))
    for view, reference in run.references.items():
        if reference is not None and reference.hit:
            run.failed.extend(reference.failed)


def _new_reference(run: _Run, view: str, consumer: FrechetFeatures, failed: list[dict[str, Any]],
                   key: str | None) -> refcache.Reference:
    """Reference statistics from a fresh extraction (rank 0), cached unless ``no_cache``."""
    protocol = run.protocols[view]
    mine = [f for f in failed if view in f["views"]]
    rows, positions = consumer.rows.arrays() if consumer.rows is not None else (None, None)
    root = reference_root(consumer.stats, protocol.divisor) if consumer.stats.count >= 2 else None
    reference = refcache.Reference(key or "", consumer.stats, root, consumer.videos, mine, rows, positions)
    if key is not None and root is not None:
        reference.path = refcache.save_reference(reference, protocol, {
            "real_set": run.cfg.real, "fingerprint": run.fingerprint, "seed": run.cfg.seed,
            "detector": run.detectors[view][1].to_dict()})
    return reference


# ---------------------------------------------------------------------------------------------------------
# 3. fake set


def _extract(run: _Run, video_set: Any, role: str, consumers: dict[str, Any]) -> dict[str, Any]:
    views = {name: run.protocols[name] for name in consumers}
    done = extract(video_set, role, views, consumers, seed=run.cfg.seed, batch_size=run.cfg.batch_size,
                   workers=run.cfg.workers, strict=run.cfg.strict, progress=run.cfg.progress)
    run.failed.extend(done["failed"])
    return done


def fake_features(run: _Run, fake_set: Any, workdir: Path) -> None:
    """One extraction pass over the fake set for every view (FD features and CLIPScores)."""
    consumers: dict[str, Any] = {}
    for view in _fd_views(run):
        rows = workdir / f"fake-{view}.f16" if run.needs_rows(view) else None
        consumers[view] = FrechetFeatures(run.protocols[view], run.detectors[view][0], rows)
    if "clipscore" in run.protocols:
        consumers["clipscore"] = ClipScores(run.protocols["clipscore"], run.detectors["clipscore"][0],
                                            [item.prompt for item in fake_set.items])
    run.fake = consumers
    run.timings["extract_fake"] = _extract(run, fake_set, "fake", consumers)["seconds"]


# ---------------------------------------------------------------------------------------------------------
# 4. metrics (rank 0)


def _detector_record(info: Any) -> dict[str, Any]:
    return {**info.to_dict(), "comparable_with_literature": bool(info.comparable)}


def frechet_metric(run: _Run, view: str) -> dict[str, Any]:
    """FID or FVD: value, N, warnings and (with ``bootstrap``) the 95% interval over videos."""
    ref, fake, protocol = run.references[view], run.fake[view], run.protocols[view]
    result: dict[str, Any] = {"value": None, "n_real": ref.videos, "n_fake": fake.videos,
                              "n_real_rows": ref.stats.count, "n_fake_rows": fake.stats.count}
    if ref.stats.count < 2 or fake.stats.count < 2:
        result["error"] = f"needs at least 2 {protocol.samples} in each set"
        return result
    result["value"], result["warnings"] = frechet_point(ref.stats, fake.stats, protocol.divisor, ref.root)
    if run.cfg.bootstrap and ref.videos >= 2 and fake.videos >= 2:
        result["ci"] = grouped_bootstrap_frechet(
            GroupedRows(ref.rows, ref.positions), GroupedRows(*fake.rows.arrays()), result["value"],
            divisor=protocol.divisor, n_boot=run.cfg.bootstrap, seed=derive_seed(run.cfg.seed, "bootstrap", view))
    return result


def kid_metric(run: _Run) -> dict[str, Any]:
    """KID on the FID view's per-row features: value, std over subsets, N and the interval over videos."""
    ref, fake = run.references["fid"], run.fake["fid"]
    base = {"n_real": ref.videos, "n_fake": fake.videos, "n_real_rows": ref.stats.count,
            "n_fake_rows": fake.stats.count}
    if ref.stats.count < 2 or fake.stats.count < 2:
        return {"value": None, **base, "error": "needs at least 2 rows in each set"}
    n_boot = run.cfg.bootstrap if ref.videos >= 2 and fake.videos >= 2 else 0
    return {**kid_with_interval(run.protocols["kid"], GroupedRows(ref.rows, ref.positions),
                                GroupedRows(*fake.rows.arrays()), seed=run.cfg.seed, n_boot=n_boot), **base}


def clip_metric(run: _Run, fake_set: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The set's CLIPScore and the per-video records (path, prompt, score, tokens, truncated)."""
    scores = run.fake["clipscore"]
    per_video = [{"path": fake_set.items[p].key, "prompt": fake_set.items[p].prompt, **scores.records[p]}
                 for p in sorted(scores.records)]
    truncated = sum(r["truncated"] for r in per_video)
    result = clipscore_result(scores.scores(), truncated, n_boot=run.cfg.bootstrap,
                              seed=derive_seed(run.cfg.seed, "bootstrap", "clipscore"))
    result["context_length"] = run.detectors["clipscore"][0].context_length
    return result, per_video


def compute_metrics(run: _Run, fake_set: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every requested metric with its protocol, detector and cache record; per-video CLIPScores."""
    start = time.perf_counter()
    metrics, per_video = {}, {}
    for metric in run.cfg.metrics:
        view = "fid" if metric == "kid" else metric
        if metric in ("fid", "fvd"):
            result = frechet_metric(run, metric)
        elif metric == "kid":
            result = kid_metric(run)
        else:
            result, per_video["clipscore"] = clip_metric(run, fake_set)
        result["protocol"] = describe(run.protocols[metric])
        if metric == "kid":
            result["features_protocol"] = describe(run.protocols["fid"])
        result["detector"] = _detector_record(run.detectors[view][1])
        if view in run.references:
            ref = run.references[view]
            result["reference_cache"] = {"key": ref.key or None, "hit": ref.hit,
                                         "path": str(ref.path) if ref.path else None}
        metrics[metric] = result
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
        entry["metrics"] = sorted({m for m in run.cfg.metrics if (("fid" if m == "kid" else m) in views)})
        out.append(entry)
    return sorted(out, key=lambda e: (e["set"], e["position"], e["reason"]))


def _init_distributed() -> Any:
    """The accelerate state (initialises the torch.distributed group under torchrun / accelerate launch)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def evaluate(cfg: EvalConfig, detectors: dict[str, tuple[Any, Any]] | None = None) -> dict[str, Any] | None:
    """Run the evaluation; rank 0 returns the result payload (and writes ``cfg.out``), other ranks None.

    ``detectors``: optional preloaded ``{view: (module, DetectorInfo)}`` (views fid, fvd, clipscore).
    """
    start = time.perf_counter()
    state = _init_distributed()
    run = _Run(cfg, resolve_protocols(cfg))
    real_set, fake_set = load_video_set(cfg.real), load_video_set(cfg.fake, prompts=cfg.fake_prompts)
    if "clipscore" in run.protocols and not fake_set.has_prompts:
        raise ValueError(f"clipscore needs a prompt per generated video, but the fake set {cfg.fake!r} "
                         f"({fake_set.kind}) has none: pass a folder with manifest.jsonl or an Ophora-160K CSV, "
                         "or videos from official code with --fake-prompts (a video,prompt CSV), "
                         "or drop clipscore from --metrics (an unconditional model's videos have no prompts)")
    load_detectors(run, detectors, state.device)
    with tempfile.TemporaryDirectory(prefix="ophora-eval-", ignore_cleanup_errors=True) as tmp:
        if _fd_views(run):
            real_statistics(run, real_set, Path(tmp))
        fake_features(run, fake_set, Path(tmp))
        if dist_info()[0] != 0:
            return None
        metrics, per_video = compute_metrics(run, fake_set)
    run.timings["total"] = time.perf_counter() - start
    payload = _payload(run, real_set, fake_set, metrics, per_video)
    if cfg.out:
        write_json(cfg.out, payload, config=cfg, seed=cfg.seed)
    return payload


def _payload(run: _Run, real_set: Any, fake_set: Any, metrics: dict[str, Any],
             per_video: dict[str, Any]) -> dict[str, Any]:
    def describe_set(video_set: Any, fingerprint: str | None = None) -> dict[str, Any]:
        return {"spec": video_set.spec, "kind": video_set.kind, "root": str(video_set.root),
                "videos": len(video_set), "fingerprint": fingerprint}

    detectors = {view: _detector_record(info) for view, (_, info) in run.detectors.items()}
    return {
        "format": FORMAT,
        "inputs": {"real": describe_set(real_set, run.fingerprint), "fake": describe_set(fake_set)},
        "protocols": {m: describe(run.protocols[m]) for m in run.cfg.metrics},
        "detectors": detectors,
        "comparable_with_literature": all(d["comparable_with_literature"] for d in detectors.values()),
        "metrics": metrics,
        "per_video": per_video,
        "failed": _failed_entries(run),
        "timings_s": {k: round(v, 4) for k, v in run.timings.items()},
        "world_size": dist_info()[1],
        "evaluation_packages": package_versions(_EVAL_PACKAGES),
    }


def summary_table(payload: dict[str, Any]) -> str:
    """A short text table: metric, value, 95% interval, N real, N fake, protocol, comparable."""
    lines = [f"{'metric':<10} {'value':>12} {'95% CI':>25} {'N real':>7} {'N fake':>7}  protocol"]
    for name, m in payload["metrics"].items():
        value = "n/a" if m.get("value") is None else f"{m['value']:.4f}"
        ci = m.get("ci")
        ci_text = f"[{ci['low']:.4f}, {ci['high']:.4f}]" if ci else "-"
        flag = "" if m["detector"]["comparable_with_literature"] else "  (random-init: not comparable)"
        lines.append(f"{name:<10} {value:>12} {ci_text:>25} {m.get('n_real', '-')!s:>7} {m.get('n_fake', '-')!s:>7}"
                     f"  {m['protocol']['name']}{flag}")
    if payload["failed"]:
        lines.append(f"{len(payload['failed'])} failed input(s); see 'failed' in the result file")
    return "\n".join(lines)


def _metric_value(text: str, option: str) -> tuple[str, str]:
    metric, sep, value = text.partition("=")
    if not sep or metric not in METRICS:
        raise argparse.ArgumentTypeError(f"{option} expects METRIC=VALUE with METRIC in {', '.join(METRICS)}, "
                                         f"got {text!r}")
    return metric, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", required=True, help="real videos: folder, manifest.jsonl folder or Ophora-160K CSV")
    p.add_argument("--fake", required=True, help="generated videos (prompts from its manifest)")
    p.add_argument("--fake-prompts", default=None, metavar="CSV",
                   help="video,prompt CSV for a folder of videos from official code (ophora.data.external)")
    p.add_argument("--metrics", default="fid,fvd,clipscore", help=f"comma list of {', '.join(METRICS)}")
    p.add_argument("--protocol", action="append", default=[], metavar="METRIC=NAME",
                   help="e.g. fvd=fvd/tf (see benchmarks.protocols.PROTOCOLS)")
    p.add_argument("--weights", action="append", default=[], metavar="MODE|METRIC=MODE",
                   help="random-init (default), pretrained or a file; METRIC=... for one detector")
    p.add_argument("--detector-seed", type=int, default=0, help="seed of random-init detectors")
    p.add_argument("--fid-frames", default=None, help="frames per video for FID: an integer or 'all' (default 8)")
    p.add_argument("--clip-frames", type=int, default=None, help="frames per video for CLIPScore (default 8)")
    p.add_argument("--clip-model", default="ViT-L-14", help="open_clip model (ophora-tiny-clip for tests)")
    p.add_argument("--tiny-i3d", action="store_true", help="tiny random-init I3D (tests and demos only)")
    p.add_argument("--seed", type=int, default=0, help="real clips' offsets, KID subsets, bootstrap")
    p.add_argument("--batch-size", type=int, default=8, help="videos per DataLoader batch")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default min(2, CPUs))")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached reference statistics")
    p.add_argument("--strict", action="store_true", help="a failed input is fatal")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates for 95%% intervals (0: none)")
    p.add_argument("--out", required=True, help="result JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """An :class:`EvalConfig` from parsed command-line arguments."""
    weights, per_metric = "random-init", []
    for text in args.weights:
        if "=" in text:
            per_metric.append(_metric_value(text, "--weights"))
        else:
            weights = text
    fid_frames = args.fid_frames if args.fid_frames in (None, "all") else int(args.fid_frames)
    return EvalConfig(
        real=args.real, fake=args.fake, metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        protocols=tuple(_metric_value(t, "--protocol") for t in args.protocol), weights=weights,
        detector_weights=tuple(per_metric), detector_seed=args.detector_seed, fid_frames=fid_frames,
        clip_frames=args.clip_frames, clip_model=args.clip_model, tiny_i3d=args.tiny_i3d, seed=args.seed,
        batch_size=args.batch_size, workers=args.workers, no_cache=args.no_cache, strict=args.strict,
        bootstrap=args.bootstrap, out=args.out, progress=not args.quiet, fake_prompts=args.fake_prompts)


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
    except FailedVideoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if payload is not None:
        print(summary_table(payload))
        print(f"wrote {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
