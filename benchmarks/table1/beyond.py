"""Table 1's optional second table, "Beyond the paper": video metrics the Ophora paper does not report.

The config lists them under ``metrics.beyond`` (off by default); each entry names a protocol (or a metric, for
its default protocol) of :data:`METRICS`:

- ``fvmd`` (``fvmd/opencv-lk``): FVMD's motion distance with OpenCV's Lucas-Kanade tracker (no weights);
- ``kvmd``: KID's unbiased polynomial-kernel MMD on the FVMD motion features;
- ``kvd`` / ``kvd/jedi``: a kernel distance on the clip features of an FVD protocol, named by ``features``:
  ``published`` (default: the FVD protocol of Table 1's FVD column, with its detector), ``fvd/ophsim-surgical``
  (the suite's surgical video classifier) or ``fvd/videomae``;
- ``fvd/videomae``: content-debiased FVD (VideoMAE-v2 features);
- ``jedi`` (``jedi/v-jepa2``): JEDi's MMD on V-JEPA 2 features.

``weights`` (only for the learned detectors of ``fvd/videomae``, ``jedi/v-jepa2`` and ``kvd`` on
``fvd/videomae``): ``random-init`` (full-size, seeded), ``tiny`` (the 2-block, 64-d random-init stand-in of
``--tiny-i3d``), or a checkpoint file (cd-fvd's VideoMAE-v2 ``.pth``; a transformers V-JEPA 2 folder's
``model.safetensors``), scored as a custom detector; default ``tiny`` where ``metrics.tiny_i3d``, else
``random-init``. ``label``: the column title (default: one naming the metric and its features).

Scoring (:mod:`benchmarks.table1.stages`): the columns are grouped into as few passes over each row's videos as
their detectors allow (:func:`plan_passes`: one protocol per metric and one set of weights per detector in a
pass), each pass one ``python -m benchmarks.evaluate`` run with the row pass's real set, geometry, equal N, seed,
bootstrap and reference-statistics cache; the paper's and the surgical passes are not touched. Results go under
``beyond`` in ``results.json`` (per row and at the top), and into ``table_beyond.md/.csv/.tex``,
``metrics_beyond.png`` and a section of ``report.html``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from benchmarks import metrics as registry
from ophora.configs import ConfigError
from ophora.registry import did_you_mean
from ophora.tables import ARROWS, Column, Table

__all__ = ["METRICS", "PUBLISHED", "BeyondColumn", "resolve_columns", "plan_passes", "table_records", "table",
           "notes", "summary", "FILES"]

METRICS = ("fvmd", "kvmd", "kvd", "fvd", "jedi")  # metric names a beyond column may use (fvd: fvd/videomae only)
PUBLISHED = "published"
FILES = ("table_beyond.md", "table_beyond.csv", "table_beyond.tex", "metrics_beyond.png")
_LEARNED = ("fvd/videomae", "jedi/v-jepa2")  # protocols whose detector has weights a beyond entry may name
_FEATURE_WORDS = {"fvd/stylegan-v": "I3D", "fvd/tf": "I3D, TF preprocessing", "fvd/ophsim-surgical": "surgical",
                  "fvd/videomae": "VideoMAE"}
_TITLES = {"fvmd/opencv-lk": "FVMD (LK tracker)", "kvmd": "KVMD (LK tracker)", "fvd/videomae": "cd-FVD (VideoMAE)",
           "jedi/v-jepa2": "JEDi (V-JEPA 2)", "fvmd/raft": "FVMD (RAFT tracker)",
           "fvmd/raft-small": "FVMD (RAFT-small tracker)"}


@dataclass(frozen=True)
class BeyondColumn:
    """One column of the beyond table, resolved from a ``metrics.beyond`` entry.

    ``assign``: the (metric, protocol) pairs its pass must run (the metric and, for a kernel distance, the metric
    whose features it uses); ``weights``: (detector view, weights) it fixes (``random-init``, ``pretrained`` or a
    file); ``tiny``: whether its video detector is the tiny stand-in (None: it has none that ``tiny`` changes)."""

    key: str
    title: str
    metric: str
    protocol: str
    features: str | None
    assign: tuple[tuple[str, str], ...]
    weights: tuple[tuple[str, str], ...]
    tiny: bool | None
    entry: int

    @property
    def source(self) -> str:
        """The detector view whose features the column is computed on."""
        return registry.get(self.metric).features_from or self.metric


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _protocol(name: str, key: str, source: str) -> Any:
    """The protocol ``name`` names: a protocol, or a metric's default one."""
    if name in registry.names():
        return registry.get(name).protocols[0]
    try:
        return registry.get_protocol(name)
    except KeyError:
        known = [*registry.names(), *registry.protocol_names()]
        hint = did_you_mean(name, known)
        raise ConfigError(key, f"unknown protocol {name!r}; beyond-the-paper columns take one of "
                               f"{_allowed()}{'; ' + hint if hint else ''}", source) from None


