"""The command-line flags every command of the suite shares, and its help format (re-exported by ophora.cli).

This module imports nothing of the suite, so that any module, however low, may build its parser with it:

    --out DIR (alias --output, -o)     --cache DIR (alias --work)     --seed N     --workers N
    --progress / --no-progress (alias --quiet, -q)                    --set KEY=VALUE (repeatable)

make_parser gives a parser whose help keeps the description's line breaks, drops Sphinx markup and shows each
option's default, named "ophora <command>" when the ophora launcher runs it and "python -m <module>" otherwise.
"""
from __future__ import annotations

import argparse
import functools
import re
import textwrap
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["USER_ERROR_STATUS", "HelpFormatter", "add_cache", "add_output", "add_overrides", "add_progress",
           "add_seed", "add_workers", "command_prog", "make_parser", "plain_text"]

_ROLE = re.compile(r":(?:mod|class|func|meth|data|attr|exc|obj|ref|doc):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


USER_ERROR_STATUS = 2
"""The exit status of a user's mistake, as argparse gives for a bad command line (ophora.cli.run_command)."""


def plain_text(text: str | None) -> str:
    """Help text without Sphinx markup: ``x`` and :mod:`x` become x (docstrings double as help)."""
    if not text:
        return text or ""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help as the suite writes it: the description's prose paragraphs filled to the terminal's width and its
    indented blocks (examples) kept as written, Sphinx markup removed, and every option's default shown, except
    where it says nothing (None, False, an empty list) or the help text already names it."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in re.split(r"\n[ \t]*\n", text.strip("\n")):
            lines = block.splitlines()
            if any(line[:1].isspace() for line in lines):
                blocks.append("\n".join(indent + line for line in lines))
            else:
                blocks.append(textwrap.fill(" ".join(block.split()), width, initial_indent=indent,
                                            subsequent_indent=indent))
        return "\n\n".join(blocks)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = plain_text(action.help or "")
        default = action.default
        if ("%(default)" in text or default is None or default is False or default == [] or
                default is argparse.SUPPRESS or isinstance(action, (argparse._StoreTrueAction,
                                                                    argparse._StoreFalseAction,
                                                                    argparse._HelpAction,
                                                                    argparse._VersionAction))):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


_launcher: str | None = None  # "ophora" while the ophora launcher runs a subcommand


def command_prog(module: str, command: str | None = None) -> str:
    """The name a command's usage line shows: ``ophora <command>`` when started by the ophora launcher,
    ``python -m <module>`` otherwise (``command`` defaults to the module's last part)."""
    if _launcher:
        return f"{_launcher} {command or module.rpartition('.')[2]}"
    return f"python -m {module}"


def make_parser(module: str, description: str | None = None, command: str | None = None,
                **kwargs: Any) -> argparse.ArgumentParser:
    """An ArgumentParser with the suite's :class:`HelpFormatter` and program name (see :func:`command_prog`)."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    return argparse.ArgumentParser(prog=command_prog(module, command), description=description, **kwargs)


# -- the shared options ------------------------------------------------------------------------------------------

def add_output(parser: argparse.ArgumentParser, help: str = "output folder", *, required: bool = False,
               default: Any = None, type: Callable[[str], Any] = Path, metavar: str = "DIR",
               aliases: Sequence[str] = ("--output", "-o")) -> argparse.Action:
    """``--out`` (also ``--output``, ``-o``): where the command writes its result; ``args.out``."""
    return parser.add_argument("--out", *aliases, dest="out", type=type, required=required, default=default,
                               metavar=metavar, help=help)


def add_cache(parser: argparse.ArgumentParser, help: str = "cache folder of finished stages (reused by a rerun)",
              *, default: Any = None, aliases: Sequence[str] = ("--work",)) -> argparse.Action:
    """``--cache`` (also ``--work``): the folder of intermediate work that a rerun reuses; ``args.cache``."""
    return parser.add_argument("--cache", *aliases, dest="cache", type=Path, default=default, metavar="DIR",
                               help=help)


def add_seed(parser: argparse.ArgumentParser, help: str = "root seed (the same seed gives the same result)", *,
             default: int = 0) -> argparse.Action:
    """``--seed N``: the root seed; ``args.seed``."""
    return parser.add_argument("--seed", type=int, default=default, metavar="N", help=help)


def add_workers(parser: argparse.ArgumentParser, help: str = "worker processes", *,
                default: int | None = 1, minimum: int = 1) -> argparse.Action:
    """``--workers N`` (a whole number, at least ``minimum``: 0 where it means "in the main process");
    ``args.workers``."""
    return parser.add_argument("--workers", type=functools.partial(_whole_number, minimum=minimum), default=default,
                               metavar="N", help=help)


def add_progress(parser: argparse.ArgumentParser, *, default: bool = True) -> None:
    """``--progress`` / ``--no-progress`` (also ``--quiet``, ``-q``): progress bars on stderr; ``args.progress``
    (a bool, ``default`` when neither is given)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_true",
                       help="show progress bars" + (" (default)" if default else ""))
    group.add_argument("--no-progress", "--quiet", "-q", dest="progress", action="store_false",
                       help="no progress bars" + ("" if default else " (default)"))
    parser.set_defaults(progress=default)


def _override(text: str) -> str:
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. train.tpt.max_steps=6), got {text!r}")
    return text


def add_overrides(parser: argparse.ArgumentParser,
                  help: str = "override one config key (dotted path; the value is read as YAML); repeatable"
                  ) -> argparse.Action:
    """``--set KEY=VALUE`` (repeatable): config overrides, checked for the ``=`` on the command line;
    ``args.set`` is the list of strings, to pass to ophora.configs.parse_overrides."""
    return parser.add_argument("--set", dest="set", action="append", default=[], type=_override,
                               metavar="KEY=VALUE", help=help)


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {value}")
    return value
