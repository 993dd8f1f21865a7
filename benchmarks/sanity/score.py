"""Scorers of the sanity suite: configured metrics under their protocols, run through ``benchmarks.evaluate``.

:func:`resolve_scorers` turns the config's scorer list (default: every registered protocol of every metric)
into the scorers that can run here, with a note for each one skipped (a protocol or metric not registered,
published weights absent, prompts missing). Scorers with the same options are grouped into one
:class:`~benchmarks.evaluate.EvalConfig` per pass (one decode of a set feeds all of them; a metric appears once
per pass, and every detector of a pass has one protocol and one weights). A metric computed on another metric's
features (KVD on FVD's, KVMD on FVMD's: ``features_from``) reads them from the protocol its scorer names under
``features`` (default: that metric's default protocol), so it only shares a pass whose detector for that metric
is the same protocol with the same weights. :class:`ScoreGroup` loads its detectors once, on the first set it
has to score, and caches each set's result as JSON under the work folder (written atomically), so a rerun scores
only what is missing; the folder's key covers the pass's options, protocols (every field), weights, intervals
and the sha256 of every detector shipped in the package.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks import metrics as registry
from benchmarks.evaluate import EvalConfig, evaluate, resolve_metrics
from benchmarks.metrics.base import describe
from benchmarks.sanity.config import SCORER_OPTIONS, SanityConfig, SanityError, ScorerSpec
from ophora.data.atomic import atomic_write_text
from ophora.hashing import cache_key
from ophora.weights import REGISTRY, WeightsNotFoundError, resolve

__all__ = ["Scorer", "ScoreGroup", "resolve_scorers", "group_scorers", "group_views", "default_scorers"]


@dataclass(frozen=True)
class Scorer:
    """One runnable scorer: ``label`` (tables and plots), its metric, protocol, weights and options; for a metric
    computed on another metric's features, ``source`` (that metric, e.g. fvd for kvd) and ``features`` (the
    protocol of ``source`` whose features it reads); ``weights`` are then those of that protocol's detector."""

    label: str
    metric: str
    protocol: str
    weights: str | None
    options: tuple[tuple[str, Any], ...]
    higher_is_better: bool
    display_name: str
    needs_prompts: bool
    features: str | None = None
    source: str | None = None

    def views(self) -> dict[str, tuple[str, str | None]]:
        """``{metric extracting features: (protocol, weights)}`` of the detector this scorer's numbers come from
        (weights None: the evaluation's default for that protocol)."""
        if self.source is None:
            return {self.metric: (self.protocol, self.weights)}
        return {self.source: (self.features, self.weights)}


def default_scorers() -> tuple[ScorerSpec, ...]:
    """Every registered protocol of every registered metric, with the evaluation's default weights."""
    return tuple(ScorerSpec(protocol=p.name) for name in registry.names() for p in registry.get(name).protocols)


def _options(cfg: SanityConfig, spec: ScorerSpec) -> tuple[tuple[str, Any], ...]:
    merged = {**cfg.options, **spec.options}
    return tuple((k, merged[k]) for k in SCORER_OPTIONS if k in merged)


