"""Scorers of the sanity suite: configured metrics under their protocols, run through ``benchmarks.evaluate``.

:func:`resolve_scorers` turns the config's scorer list (default: every registered protocol of every metric)
into the scorers that can run here, with a note for each one skipped (a protocol or metric not registered,
published weights absent, prompts missing). Scorers with the same options are grouped into one
:class:`~benchmarks.evaluate.EvalConfig` per pass (one decode of a set feeds all of them; a metric appears once
per pass). :class:`ScoreGroup` loads its detectors once, on the first set it has to score, and caches each
set's result as JSON under the work folder (written atomically), so a rerun scores only what is missing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks import metrics as registry
from benchmarks.evaluate import EvalConfig, evaluate, resolve_metrics
from benchmarks.sanity.config import SCORER_OPTIONS, SanityConfig, SanityError, ScorerSpec
from ophora.data.atomic import atomic_write_text
from ophora.hashing import cache_key
from ophora.weights import REGISTRY, WeightsNotFoundError, resolve

__all__ = ["Scorer", "ScoreGroup", "resolve_scorers", "group_scorers", "default_scorers"]


@dataclass(frozen=True)
class Scorer:
    """One runnable scorer: ``label`` (tables and plots), its metric, protocol, weights and options."""

    label: str
    metric: str
    protocol: str
    weights: str | None
    options: tuple[tuple[str, Any], ...]
    higher_is_better: bool
    display_name: str
    needs_prompts: bool


def default_scorers() -> tuple[ScorerSpec, ...]:
    """Every registered protocol of every registered metric, with the evaluation's default weights."""
    return tuple(ScorerSpec(protocol=p.name) for name in registry.names() for p in registry.get(name).protocols)


def _options(cfg: SanityConfig, spec: ScorerSpec) -> tuple[tuple[str, Any], ...]:
    merged = {**cfg.options, **spec.options}
    return tuple((k, merged[k]) for k in SCORER_OPTIONS if k in merged)


def _eval_options(options: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {k: (v if k != "fid_frames" or v == "all" else int(v)) for k, v in options}


def _published_missing(metric: str, protocol: str, options: tuple, weights: str) -> str | None:
    """For ``weights: pretrained``, why the published file cannot be used here (None when it is present)."""
    if weights != "pretrained":
        return None
    probe = EvalConfig(real="", fake="", metrics=(metric,), **_eval_options(options))
    built = registry.build(metric, probe, protocol)
    name = built.detector_weights(probe) if built.features_from is None else None
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
        options = _options(cfg, spec)
        reason = _published_missing(metric, protocol.name, options, spec.weights)
        if reason is None and cls.needs_prompts and not has_prompts:
            reason = "the real set has no prompts"
        if reason is not None:
            notes.append(f"{spec.name}: skipped, {reason}")
            continue
        scorers.append(Scorer(spec.name, metric, protocol.name, spec.weights, options, cls.higher_is_better,
                              cls.display_name, cls.needs_prompts))
    labels = [s.label for s in scorers]
    if len(set(labels)) != len(labels):
        raise SanityError(f"two scorers share a label: {labels}; give them distinct 'label's")
    return scorers, notes


def group_scorers(scorers: list[Scorer]) -> list[list[Scorer]]:
    """Scorers with equal options in as few groups as possible, each metric at most once per group."""
    groups: list[list[Scorer]] = []
    for scorer in scorers:
        home = next((g for g in groups if g[0].options == scorer.options
                     and scorer.metric not in {s.metric for s in g}), None)
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
        self.template = EvalConfig(
            real="", fake="", metrics=tuple(s.metric for s in self.scorers),
            protocols=tuple((s.metric, s.protocol) for s in self.scorers),
            detector_weights=tuple((s.metric, s.weights) for s in self.scorers if s.weights is not None),
            seed=self.cfg.seed, batch_size=self.cfg.batch_size, workers=self.cfg.workers,
            bootstrap=self.cfg.bootstrap, progress=False, **_eval_options(first.options))
        self.set_bootstrap = self.cfg.bootstrap if self.cfg.set_bootstrap is None else self.cfg.set_bootstrap
        shipped = self.shipped_digests()
        key = cache_key((self.template, self.set_bootstrap, *([shipped] if shipped else [])))
        self.folder = Path(self.folder) / f"group-{key}"

    def shipped_digests(self) -> tuple[tuple[str, str | None], ...]:
        """(scorer label, registered sha256) of every scorer whose detector ships inside the package (the
        surgical ones, random-init included: it takes the shipped architecture): new shipped weights change the
        cache key, so scores of the old detectors are never reused. Published files keep one sha256 for good."""
        out = []
        for scorer in self.scorers:
            probe = replace(self.template, metrics=(scorer.metric,), protocols=((scorer.metric, scorer.protocol),))
            built = registry.build(scorer.metric, probe, scorer.protocol)
            name = built.detector_weights(probe) if built.features_from is None else None
            entry = REGISTRY.get(name) if name else None
            if entry is not None and entry.url.startswith("package:"):
                out.append((scorer.label, entry.sha256))
        return tuple(out)

    def load_detectors(self) -> dict[str, Any]:
        """``{view: (module, DetectorInfo)}`` for every metric that extracts features, loaded once."""
        if self.detectors is None:
            overrides = dict(self.template.detector_weights)
            self.detectors = {}
            for view, metric in resolve_metrics(self.template).items():
                if metric.features_from is None:
                    module, info = metric.load_detector(overrides.get(view, self.template.weights), self.template)
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
                "detector": m["detector"]["identifier"], "comparable": m["detector"]["comparable_with_literature"]}
        atomic_write_text(self.folder / f"{set_id}.json", json.dumps(result, indent=1))
        return result
