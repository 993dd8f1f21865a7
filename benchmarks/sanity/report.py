"""What the sanity suite writes under ``results/sanity/<config>/``.

- ``table.md`` / ``table.csv`` / ``table.tex``: one row per scorer and degradation: the floor (real vs real) with
  its interval, the value at the middle and the strongest strength with theirs, Spearman towards worse, verdict;
- ``verdicts.md`` / ``.csv`` / ``.tex``: the verdicts alone, degradations down, scorers across;
- ``results.json``: config, seed, commit, the real set and halves, scorers and notes, every curve
  (:func:`ophora.results.write_json`, paths relative to the file or under ``$work``);
- ``curves.png``: one panel per degradation, a row of panels per family; per scorer the value minus the centre
  of the floor's interval, in units of its half-width (worse is up; the floor band is [-1, 1]), with its own
  interval band;
- with the sample-efficiency study (:mod:`.efficiency`): ``efficiency.md`` / ``.csv`` / ``.tex`` (one row per
  scorer and pair: the full-N value and interval, the fraction of subsets inside it at each N, the steady N; the
  kernel-against-Fréchet comparisons under the table), ``efficiency.png`` (a row per feature set, the Fréchet
  distance left and the kernel distance right: per pair the mean over subsets against N with the 2.5-97.5
  percentile band of the subsets, in units of the full-N interval's half-width around its centre, so that
  interval is [-1, 1] for every curve; the steady N marked) and the ``efficiency`` section of ``results.json``.

All through the one table renderer (:mod:`ophora.tables`) and written atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.sanity.degrade import DEGRADATIONS, FAMILIES  # noqa: E402
from benchmarks.sanity.run import SanityRun  # noqa: E402
from ophora.data.atomic import atomic_path  # noqa: E402
from ophora.results import write_json  # noqa: E402
from ophora.tables import Column, Table, write_tables  # noqa: E402

__all__ = ["write_report", "results_table", "verdict_table", "plot_curves", "efficiency_table", "plot_efficiency",
           "write_efficiency", "FORMAT"]

FORMAT = "ophora-sanity/1"
_CSV_FIELDS = ("family", "degradation", "scorer", "metric", "protocol", "detector", "comparable", "floor",
               "floor_low", "floor_high", "middle_strength", "middle", "middle_low", "middle_high", "max_strength",
               "max", "max_low", "max_high", "spearman", "verdict", "values", "strengths")


def _record(curve: dict[str, Any]) -> dict[str, Any]:
    middle = curve["strengths"].index(curve["middle"]) if curve["middle"] is not None else None

    def at(i: int | None, key: str) -> Any:
        return None if i is None else curve[key][i]

    return {"family": curve["family"], "degradation": curve["degradation"], "scorer": curve["scorer"],
            "metric": curve["metric"], "protocol": curve["protocol"], "detector": curve["detector"],
            "comparable": curve["comparable"], "floor": curve["values"][0], "floor_low": curve["low"][0],
            "floor_high": curve["high"][0], "middle_strength": curve["middle"], "middle": at(middle, "values"),
            "middle_low": at(middle, "low"), "middle_high": at(middle, "high"),
            "max_strength": curve["strengths"][-1], "max": curve["values"][-1], "max_low": curve["low"][-1],
            "max_high": curve["high"][-1], "spearman": curve["spearman"], "verdict": curve["verdict"],
            "values": " ".join("-" if v is None else f"{v:.4g}" for v in curve["values"]),
            "strengths": " ".join(f"{s:g}" for s in curve["strengths"])}


def _notes(run: SanityRun) -> tuple[str, ...]:
    n_a, n_b = (len(list((h / "videos").iterdir())) for h in (run.half_a, run.half_b))
    random = sorted({c["scorer"] for c in run.curves if str(c["detector"]).startswith("random-init")})
    notes = [f"config `{run.cfg.name}`; real set: {len(run.real.clips)} clips "
             f"({'OphSim world, seed ' + str(run.real.world_config.seed) if run.real.world_config else run.real.spec}),"
             f" split into half A ({n_a}, the reference) and half B ({n_b}, degraded)",
             "floor: half B against half A (real vs real), 95% bootstrap interval over videos; 'middle' and 'max': "
             "the middle and the strongest strength; Spearman of (strength, value) towards worse (1: monotone worse)",
             "verdict: responds (Spearman >= 0.9 and the middle strength beyond the floor interval), blind (every "
             "strength within it), wrong direction (beyond it on the better side), weak (beyond it, but not "
             "monotone or not by the middle strength)"]
    if random:
        notes.append(f"random-init detectors ({', '.join(random)}): what they see here is what an untrained "
                     "network's features see; not comparable with any published number")
    if any(not c["comparable"] for c in run.curves):
        notes.append("only published detectors with verified weights are comparable with published numbers; "
                     "the detector of each scorer is in table.csv and results.json")
    return tuple(notes + list(run.notes))


def results_table(run: SanityRun) -> Table:
    columns = (Column("family", "family"), Column("degradation", "degradation"), Column("scorer", "scorer"),
               Column("floor", "real vs real", number=True, decimals=3, interval=("floor_low", "floor_high")),
               Column("middle_strength", "middle", number=True, decimals=2),
               Column("middle", "at middle", number=True, decimals=3, interval=("middle_low", "middle_high")),
               Column("max_strength", "max", number=True, decimals=2),
               Column("max", "at max", number=True, decimals=3, interval=("max_low", "max_high")),
               Column("spearman", "Spearman", number=True, decimals=2), Column("verdict", "verdict"))
    return Table(columns, tuple(_record(c) for c in run.curves), title=f"Sanity suite: {run.cfg.name}",
                 caption=f"Sanity suite ({run.cfg.name}): response of each metric to graded degradations",
                 notes=_notes(run))


def verdict_table(run: SanityRun) -> Table:
    labels = [s.label for s in run.scorers]
    rows = []
    for name, _ in run.degradations:
        row = {"family": DEGRADATIONS[name].family, "degradation": name}
        for curve in (c for c in run.curves if c["degradation"] == name):
            rho = "-" if curve["spearman"] is None else f"{curve['spearman']:.2f}"
            row[curve["scorer"]] = f"{curve['verdict']} ({rho})"
        rows.append(row)
    columns = (Column("family", "family"), Column("degradation", "degradation"),
               *(Column(label, label) for label in labels))
    return Table(columns, tuple(rows), title=f"Sanity verdicts: {run.cfg.name}",
                 notes=("cell: verdict (Spearman towards worse); see table.md for values and intervals",))


def _effect(curve: dict[str, Any], key: str) -> np.ndarray:
    """The curve's ``key`` ("values", "low", "high") minus the centre of the floor's interval, over its
    half-width, worse up: the floor's interval is [-1, 1] for every scorer."""
    floor, low, high = curve["values"][0], curve["low"][0], curve["high"][0]
    if None not in (low, high):
        floor = (low + high) / 2
    half = max((high - low) / 2, 1e-12) if None not in (low, high) else 1.0
    sign = -1.0 if curve["higher_is_better"] else 1.0
    values = np.array([np.nan if v is None else v for v in curve[key]], float)
    return sign * (values - floor) / half


