"""Curate a raw narrated set: ophora curate (or python -m ophora.curate) --input RAW.csv --out DIR [--config FILE]
[--workers N] [--executor local|ray].

Thin entry point; the pipeline lives in ophora.curation (the command line in ophora.curation.cli).
"""
import sys

from ophora.curation.cli import main


def run(argv: list[str] | None = None) -> int:
    """``ophora curate``: 0 done, 1 the run failed, 2 a usage or input problem, 130 interrupted."""
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
