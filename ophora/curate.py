"""``python -m ophora.curate --input RAW.csv --out DIR [--config FILE] [--workers N] [--executor local|ray]``.

Thin entry point; the pipeline lives in :mod:`ophora.curation`.
"""
import sys

from ophora.curation.cli import main

if __name__ == "__main__":
    sys.exit(main())
