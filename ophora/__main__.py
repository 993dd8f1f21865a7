"""The ophora command: one entry point for every tool of the suite.

    ophora                       the list of commands (also: python -m ophora, ophora --help)
    ophora <command> --help      a command's options
    ophora evaluate --real clips/ --fake videos/ --out result.json
    ophora sim --out runs/world --videos 2

Each command is the same program as its python -m form (ophora evaluate == python -m benchmarks.evaluate), with
the same options and exit statuses: 0 done, 2 a user's mistake (one "error:" line), 130 interrupted; some
commands give 1 a meaning of their own (see their --help).

This module is a facade: it imports the commands of every floor (tests/test_architecture.py, FACADES), because
it is where a user starts; nothing in the suite imports it.

ophora --help imports no tool (it starts in a fraction of a second); a command imports only its own tool.
"""
from __future__ import annotations

import difflib
import sys
import textwrap
from dataclasses import dataclass
from typing import Callable

from ophora import __version__, flags


def _evaluate(argv: list[str]) -> int:
    from benchmarks.evaluate import main
    from ophora.cli import run_command

    return run_command(main, argv)


def _sim(argv: list[str]) -> int:
    from ophora.sim.__main__ import main

    return main(argv)


def _curate(argv: list[str]) -> int:
    from ophora.curate import run

    return run(argv)


def _prepare(argv: list[str]) -> int:
    from ophora.prepare import run

    return run(argv)


def _train(argv: list[str]) -> int:
    from ophora.train import run

    return run(argv)


def _generate(argv: list[str]) -> int:
    from ophora.generate import run

    return run(argv)


def _table1(argv: list[str]) -> int:
    from benchmarks.table1.__main__ import main
    from ophora.cli import run_command
    from ophora.data.leakage import LeakageError

    return run_command(main, argv, errors=(LeakageError,))


def _table2(argv: list[str]) -> int:
    from downstream.table2.__main__ import main
    from ophora.cli import run_command
    from ophora.data.leakage import LeakageError

    return run_command(main, argv, errors=(LeakageError,))


def _sanity(argv: list[str]) -> int:
    from benchmarks.evaluate import EvaluationInputError
    from benchmarks.features import FailedVideoError
    from benchmarks.sanity.__main__ import main
    from benchmarks.sanity.config import SanityError
    from ophora.cli import run_command

    return run_command(main, argv, errors=(EvaluationInputError, FailedVideoError, SanityError))


def _weights(argv: list[str]) -> int:
    from ophora.cli import run_command
    from ophora.weights import main

    return run_command(main, argv)


def _rate(argv: list[str]) -> int:
    from ophora.cli import run_command

    try:
        from benchmarks.rating.cli import ERRORS, main
    except ModuleNotFoundError as error:
        if error.name not in ("benchmarks.rating", "benchmarks.rating.cli"):
            raise  # a package the rating study needs is missing: its own message says which
        print("error: ophora rate: the rating study (benchmarks.rating) is not part of this installation; "
              "update the suite to a version that has it", file=sys.stderr)
        return flags.USER_ERROR_STATUS
    return run_command(main, argv, errors=ERRORS)


def _results(argv: list[str]) -> int:
    from ophora.cli import run_command
    from ophora.results import main

    return run_command(main, argv)


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # the python -m form
    summary: str
    run: Callable[[list[str]], int]


COMMANDS: tuple[Command, ...] = (
    Command("evaluate", "benchmarks.evaluate",
            "score generated videos against real ones (FID, FVD, CLIPScore, KID, ...)", _evaluate),
    Command("sim", "ophora.sim", "write an OphSim world: simulated surgeries in the real datasets' formats", _sim),
    Command("curate", "ophora.curate", "curate a raw narrated set into Ophora-160K- and 28K-style sets", _curate),
    Command("prepare", "ophora.prepare", "encode a clip manifest once with the frozen VAE and T5", _prepare),
    Command("train", "ophora.train", "train the Ophora transformer (stage tpt or p2ft)", _train),
    Command("generate", "ophora.generate", "videos from prompts with a trained model", _generate),
    Command("table1", "benchmarks.table1", "the paper's Table 1: train, generate and score every row", _table1),
    Command("table2", "downstream.table2", "the paper's Table 2: OphNet recognition with synthetic clips", _table2),
    Command("sanity", "benchmarks.sanity", "what the metrics respond to: degraded real clips, scored", _sanity),
    Command("weights", "ophora.weights", "where detector weights are, fetch them, check them", _weights),
    Command("rate", "benchmarks.rating", "the human rating study of generated videos", _rate),
    Command("results", "ophora.results", "compare two result files; benchmark reports", _results),
)
BY_NAME = {command.name: command for command in COMMANDS}


def overview() -> str:
    """The text of ``ophora`` without arguments: what each command does and its python -m form."""
    width = max(len(c.name) for c in COMMANDS)
    lines = ["usage: ophora <command> [options]    (ophora <command> --help: the command's options)", "",
             f"Ophora suite {__version__}: ophthalmic surgical video generation and its evaluation.", "",
             "commands:"]
    lines += [f"  {c.name:<{width}}  {c.summary}" for c in COMMANDS]
    lines += [""] + textwrap.wrap("Each command is also python -m <module>: "
                                  + ", ".join(f"{c.name} = {c.module}" for c in COMMANDS) + ".", 100)
    lines += textwrap.wrap("Exit status: 0 done, 2 a mistake of the command line or the inputs (one 'error:' "
                           "line), 130 interrupted; OPHORA_DEBUG=1 shows the traceback of an error.", 100)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run ``ophora <command> ARGS``: the command's own entry point with ARGS; its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        return 0
    if argv[0] == "--version":
        print(f"ophora {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name == "help":
        if not rest:
            print(overview())
            return 0
        name, rest = rest[0], ["--help"]
    command = BY_NAME.get(name)
    if command is None:
        close = difflib.get_close_matches(name, list(BY_NAME), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        print(f"error: ophora: unknown command '{name}' ({hint}the commands: {', '.join(BY_NAME)}; "
              "ophora --help lists them)", file=sys.stderr)
        return flags.USER_ERROR_STATUS
    flags._launcher = "ophora"
    try:
        return command.run(rest)  # argparse's --help and usage errors leave by SystemExit (0 and 2), as with -m
    finally:
        flags._launcher = None


if __name__ == "__main__":
    sys.exit(main())
