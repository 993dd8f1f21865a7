"""Files that ship inside the installed packages (package data), found with :mod:`importlib.resources`.

Configs name such a file as ``package:<package>/<path inside it>``, the path it has in the source tree, for
example ``package:ophora/data/ophnet2024/OphNet2024_loca_challenge.csv``; :func:`resolve_path` turns that (and
any plain path) into a :class:`pathlib.Path`. The lookup goes through the installed package, so it works from a
wheel as well as from an editable install, whatever the working directory.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["PACKAGE_PREFIX", "package_file", "resolve_path"]

PACKAGE_PREFIX = "package:"


def package_file(spec: str, must_exist: bool = True) -> Path:
    """The file named by ``package:<package>/<path>`` (the prefix may be left out). FileNotFoundError if the
    package is not installed, or (with ``must_exist``) if it holds no such file."""
    text = spec[len(PACKAGE_PREFIX):] if spec.startswith(PACKAGE_PREFIX) else spec
    package, _, inner = text.strip("/").partition("/")
    if not package or not inner:
        raise ValueError(f"{spec!r}: expected {PACKAGE_PREFIX}<package>/<path inside it>, "
                         f"e.g. {PACKAGE_PREFIX}ophora/data/ophnet2024/OphNet2024_loca_challenge.csv")
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise FileNotFoundError(f"{spec!r}: no installed package {package!r}") from None
    resource = root.joinpath(*inner.split("/"))
    if must_exist and not resource.is_file():
        near = sorted(p.name for p in resource.parent.iterdir()) if resource.parent.is_dir() else []
        raise FileNotFoundError(f"{spec!r}: no such file in package {package!r} (that folder holds {near})")
    if not isinstance(resource, os.PathLike):  # a zipped install: the files need a folder on disk
        raise FileNotFoundError(f"{spec!r}: package {package!r} is not installed as files on disk")
    return Path(os.fspath(resource))


def resolve_path(text: str | os.PathLike) -> Path:
    """``package:<package>/<path>`` as :func:`package_file` (the file need not exist: callers that list missing
    inputs check it); anything else as a path (``~`` expanded)."""
    if isinstance(text, str) and text.startswith(PACKAGE_PREFIX):
        return package_file(text, must_exist=False)
    return Path(text).expanduser()