def plot_curves(run: SanityRun, path: Path) -> Path:
    """``curves.png``: see the module docstring."""
    names = [name for name, _ in run.degradations]
    rows = [f for f in FAMILIES if any(DEGRADATIONS[n].family == f for n in names)]
    cols = max(sum(DEGRADATIONS[n].family == f for n in names) for f in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.2 * cols, 2.7 * len(rows)), squeeze=False)
    colours = dict(zip((s.label for s in run.scorers), plt.cm.tab10.colors * 3))
    for r, family in enumerate(rows):
        family_names = [n for n in names if DEGRADATIONS[n].family == family]
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(family_names):
                ax.axis("off")
                continue
            name = family_names[c]
            ax.axhspan(-1, 1, color="0.85", label="real vs real 95%")
            for curve in (x for x in run.curves if x["degradation"] == name):
                x, colour = curve["strengths"], colours[curve["scorer"]]
                ax.plot(x, _effect(curve, "values"), "o-", ms=3, color=colour,
                        label=f"{curve['scorer']}: {curve['verdict']}")
                band = np.sort(np.stack([_effect(curve, "low"), _effect(curve, "high")]), axis=0)
                ax.fill_between(x, band[0], band[1], color=colour, alpha=0.15)
            ax.set_yscale("symlog", linthresh=2)
            ax.set_title(f"{family}: {name}", fontsize=9)
            ax.set_xlabel(DEGRADATIONS[name].unit, fontsize=7)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel("(value - floor centre) / half-width\n(worse up)", fontsize=7)
            ax.legend(fontsize=5, loc="upper left")
    fig.suptitle(f"Sanity suite {run.cfg.name}: response to graded degradations (grey: real vs real)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


_EFFICIENCY_FIELDS = ("scorer", "metric", "protocol", "features_protocol", "pair", "n_max", "full", "low", "high",
                      "steady_n", "steady_n_mean", "inside", "ns", "mean", "p025", "p975")


def _efficiency_record(curve: dict[str, Any]) -> dict[str, Any]:
    return {**{k: curve.get(k) for k in _EFFICIENCY_FIELDS},
            "steady_n": "not reached" if curve.get("steady_n") is None else curve["steady_n"],
            "steady_n_mean": "not reached" if curve.get("steady_n_mean") is None else curve["steady_n_mean"],
            "inside": " ".join(f"{n}:{f:.2f}" for n, f in zip(curve["ns"], curve["inside"])),
            "ns": " ".join(str(n) for n in curve["ns"]),
            "mean": " ".join("-" if v is None else f"{v:.4g}" for v in curve["mean"]),
            "p025": " ".join("-" if v is None else f"{v:.4g}" for v in curve["p025"]),
            "p975": " ".join("-" if v is None else f"{v:.4g}" for v in curve["p975"])}


def efficiency_table(study: dict[str, Any], name: str) -> Table:
    """One row per scorer and pair; the comparisons and the rule under it."""
    columns = (Column("scorer", "scorer"), Column("pair", "pair"), Column("n_max", "N max"),
               Column("full", "value at N max", number=True, decimals=4, interval=("low", "high")),
               Column("inside", "fraction of subsets inside, by N"), Column("steady_n", "steady N"),
               Column("steady_n_mean", "steady N (mean rule)"))
    world = study.get("world")
    notes = [f"real set: {study['real_videos']} clips" + (f" (OphSim world seed {world['seed']}, {world['videos']} "
                                                          "surgeries)" if world else "")
             + f"; pairs against half A: {', '.join(study['settings']['pairs'])} (real: half B itself)",
             f"rule: {study['settings']['rule']}; {study['settings']['subsets']} subsets per N, seed "
             f"{study['settings']['seed']}; full-N interval: the metric's own 95% bootstrap over videos "
             f"({study['settings']['n_boot']} replicates)",
             "steady N (mean rule): the smallest N from which the mean over subsets stays inside the interval; shown, "
             "not used (an unbiased estimator's mean is inside at every N)"]
    for c in study["comparisons"]:
        notes.append(f"{c['features']}: {c['kernel']} steady at {c['kernel_steady_n'] or 'not reached'}, "
                     f"{c['frechet']} at {c['frechet_steady_n'] or 'not reached'} (N max {c['n_max']}): target "
                     f"(kernel <= half the Fréchet) {'holds' if c['target_holds'] else 'does not hold'} ({c['why']})")
    notes += [n.removeprefix("efficiency: ") for n in study.get("notes", [])]
    return Table(columns, tuple(_efficiency_record(c) for c in study["curves"]),
                 title=f"Sample efficiency: {name}",
                 caption=f"Sample efficiency ({name}): the N from which each distance is steady",
                 notes=tuple(notes))


def _efficiency_rows(study: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """(Fréchet scorer, kernel scorer) per figure row: the comparisons, then scorers without a partner."""
    rows = [(c["frechet"], c["kernel"]) for c in study["comparisons"]]
    paired = {label for row in rows for label in row}
    for label, s in study["scorers"].items():
        if label not in paired:
            rows.append((None, label) if s["metric"] in ("kid", "kvd", "kvmd") else (label, None))
    return rows


def _in_halfwidths(curve: dict[str, Any], key: str) -> np.ndarray:
    """``curve[key]`` minus the centre of the full-N interval, over its half-width."""
    centre, half = (curve["low"] + curve["high"]) / 2, max((curve["high"] - curve["low"]) / 2, 1e-12)
    return np.array([np.nan if v is None else (v - centre) / half for v in curve[key]], float)


def plot_efficiency(study: dict[str, Any], path: Path) -> Path:
    """``efficiency.png``: see the module docstring."""
    rows = _efficiency_rows(study)
    pairs = study["settings"]["pairs"]
    colours = dict(zip(pairs, plt.cm.tab10.colors))
    fig, axes = plt.subplots(max(len(rows), 1), 2, figsize=(9, 2.9 * max(len(rows), 1)), squeeze=False)
    for r, row in enumerate(rows):
        for c, label in enumerate(row):
            ax = axes[r][c]
            if label is None:
                ax.axis("off")
                continue
            ax.axhspan(-1, 1, color="0.85")
            for curve in (x for x in study["curves"] if x["scorer"] == label and x["ns"]):
                colour, ns = colours.get(curve["pair"], "k"), curve["ns"]
                ax.plot(ns, _in_halfwidths(curve, "mean"), "o-", ms=3, color=colour,
                        label=f"{curve['pair']}: steady N {curve['steady_n'] or '-'}")
                ax.fill_between(ns, _in_halfwidths(curve, "p025"), _in_halfwidths(curve, "p975"), color=colour,
                                alpha=0.15)
                if curve["steady_n"] is not None:
                    ax.axvline(curve["steady_n"], color=colour, ls="--", lw=1)
            ax.set_xscale("log", base=2)
            ax.set_yscale("symlog", linthresh=2)
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("N (videos per set)", fontsize=7)
            ax.tick_params(labelsize=7)
            ax.set_ylabel("(value - centre) / half-width\nof the full-N 95% interval", fontsize=7)
            ax.legend(fontsize=5, loc="upper right")
    fig.suptitle("Sample efficiency: mean and 2.5-97.5% of subsets against N (grey: the full-N interval; dashed: "
                 "steady N)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_efficiency(study: dict[str, Any], output: Path, name: str) -> dict[str, Path]:
    """``efficiency.md`` / ``.csv`` / ``.tex`` and ``efficiency.png`` under ``output``."""
    paths = {f"efficiency_{k}": v for k, v in write_tables(efficiency_table(study, name), Path(output),
                                                           _EFFICIENCY_FIELDS, csv_decimals=6,
                                                           stem="efficiency").items()}
    paths["efficiency_png"] = plot_efficiency(study, Path(output) / "efficiency.png")
    return paths


def _payload(run: SanityRun) -> dict[str, Any]:
    world = run.real.world_config
    return {
        "format": FORMAT,
        "real": {"spec": run.real.spec, "videos": len(run.real.clips), "labels": run.real.has_labels,
                 "prompts": run.real.has_prompts, "world": str(run.real.world) if run.real.world else None,
                 "world_config": world, "half_a": str(run.half_a), "half_b": str(run.half_b)},
        "scorers": [{"label": s.label, "metric": s.metric, "protocol": s.protocol, "weights": s.weights,
                     "options": dict(s.options), "higher_is_better": s.higher_is_better} for s in run.scorers],
        "notes": run.notes,
        "degradations": {name: {"family": DEGRADATIONS[name].family, "unit": DEGRADATIONS[name].unit,
                                "description": DEGRADATIONS[name].description, "strengths": list(strengths)}
                         for name, strengths in run.degradations},
        "floor": run.scores["floor"],
        "curves": run.curves,
        "work": str(run.work),
        "sets_scored_in_this_run": run.scored_now,
        "timings_s": {k: round(v, 2) for k, v in run.timings.items()},
        "efficiency": run.efficiency,
    }


def write_report(run: SanityRun, output: Path) -> dict[str, Path]:
    """Every file of the module docstring under ``output``; returns their paths."""
    output = Path(output)
    paths = write_tables(results_table(run), output, _CSV_FIELDS, csv_decimals=6)
    verdicts = verdict_table(run)
    paths.update({f"verdicts_{k}": v for k, v in write_tables(
        verdicts, output, [c.key for c in verdicts.columns], stem="verdicts").items()})
    paths["json"] = write_json(output / "results.json", _payload(run), config=run.cfg, seed=run.cfg.seed,
                               roots={"$work": run.work, **({"$real": run.real.world} if run.real.world else {})})
    paths["png"] = plot_curves(run, output / "curves.png")
    if run.efficiency is not None:
        paths.update(write_efficiency(run.efficiency, output, run.cfg.name))
    return paths
