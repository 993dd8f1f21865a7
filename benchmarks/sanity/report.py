"""What the sanity suite writes under ``results/sanity/<config>/``.

- ``table.md`` / ``table.csv`` / ``table.tex``: one row per scorer and degradation: the floor (real vs real) with
  its interval, the value at the middle and the strongest strength with theirs, Spearman towards worse, verdict;
- ``verdicts.md`` / ``.csv`` / ``.tex``: the verdicts alone, degradations down, scorers across;
- ``results.json``: config, seed, commit, the real set and halves, scorers and notes, every curve
  (:func:`ophora.results.write_json`, paths relative to the file or under ``$work``);
- ``curves.png``: one panel per degradation, a row of panels per family; per scorer the value minus the centre
  of the floor's interval, in units of its half-width (worse is up; the floor band is [-1, 1]), with its own
  interval band.

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

__all__ = ["write_report", "results_table", "verdict_table", "plot_curves", "FORMAT"]

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
    return paths
