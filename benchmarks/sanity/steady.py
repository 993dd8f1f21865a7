"""The sample-efficiency study alone, and the packaged table of steady Ns (:mod:`benchmarks.sanity.efficiency`).

    python -m benchmarks.sanity.steady study --config demo --out /tmp/efficiency [--set KEY=VALUE] [--refresh]
    python -m benchmarks.sanity.steady refresh results/sanity/demo/results.json [--to FILE]

``study`` prepares the config's real set, halves and scorers as the sanity run does, then runs the study (its
sets, features and curves cached under the config's work folder) without scoring the degraded sets, and writes
``efficiency.json`` (config, seed, provenance), ``efficiency.md`` / ``.csv`` / ``.tex`` and ``efficiency.png``;
``--refresh`` then writes the packaged table from it. ``refresh`` writes ``benchmarks/metrics/steady_n.json`` (or
``--to``) from a sanity run's ``results.json`` or a study's ``efficiency.json``: the table
:mod:`benchmarks.evaluate` reads into every result's ``sample_efficiency``.

On a shared machine, run it with ``OPENBLAS_NUM_THREADS=1``: the Fréchet distances of 1024-d motion features are
several times faster on one BLAS thread than on numpy's default threads competing with other jobs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.sanity.config import load_sanity_config
from benchmarks.sanity.efficiency import efficiency_spec, run_efficiency, write_steady_table
from benchmarks.sanity.report import write_efficiency
from benchmarks.sanity.run import efficiency_sets, prepare_run
from ophora.configs import ConfigError, parse_overrides
from ophora.results import write_json

__all__ = ["study", "main"]


def study(config: str, overrides: dict[str, Any], output: Path, real: str | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Run the study of ``config`` (see the module docstring) and write its files under ``output``."""
    start = time.perf_counter()
    cfg = load_sanity_config(config, overrides)
    spec = efficiency_spec(cfg)
    if not spec.enabled:
        raise ValueError(f"{cfg.source}: efficiency.enabled is false: nothing to study")
    run = prepare_run(cfg, real, progress)
    result = run_efficiency(run, spec, efficiency_sets(run, spec, progress), progress, start=start)
    result["notes"] = list(run.notes) + result["notes"]
    write_json(Path(output) / "efficiency.json", {"efficiency": result}, config=cfg, seed=cfg.seed)
    write_efficiency(result, Path(output), cfg.name)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sanity.steady",
                                description="the sample-efficiency study alone, and the packaged steady-N table")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("study", help="run the study of a sanity config without scoring its degraded sets")
    s.add_argument("--config", default="demo", help="shipped sanity config (demo) or a YAML file")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted, YAML value), e.g. efficiency.subsets=10; repeatable")
    s.add_argument("--real", default=None, help="real set (default: the config's OphSim world)")
    s.add_argument("--out", required=True, help="folder for efficiency.json, .md, .csv, .tex and .png")
    s.add_argument("--refresh", action="store_true", help="also write the packaged steady-N table from it")
    s.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    r = sub.add_parser("refresh", help="write benchmarks/metrics/steady_n.json from RESULTS (results.json of a "
                                       "sanity run, or efficiency.json of a study)")
    r.add_argument("results")
    r.add_argument("--to", default=None, help="write here instead of the packaged file")
    args = p.parse_args(argv)
    try:
        if args.command == "study":
            result = study(args.config, parse_overrides(args.set), Path(args.out), args.real, args.progress)
            for c in result["comparisons"]:
                verdict = "holds" if c["target_holds"] else "not met"
                print(f"{c['features']}: {c['kernel']} steady N {c['kernel_steady_n']}, {c['frechet']} "
                      f"{c['frechet_steady_n']} (N max {c['n_max']}): target {verdict}")
            print(f"wrote {args.out}/efficiency.json, .md, .csv, .tex, .png ({result['seconds']} s)")
            if not args.refresh:
                return 0
            args.results, args.to = str(Path(args.out) / "efficiency.json"), None
        path = write_steady_table(args.results, args.to)
    except (OSError, ValueError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
