"""``python -m benchmarks.sanity [--real DIR] [--config demo|FILE]``: see :mod:`benchmarks.sanity`.

    python -m benchmarks.sanity                          # the demo: its own OphSim evaluation world (seed 9001)
    python -m benchmarks.sanity --real runs/world        # an OphSim world folder: every degradation
    python -m benchmarks.sanity --real my_videos/        # a folder of videos: those that need no labels
    python -m benchmarks.sanity --set bootstrap=50 --seed 3 --out results/sanity/try
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from benchmarks.evaluate import EvaluationInputError
from benchmarks.features import FailedVideoError
from benchmarks.sanity import load_sanity_config, run_sanity, write_report
from benchmarks.sanity.config import SanityError
from ophora.cli import (
    UsageError,
    add_cache,
    add_output,
    add_overrides,
    add_progress,
    add_seed,
    add_workers,
    make_parser,
    run_command,
)
from ophora.configs import parse_overrides

ERRORS = (EvaluationInputError, FailedVideoError, SanityError)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("benchmarks.sanity", __doc__)
    parser.add_argument("--real", metavar="DIR|CSV",
                        help="real set: folder of videos, generated-video folder, Ophora-160K CSV or OphSim world "
                             "(default: the config's OphSim world)")
    parser.add_argument("--config", default="demo", help="shipped config (demo) or a YAML file")
    add_overrides(parser, "override a config key (dotted; the value is read as YAML), e.g. bootstrap=50; repeatable")
    add_output(parser, "result folder (default: the config's output/<config name>, results/sanity/demo)")
    add_cache(parser, "cache folder of worlds, degraded sets and scores, reused by a rerun (default: the config's "
                      "work, runs/sanity); the same as --set work=DIR")
    add_seed(parser, "root seed of the halves, the degradations and the bootstrap (default: the config's seed, 0); "
                     "the same as --set seed=N", default=None)
    add_workers(parser, "DataLoader worker processes, 0: in the main process (default: the config's workers, 0); "
                        "the same as --set workers=N", default=None, minimum=0)
    add_progress(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    """The config overrides of a command line: ``--set`` pairs, then ``--cache``, ``--seed`` and ``--workers``
    (their config keys ``work``, ``seed`` and ``workers``); a flag and a ``--set`` of the same key that disagree
    are refused."""
    overrides = parse_overrides(args.set)
    for flag, key, value in (("--cache", "work", None if args.cache is None else str(args.cache)),
                             ("--seed", "seed", args.seed), ("--workers", "workers", args.workers)):
        if value is None:
            continue
        if key in overrides and overrides[key] != value:
            raise UsageError(f"{flag} {value} and --set {key}={overrides[key]} disagree (give one of them)")
        overrides[key] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = load_sanity_config(args.config, overrides_of(args))
    run = run_sanity(config, args.real, progress=args.progress)
    output = args.out or Path(config.output) / config.name
    write_report(run, output)
    print((output / "verdicts.md").read_text(encoding="utf-8"))
    print(f"wrote {output}/table.md, table.csv, verdicts.md, results.json, curves.png "
          f"({run.scored_now} set(s) scored now, {run.timings['total']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, errors=ERRORS))
