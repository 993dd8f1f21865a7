"""What every command of the suite shares: a user's mistake is one ``error:`` line on stderr and a non-zero exit
status, never a traceback; a bug keeps its traceback.

A command's module ends with ``sys.exit(run_command(main))``. User errors are the suite's own error types (bad
config, manifest, prompt file, prepared data, checkpoint, model folder, weights file, external videos) and the
operating system's (a file that is missing or unreadable, a full disk). ``OPHORA_DEBUG=1`` re-raises them with
their traceback.
"""
from __future__ import annotations

import errno
import os
import sys
from typing import Any, Callable

from ophora.configs.loader import ConfigError
from ophora.data.external import ExternalVideosError
from ophora.data.manifests import ManifestError
from ophora.weights import ChecksumMismatchError, WeightsNotFoundError

__all__ = ["USER_ERRORS", "run_command", "user_message"]

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ManifestError, ExternalVideosError,
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


def run_command(main: Callable[..., Any], argv: list[str] | None = None,
                errors: tuple[type[BaseException], ...] = (), code: int = 1) -> int:
    """Run ``main(argv)``; 0 (or main's int result) when it returns, ``code`` after printing one ``error:`` line
    when it raises one of :data:`USER_ERRORS` or ``errors`` (the command's own user errors), 130 on Ctrl-C."""
    try:
        result = main(argv)
    except (*USER_ERRORS, *errors) as error:
        if os.environ.get("OPHORA_DEBUG"):
            raise
        print(f"error: {user_message(error)}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("interrupted (finished work is kept; run the same command again to resume)", file=sys.stderr)
        return 130
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
