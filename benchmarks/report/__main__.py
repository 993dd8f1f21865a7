"""``python -m benchmarks.report RESULT.json [--out PAGE.html]``: the HTML page of one evaluation result.

    python -m benchmarks.evaluate --real real_clips/ --fake my_videos/ --out result.json
    python -m benchmarks.report result.json          # writes result.html beside it

The page (:func:`benchmarks.report.write_evaluation_report`) holds the values with their intervals, the real and
generated videos side by side for the same prompt, the protocols and detectors, N and the provenance, all inline.
A Table 1 or Table 2 run writes its own ``report.html`` beside its table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.report import write_evaluation_report
from ophora.cli import UsageError, add_output, make_parser, run_command


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("benchmarks.report", __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", type=Path, help="a result JSON file of python -m benchmarks.evaluate")
    add_output(parser, "the HTML file (default: the result file with .html)", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    if not args.result.is_file():
        raise UsageError(f"{args.result}: no such result file; pass the --out file of python -m benchmarks.evaluate")
    print(f"wrote {write_evaluation_report(args.result, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, checks=(KeyError, ValueError)))
