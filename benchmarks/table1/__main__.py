"""``python -m benchmarks.table1 [--config demo|quick|paper|FILE]``: see :mod:`benchmarks.table1`.

    python -m benchmarks.table1                      # the demo on OphSim (CPU, minutes)
    python -m benchmarks.table1 --config paper       # lists missing assets first, then the paper setup
    python -m benchmarks.table1 --preflight --config paper
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from benchmarks.table1 import PreflightError, load_table1_config, run_table1
from benchmarks.table1.preflight import EqualNError, format_missing, leakage, preflight
from ophora.cli import add_cache, add_output, add_progress, make_parser, run_command
from ophora.data.geometry import GeometryMismatchError
from ophora.data.leakage import LeakageError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser("benchmarks.table1", __doc__)
    parser.add_argument("--config", default="demo", help="shipped config (demo, quick, paper) or a YAML file")
    add_cache(parser, "stage cache folder (default: runs/table1/<config>)")
    add_output(parser, "table folder (default: results/table1/<config>)")
    parser.add_argument("--fresh", action="store_true", help="delete this config's stage cache first")
    parser.add_argument("--preflight", action="store_true",
                        help="only list missing assets (and, with data files, check leakage), then exit")
    add_progress(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_table1_config(args.config)
    if args.preflight:
        missing = preflight(config)
        print(format_missing(missing, config) if missing else f"{config.name}: every asset is present")
        if not missing and config.data.source == "files":  # OphSim data sets are made by the run, checked there
            sets = {name: getattr(config.data, name) for name in ("original", "ophora_160k", "ophora_28k", "real")}
            report = leakage(config, sets)
            print(f"{config.name}: no held-out clip leaks from the training sets ({len(report.checked)} pairs of "
                  f"sets checked)" if not report.leaks else report.message())
        return 2 if missing else 0
    cache = args.cache or Path(config.cache) / config.name
    if args.fresh and cache.exists():
        shutil.rmtree(cache)
    try:
        run_table1(config, cache, args.out, progress=args.progress)
    except PreflightError as err:
        print(err, file=sys.stderr)
        return 2
    output = args.out or Path(config.output) / config.name
    if os.environ.get("RANK", "0") == "0":  # under torchrun / accelerate launch: once
        print((output / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, errors=(LeakageError, EqualNError, GeometryMismatchError)))