def _allowed() -> list[str]:
    return [p.name for m in METRICS for p in registry.get(m).protocols
            if m != "fvd" or p.name == "fvd/videomae"]


def _learned_weights(entry: Any, default_tiny: bool, key: str, source: str) -> tuple[str, bool]:
    """(weights, tiny) of a learned detector from an entry's ``weights``."""
    spec = entry.weights or ("tiny" if default_tiny else "random-init")
    if spec == "tiny":
        return "random-init", True
    if spec == "random-init":
        return "random-init", False
    if spec in ("pretrained", "auto"):
        raise ConfigError(key, f"{spec!r}: the weights registry has no entry for this detector; give its checkpoint "
                               f"file (a path), or random-init / tiny", source)
    return spec, False


def resolve_columns(metrics: Any, source: str = "") -> tuple[BeyondColumn, ...]:
    """The beyond table's columns of a :class:`~benchmarks.table1.config.MetricConfig`, in config order; a wrong
    entry raises :class:`~ophora.configs.ConfigError` naming ``metrics.beyond[i].<field>``."""
    published_fvd = dict(metrics.protocols).get("fvd") or registry.get("fvd").protocols[0].name
    columns: list[BeyondColumn] = []
    for i, entry in enumerate(metrics.beyond):
        key = f"metrics.beyond[{i}]"
        protocol = _protocol(entry.protocol, f"{key}.protocol", source)
        metric = protocol.metric
        if metric not in METRICS or (metric == "fvd" and protocol.name != "fvd/videomae"):
            where = ("a protocol of the paper's columns (metrics.metrics, metrics.surgical)"
                     if metric in ("fid", "fvd", "clipscore") else "not a video metric of the beyond table")
            raise ConfigError(f"{key}.protocol", f"{protocol.name!r} is {where}; beyond-the-paper columns take one "
                                                 f"of {_allowed()}", source)
        if entry.features is not None and metric != "kvd":
            raise ConfigError(f"{key}.features", f"only kvd columns take features (the FVD protocol whose clip "
                                                 f"features the kernel distance uses); {protocol.name} has its own",
                              source)
        assign: dict[str, str] = {metric: protocol.name}
        weights: dict[str, str] = {}
        tiny: bool | None = None
        features = None
        learned = protocol.name
        if metric == "kvd":
            named = entry.features or PUBLISHED
            features = published_fvd if named == PUBLISHED else named
            fvd_names = [p.name for p in registry.get("fvd").protocols]
            if features not in fvd_names:
                hint = did_you_mean(str(named), [PUBLISHED, *fvd_names])
                raise ConfigError(f"{key}.features", f"{named!r} is not an FVD protocol; choose {PUBLISHED!r} (the "
                                                     f"FVD column's, {published_fvd}) or one of {fvd_names}"
                                                     f"{'; ' + hint if hint else ''}", source)
            assign["fvd"] = features
            learned = features
        elif metric == "kvmd":
            assign["fvmd"] = registry.get("fvmd").protocols[0].name
        if learned in _LEARNED:
            view = "jedi" if metric == "jedi" else "fvd"
            weights[view], tiny = _learned_weights(entry, metrics.tiny_i3d, f"{key}.weights", source)
        elif entry.weights is not None:
            why = {"fvmd": "the Lucas-Kanade tracker has no weights", "kvmd": "the Lucas-Kanade tracker has no weights",
                   "kvd": "its features' detector is the FVD column's (metrics.weights, metrics.tiny_i3d)"
                   if assign.get("fvd") not in ("fvd/ophsim-surgical",) else
                   "the surgical video detector's weights ship with the suite"}.get(metric, "")
            raise ConfigError(f"{key}.weights", f"{protocol.name} takes no weights here: {why}", source)
        elif metric == "kvd" and features != "fvd/ophsim-surgical":  # the FVD column's detector
            weights["fvd"], tiny = metrics.weights, bool(metrics.tiny_i3d)
        title = entry.label or _title(protocol.name, features)
        column_key = _slug(protocol.name) + (f"_on_{_slug(features)}" if features else "")
        if any(c.key == column_key for c in columns):
            raise ConfigError(f"{key}", f"{protocol.name}{' on ' + features if features else ''} is listed twice",
                              source)
        columns.append(BeyondColumn(column_key, title, metric, protocol.name, features,
                                    tuple(sorted(assign.items())), tuple(sorted(weights.items())), tiny, i))
    return tuple(columns)


def _title(protocol: str, features: str | None) -> str:
    if protocol in _TITLES:
        return _TITLES[protocol]
    name = "KVD (JEDi formula)" if protocol == "kvd/jedi" else "KVD"
    words = _FEATURE_WORDS.get(features or "", features)
    return f"{name[:-1]}, {words})" if name.endswith(")") else f"{name} ({words})"