def _eval_options(options: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {k: (v if k != "fid_frames" or v == "all" else int(v)) for k, v in options}


def _effective_weights(protocol: str, weights: str | None) -> str:
    """What the detector of ``protocol`` loads for scorer weights ``weights`` (None: the evaluation's default,
    random-init, except a protocol whose detector ships in the package: its shipped file)."""
    if weights is not None:
        return weights
    return "pretrained" if getattr(registry.get_protocol(protocol), "shipped_weights", False) else "random-init"


def _published_missing(metric: str, protocol: str, options: tuple, weights: str) -> str | None:
    """For ``weights: pretrained``, why the published file of ``metric``'s detector under ``protocol`` cannot be
    used here (None when it is present or the protocol needs none)."""
    if weights != "pretrained":
        return None
    probe = EvalConfig(real="", fake="", metrics=(metric,), **_eval_options(options))
    built = registry.build(metric, probe, protocol)
    name = built.detector_weights(probe)
    if name is None:
        return None
    try:
        resolve(name, check=False)
    except WeightsNotFoundError:
        return f"published weights {name!r} are not on this machine (python -m ophora.weights fetch {name})"
    return None


def resolve_scorers(cfg: SanityConfig, has_prompts: bool) -> tuple[list[Scorer], list[str]]:
    """The scorers that run here, and one note per scorer skipped (with the reason)."""
    scorers, notes = [], []
    for spec in cfg.scorers or default_scorers():
        try:
            if spec.protocol is not None:
                protocol = registry.get_protocol(spec.protocol)
                metric = protocol.metric
            else:
                metric = spec.metric
                protocol = registry.get(metric).protocols[0]
        except KeyError as err:
            notes.append(f"{spec.name}: skipped, not registered (yet): {err.args[0] if err.args else err}")
            continue
        cls = registry.get(metric)
        source, features = cls.features_from, None
        if spec.features is not None and source is None:
            raise SanityError(f"scorer {spec.name!r}: 'features' names the protocol whose features a metric "
                              f"computed on another metric's features reads (kvd, kvmd); {metric} extracts its own")
        if source is not None:
            try:
                chosen = (registry.get_protocol(spec.features) if spec.features is not None
                          else registry.get(source).protocols[0])
            except KeyError as err:
                notes.append(f"{spec.name}: skipped, features protocol not registered (yet): "
                             f"{err.args[0] if err.args else err}")
                continue
            if chosen.metric != source:
                raise SanityError(f"scorer {spec.name!r}: features {spec.features!r} is a {chosen.metric} protocol; "
                                  f"{metric} is computed on {source}'s features (e.g. {source}/...)")
            features = chosen.name
        options = _options(cfg, spec)
        view, view_protocol = (metric, protocol.name) if source is None else (source, features)
        reason = _published_missing(view, view_protocol, options, spec.weights)
        if reason is None and cls.needs_prompts and not has_prompts:
            reason = "the real set has no prompts"
        if reason is not None:
            notes.append(f"{spec.name}: skipped, {reason}")
            continue
        scorers.append(Scorer(spec.name, metric, protocol.name, spec.weights, options, cls.higher_is_better,
                              cls.display_name, cls.needs_prompts, features, source))
    labels = [s.label for s in scorers]
    if len(set(labels)) != len(labels):
        raise SanityError(f"two scorers share a label: {labels}; give them distinct 'label's")
    return scorers, notes


def group_views(scorers: list[Scorer]) -> dict[str, tuple[str, str | None]]:
    """``{metric extracting features: (protocol, weights)}`` of one pass, in scorer order (weights None: the
    evaluation's default; an explicit weights named by another scorer for the same detector takes its place)."""
    views: dict[str, tuple[str, str | None]] = {}
    for scorer in scorers:
        for view, (protocol, weights) in scorer.views().items():
            if view not in views or views[view][1] is None:
                views[view] = (protocol, weights)
    return views


def _fits(group: list[Scorer], scorer: Scorer) -> bool:
    if group[0].options != scorer.options or scorer.metric in {s.metric for s in group}:
        return False
    have = group_views(group)
    for view, (protocol, weights) in scorer.views().items():
        if view in have and (have[view][0] != protocol or _effective_weights(*have[view])
                             != _effective_weights(protocol, weights)):
            return False
    return True


def group_scorers(scorers: list[Scorer]) -> list[list[Scorer]]:
    """Scorers in as few passes as possible, in order (first fit): a pass has one set of options, each metric at
    most once, and one (protocol, weights) per detector, so KVD joins the pass whose FVD detector is the one it
    names under ``features`` (and then reads the very features that pass's FVD reads)."""
    groups: list[list[Scorer]] = []
    for scorer in scorers:
        home = next((g for g in groups if _fits(g, scorer)), None)
        if home is None:
            groups.append([scorer])
        else:
            home.append(scorer)
    return groups


@dataclass
class ScoreGroup:
    """One evaluation pass: its scorers, the EvalConfig template, loaded detectors and its cache folder."""

    scorers: list[Scorer]
    cfg: SanityConfig
    folder: Path
    detectors: dict[str, Any] | None = None
    template: EvalConfig = field(init=False)

    def __post_init__(self) -> None:
        first = self.scorers[0]
        metrics = tuple(s.metric for s in self.scorers)
        views = group_views(self.scorers)
        self.template = EvalConfig(
            real="", fake="", metrics=metrics,
            protocols=tuple((s.metric, s.protocol) for s in self.scorers)
            + tuple((view, protocol) for view, (protocol, _) in views.items() if view not in metrics),
            detector_weights=tuple((view, weights) for view, (_, weights) in views.items() if weights is not None),
            seed=self.cfg.seed, batch_size=self.cfg.batch_size, workers=self.cfg.workers,
            bootstrap=self.cfg.bootstrap, progress=False, **_eval_options(first.options))
        self.set_bootstrap = self.cfg.bootstrap if self.cfg.set_bootstrap is None else self.cfg.set_bootstrap
        key = cache_key((self.template, self.set_bootstrap, self.protocol_records(), self.shipped_digests()))
        self.folder = Path(self.folder) / f"group-{key}"

    def protocol_records(self) -> tuple[dict[str, Any], ...]:
        """Every field of every protocol of the pass (the scorers' and those of the detectors they read, with
        the options applied, e.g. the tiny V-JEPA 2): a changed protocol (a new version, another eps) changes
        the cache key."""
        return tuple(describe(metric.protocol) for metric in resolve_metrics(self.template).values())

    def shipped_digests(self) -> tuple[tuple[str, str, str | None], ...]:
        """(metric, protocol, registered sha256) of every detector of the pass whose weights ship inside the
        package (the surgical ones, random-init included: it takes the shipped architecture), including the
        detectors that KVD and KVMD read: new shipped weights change the cache key, so scores of the old
        detectors are never reused. Published files keep one sha256 for good."""
        out = []
        for view, metric in resolve_metrics(self.template).items():
            name = metric.detector_weights(self.template) if metric.features_from is None else None
            entry = REGISTRY.get(name) if name else None
            if entry is not None and entry.url.startswith("package:"):
                out.append((view, metric.protocol.name, entry.sha256))
        return tuple(out)

    def load_detectors(self) -> dict[str, Any]:
        """``{view: (module, DetectorInfo)}`` for every metric that extracts features, loaded once."""
        if self.detectors is None:
            overrides = dict(self.template.detector_weights)
            self.detectors = {}
            for view, metric in resolve_metrics(self.template).items():
                if metric.features_from is None:
                    weights = overrides.get(view) or metric.weights_for(self.template.weights)
                    module, info = metric.load_detector(weights, self.template)
                    target = module if hasattr(module, "eval") else module.model
                    target.eval()
                    self.detectors[view] = (module, info)
        return self.detectors

    def cached(self, set_id: str) -> dict[str, Any] | None:
        path = self.folder / f"{set_id}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def score(self, set_id: str, real: Path, fake: Path, floor: bool = False) -> dict[str, Any]:
        """``{label: {value, low, high, n_real, n_fake, error, detector, comparable}}`` of set ``fake`` against
        ``real`` (from the cache when scored before); ``floor``: the real-vs-real set (``bootstrap`` replicates,
        else ``set_bootstrap``)."""
        found = self.cached(set_id)
        if found is not None:
            return found
        cfg = replace(self.template, real=str(real), fake=str(fake),
                      bootstrap=self.template.bootstrap if floor else self.set_bootstrap)
        payload = evaluate(cfg, detectors=self.load_detectors())
        result = {"failed": len(payload["failed"]), "scores": {}}
        for scorer in self.scorers:
            m = payload["metrics"][scorer.metric]
            ci = m.get("ci") or {}
            result["scores"][scorer.label] = {
                "value": m.get("value"), "low": ci.get("low"), "high": ci.get("high"),
                "n_real": m.get("n_real"), "n_fake": m.get("n_fake"), "error": m.get("error"),
                "detector": m["detector"]["identifier"], "comparable": m["detector"]["comparable_with_literature"],
                "features": scorer.features}
        atomic_write_text(self.folder / f"{set_id}.json", json.dumps(result, indent=1))
        return result
