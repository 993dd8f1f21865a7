"""What every command of the suite shares.

Errors: a user's mistake is one "error: ..." line on stderr and exit status 2, never a traceback; a bug keeps its
traceback. A command's module ends with sys.exit(run_command(main)). User errors are the suite's own error types
(bad config, manifest, prompt file, prepared data, checkpoint, model folder, weights file, external videos, a
UsageError raised by the command) and the operating system's (a file that is missing or unreadable, a full disk).
OPHORA_DEBUG=1 re-raises them with their traceback.

Flags (defined in ophora.flags, which imports nothing of the suite, and re-exported here): every command builds
its parser with make_parser (help that shows defaults, plain text, the "ophora
<command>" name when run through the ophora launcher) and takes the shared options from the add_* helpers, so
that the output, the cache, the seed, progress and KEY=VALUE overrides have the same names everywhere:

    --out DIR (alias --output, -o)     --cache DIR (alias --work)     --seed N
    --progress / --no-progress (alias --quiet, -q)                    --set KEY=VALUE (repeatable)
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any, Callable

from ophora.configs.loader import ConfigError
from ophora.data.external import ExternalVideosError
from ophora.data.manifests import ManifestError
from ophora.flags import (
    USER_ERROR_STATUS,
    HelpFormatter,
    add_cache,
    add_output,
    add_overrides,
    add_progress,
    add_seed,
    add_workers,
    command_prog,
    make_parser,
    plain_text,
)
from ophora.weights import ChecksumMismatchError, WeightsNotFoundError

__all__ = ["USER_ERRORS", "USER_ERROR_STATUS", "HelpFormatter", "UsageError", "add_cache", "add_output",
           "add_overrides", "add_progress", "add_seed", "add_workers", "command_prog", "make_parser",
           "plain_text", "raised_by_suite", "run_command", "user_message"]



class UsageError(ValueError):
    """A mistake in how a command was called that argparse cannot see (two flags that exclude each other, a
    value out of range): printed as one "error:" line, exit status 2."""


USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, ConfigError, ManifestError, ExternalVideosError,
                                                 WeightsNotFoundError, ChecksumMismatchError, OSError)

_HINTS = {
    errno.ENOSPC: "the disk is full: free space, or point $OPHORA_CACHE, TMPDIR or the output folder elsewhere, "
                  "and rerun (finished work is kept)",
    errno.EDQUOT: "the disk quota is used up: free space or write elsewhere, and rerun (finished work is kept)",
    errno.EROFS: "the file system is read-only: choose a writable output folder",
}


def user_message(error: BaseException) -> str:
    """The one line shown for ``error``: its text, and for a full or read-only disk what to do."""
    text = " ".join(str(error).split()) or type(error).__name__
    hint = _HINTS.get(getattr(error, "errno", None))
    return f"{text} ({hint})" if hint else text


_SUITE = tuple(str(Path(__file__).resolve().parents[1] / package) + os.sep
               for package in ("ophora", "benchmarks", "baselines", "downstream"))


def raised_by_suite(error: BaseException) -> bool:
    """Whether ``error`` was raised by the suite's own code (the innermost Python frame of its traceback lies in
    one of the four packages), not by a library it calls. A builtin written in C has no frame of its own, so an
    error it raises counts as raised by the Python code that called it."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.realpath(tb.tb_frame.f_code.co_filename).startswith(_SUITE)


def run_command(main: Callable[..., Any], argv: list[str] | None = None,
                errors: tuple[type[BaseException], ...] = (), code: int = USER_ERROR_STATUS,
                checks: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``main(argv)``; 0 (or main's int result) when it returns, ``code`` (2) after printing one ``error:``
    line when it raises one of :data:`USER_ERRORS` or ``errors`` (the command's own user errors), 130 on
    Ctrl-C. ``checks`` (e.g. ValueError) are user errors only when the suite's own code raised them (its input
    checks, see :func:`raised_by_suite`); raised inside a library they are bugs and keep their traceback."""
    try:
        result = main(argv)
    except (*USER_ERRORS, *errors, *checks) as error:
        if os.environ.get("OPHORA_DEBUG"):
            raise
        if not isinstance(error, (*USER_ERRORS, *errors)) and not raised_by_suite(error):
            raise
        print(f"error: {user_message(error)}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("interrupted (finished work is kept; run the same command again to resume)", file=sys.stderr)
        return 130
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