def _fits(group: list[BeyondColumn], column: BeyondColumn) -> bool:
    assign = {k: v for c in group for k, v in c.assign}
    weights = {k: v for c in group for k, v in c.weights}
    tinies = {c.tiny for c in group} - {None}
    return (all(assign.get(k, v) == v for k, v in column.assign)
            and all(weights.get(k, v) == v for k, v in column.weights)
            and (column.tiny is None or tinies <= {column.tiny}))


def plan_passes(columns: Sequence[BeyondColumn]) -> list[list[BeyondColumn]]:
    """The columns grouped into passes over the videos, first fit in config order: a pass runs one protocol
    per metric and loads each detector once (one weights file, one size)."""
    passes: list[list[BeyondColumn]] = []
    for column in columns:
        group = next((g for g in passes if _fits(g, column)), None)
        if group is None:
            passes.append([column])
        else:
            group.append(column)
    return passes


def pass_options(group: Sequence[BeyondColumn]) -> dict[str, Any]:
    """What a pass changes in the row pass's evaluation config (``benchmarks.evaluate.EvalConfig`` fields); the
    rest (real set, geometry, equal N, seed, bootstrap, batch size) is the row pass's."""
    assign = dict(kv for c in group for kv in c.assign)
    weights = dict(kv for c in group for kv in c.weights)
    named = {v: w for v, w in weights.items() if w in ("random-init", "pretrained", "auto")}
    custom = {v: w for v, w in weights.items() if v not in named}
    return {"metrics": tuple(dict.fromkeys(c.metric for c in group)), "protocols": tuple(sorted(assign.items())),
            "detector_weights": tuple(sorted(named.items())), "custom_detectors": tuple(sorted(custom.items())),
            "tiny_i3d": any(c.tiny for c in group),
            "fd_infinity": 0}  # the N = infinity extrapolation is the paper columns' (FVMD's distance has its eps)


