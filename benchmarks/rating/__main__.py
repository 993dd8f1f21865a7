import sys

from benchmarks.rating.cli import ERRORS, main
from ophora.cli import run_command

sys.exit(run_command(main, errors=ERRORS))
