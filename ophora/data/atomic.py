"""Write-then-rename helpers: a file either appears whole at its final path or not at all.

Every stage that writes a file the next stage reads (videos, manifests, tables, figures) goes through
these helpers, so a crash or ``kill -9`` never leaves a half-written file under its final name.

A temporary file is named ``.<stem>.<host>-<pid>.<random>.tmp<suffix>`` (a temporary folder
``.<name>.<host>-<pid>.<random>.tmp``): the host and process that write it.
:func:`remove_stale_temporaries` deletes those of processes of this host that no longer run (a killed run's
leftovers) and leaves alone those of live processes and of other hosts (several writers sharing a folder).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_dir", "atomic_write_text", "remove_stale_temporaries"]

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
_TEMPORARY = re.compile(r"^\..*\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[^.]+\.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    The temporary file keeps the final suffix (``.mp4``, ``.png`` ...) so that writers which pick a
    format from the file name still work. The parent directory is created if needed.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.{_HOST}-{os.getpid()}.", suffix=f".tmp{final.suffix}",
                                    dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; final files get the usual permissions
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success rename it onto ``final`` (replacing an older one,
    which is moved aside first and then deleted), on error delete it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.{_HOST}-{os.getpid()}.", suffix=".tmp",
                                        dir=final.parent))
            os.replace(final, old)  # an empty folder is replaced by the old one
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the final path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)



def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` and folders of :func:`atomic_dir` in ``folder`` (and
    below it when ``recursive``) whose
    writer, a process of this host, no longer runs; return them. Safe while other processes write there."""
    root = Path(folder)
    if not root.is_dir():
        return []
    candidates = sorted(root.rglob(".*.tmp*") if recursive else root.glob(".*.tmp*"))  # parents first
    removed = []
    for path in candidates:
        match = _TEMPORARY.match(path.name)
        if any(path.is_relative_to(gone) for gone in removed):
            continue
        if not match or match["host"] != _HOST or _alive(int(match["pid"])) or path.is_symlink():
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file():
            path.unlink(missing_ok=True)
        else:
            continue
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