def split(columns: Sequence[BeyondColumn], evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The beyond records of one pass's evaluation payload: per column its metric result and its detector."""
    metrics = evaluation.get("metrics", {})
    detectors = evaluation.get("detectors", {})
    return {"metrics": {c.key: metrics[c.metric] for c in columns if c.metric in metrics},
            "detectors": {c.key: detectors[c.source] for c in columns if c.source in detectors}}


# -- the table -------------------------------------------------------------------------------------------------
def table_records(rows: Sequence[Mapping[str, Any]], columns: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per row of ``results.json`` (``rows[i]["beyond"]["metrics"]``): model, origin and per column
    value/low/high/n (None where absent)."""
    records = []
    for row in rows:
        measured = (row.get("beyond") or {}).get("metrics", {})
        record: dict[str, Any] = {"model": row["name"], "origin": row.get("origin")}
        for column in columns:
            key = column["key"]
            m = measured.get(key)
            interval = (m or {}).get("ci") or {}
            record[key] = None if m is None else m.get("value")
            record[f"{key}_low"], record[f"{key}_high"] = interval.get("low"), interval.get("high")
            record[f"{key}_n"] = None if m is None else m.get("n_fake", m.get("n"))
        records.append(record)
    return records


def table(records: Sequence[Mapping[str, Any]], columns: Sequence[Mapping[str, Any]], notes: Sequence[str] = (),
          caption: str = "", title: str = "") -> Table:
    """The beyond table: model, a column per beyond metric (value [95% interval], best in bold), videos from."""
    cols = [Column("model", "model", tex="Model", align="l")]
    cols += [Column(c["key"], c["title"], number=True, interval=(f"{c['key']}_low", f"{c['key']}_high"),
                    better="higher" if registry.get(c["metric"]).higher_is_better else "lower") for c in columns]
    if any(r.get("origin") for r in records):
        cols.append(Column("origin", "videos from", tex="Videos from", align="l"))
    return Table(tuple(cols), tuple(records), title=title, caption=caption, notes=tuple(notes))


def header(column: Mapping[str, Any]) -> str:
    """A column's title with its direction arrow."""
    return f"{column['title']} {ARROWS['higher' if registry.get(column['metric']).higher_is_better else 'lower'][0]}"


def csv_fields(columns: Sequence[Mapping[str, Any]]) -> list[str]:
    return ["model", "origin"] + [f"{c['key']}{s}" for c in columns for s in ("", "_low", "_high", "_n")]


def summary(columns: Sequence[BeyondColumn], rows: Sequence[Any], passes: int) -> dict[str, Any]:
    """``results.json``'s ``beyond``: the columns, each column's protocol and detector (from the first row that
    has it), and whether every detector is comparable with published numbers."""
    protocols: dict[str, Any] = {}
    detectors: dict[str, Any] = {}
    for row in rows:
        for key, m in (row.get("metrics") or {}).items():
            if "protocol" in m:
                protocols.setdefault(key, m["protocol"])
        for key, d in (row.get("detectors") or {}).items():
            detectors.setdefault(key, d)
    return {
        "title": "Beyond the paper",
        "columns": [{"key": c.key, "title": c.title, "metric": c.metric, "protocol": c.protocol,
                     "features_protocol": c.features, "weights": dict(c.weights), "tiny": c.tiny} for c in columns],
        "passes": passes,
        "protocols": protocols,
        "detectors": detectors,
        "comparable_with_literature": bool(detectors) and all(d.get("comparable_with_literature")
                                                              for d in detectors.values()),
    }


def _detector_words(detector: Mapping[str, Any] | None) -> str:
    identifier = str((detector or {}).get("identifier", ""))
    if identifier.startswith("random-init"):
        size = "tiny (2 blocks, 64-d) " if "tiny" in identifier else ""
        return (f"detector: a {size}random-init stand-in ({identifier}): ranks nothing, not comparable with any "
                f"published number")
    if identifier.startswith("custom"):
        return f"detector: the checkpoint {(detector or {}).get('path') or identifier} (custom; sha256 in results.json)"
    if identifier.startswith("ophsim-surgical"):
        return ("detector: the suite's surgical video classifier (shipped weights, trained on OphSim worlds no "
                "evaluation uses); not comparable with published numbers")
    if identifier.startswith("opencv-lk"):
        return f"tracker: {identifier} (weight-free)"
    return f"detector: {identifier}" if identifier else ""


def _describe(column: Mapping[str, Any], fvd_column: str) -> str:
    protocol, features = column["protocol"], column.get("features_protocol")
    if protocol in ("fvmd/raft", "fvmd/raft-small"):
        return ("FVMD (Liu et al. 2024) with a learned tracker: torchvision's RAFT flow chained frame to frame at the "
                "package's 20 x 20 grid (RGB, 256 x 256) in place of PIPs++, so not comparable with published FVMD")
    if protocol == "fvmd/opencv-lk":
        return ("FVMD (Liu et al. 2024): Fréchet distance of the velocity and acceleration histograms (1024-d) of "
                "400 key points per 16-frame window, tracked by OpenCV's pyramidal Lucas-Kanade: a weight-free "
                "tracker in place of the package's PIPs++, so not comparable with published FVMD")
    if protocol == "kvmd":
        return ("KVMD: KID's unbiased polynomial-kernel MMD^2 ((x.y/d + 1)^3) on the FVMD motion features, one row "
                "per 16-frame window (the same weight-free tracker); no published counterpart")
    if protocol == "fvd/videomae":
        return ("content-debiased FVD (cd-fvd, Ge et al. 2024): Fréchet distance of VideoMAE-v2 ViT-g/14 (SSv2) "
                "features of one random 16-frame clip per video, cd-fvd's preprocessing")
    if protocol == "jedi/v-jepa2":
        return ("JEDi (Luo et al., Beyond FVD): JEDi's released polynomial MMD^2 (x100) on the SSv2-probe features "
                "of V-JEPA 2 ViT-L/16 (transformers), standing in for JEDi's V-JEPA ViT-H/16: not comparable with "
                "published JEDi")
    where = f"the clip features of {features}" + (" (the FVD column's detector)" if features == fvd_column else "")
    if protocol == "kvd/jedi":
        return f"JEDi's released formula (biased MMD^2, kernel (x.y/d)^2, x100) on {where}"
    return f"KVD: KID's unbiased polynomial-kernel MMD^2 ((x.y/d + 1)^3, subsets of min(1000, N) videos) on {where}"


def notes(summary_record: Mapping[str, Any], fvd_column: str, rows: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The notes under the beyond table: what it is, then what each column is and which detector made it."""
    passes = summary_record.get("passes", 1)
    out = ["Beyond the paper: video metrics the Ophora paper does not report, on Table 1's rows, real set, "
           "geometry and equal N, with 95% bootstrap intervals over videos and the same reference-statistics "
           f"cache; {passes} more pass(es) over each row's videos; lower is better in every column; "
           "'-': not computed"]
    for column in summary_record.get("columns", []):
        detector = summary_record.get("detectors", {}).get(column["key"])
        words = _detector_words(detector)
        out.append(f"{column['title']}: {_describe(column, fvd_column)}" + (f"; {words}" if words else ""))
    for column in summary_record.get("columns", []):
        warnings = [w for row in rows for w in
                    (((row.get("beyond") or {}).get("metrics", {}).get(column["key"]) or {}).get("warnings") or [])]
        if warnings:
            out.append(f"{column['title']}: {len(warnings)} warning(s) over the rows (each row's in results.json), "
                       f"e.g. {warnings[0].split(';')[0].split(':')[0]}")
    return out

