"""``python -m ophora.curation`` (same as ``python -m ophora.curate``)."""
import sys

from ophora.curation.cli import main

if __name__ == "__main__":
    sys.exit(main())
