"""``python -m benchmarks.sanity [--real DIR] [--config demo|FILE]``: see :mod:`benchmarks.sanity`.

    python -m benchmarks.sanity                          # the demo: its own OphSim evaluation world (seed 9001)
    python -m benchmarks.sanity --real runs/world        # an OphSim world folder: every degradation
    python -m benchmarks.sanity --real my_videos/        # a folder of videos: those that need no labels
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmarks.evaluate import EvaluationInputError
from benchmarks.features import FailedVideoError
from benchmarks.sanity import load_sanity_config, run_sanity, write_report
from benchmarks.sanity.config import SanityError
from ophora.cli import run_command
from ophora.configs import parse_overrides


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sanity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", help="real set: folder of videos, generated-video folder, Ophora-160K CSV or "
                                       "OphSim world (default: the config's OphSim world)")
    parser.add_argument("--config", default="demo", help="shipped config (demo) or a YAML file")
    parser.add_argument("--output", type=Path, help="result folder (default results/sanity/<config>)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. bootstrap=50")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = load_sanity_config(args.config, parse_overrides(args.set))
    run = run_sanity(config, args.real, progress=not args.no_progress)
    output = args.output or Path(config.output) / config.name
    write_report(run, output)
    print((output / "verdicts.md").read_text(encoding="utf-8"))
    print(f"wrote {output}/table.md, table.csv, verdicts.md, results.json, curves.png "
          f"({run.scored_now} set(s) scored now, {run.timings['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, errors=(EvaluationInputError, FailedVideoError, SanityError)))
