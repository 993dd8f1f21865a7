"""Curate a raw narrated set into Ophora-160K- and Ophora-28K-style sets.

    ophora curate --input WORLD/ophvl_raw/raw.csv --out runs/curated      (or python -m ophora.curate ...)

Exit status: 0 when the run ended (clips that failed are reported, and retried by the next run), 1 when it
failed (every clip that reached some stage failed there, or any clip failed with ``--strict``), 2 for a usage
or input problem (bad config, unreadable manifest, an output folder in use, a full disk), 130 when
interrupted. Problems print one line, ``error: ...``, without a traceback (``--debug`` shows it); anything else
is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import sys
import time
from pathlib import Path

import yaml

from ophora.cli import add_output, add_overrides, add_progress, add_workers, make_parser
from ophora.configs import ConfigError, load_config, parse_overrides
from ophora.curation.config import CurationConfig, plain, redact
from ophora.curation.run import CurationFailed, OutputBusyError, ResumeError, curate
from ophora.data.manifests import ManifestError

_USER_ERRORS = (ManifestError, ResumeError, OutputBusyError, ConfigError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("ophora.curate", __doc__)
    parser.add_argument("--input", type=Path, metavar="CSV",
                        help="raw set CSV: clip_id,caption,source_video,start,end,path (required)")
    add_output(parser, "output folder (an interrupted run resumes in it) (required)")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE", help="YAML config (see --print-config)")
    add_workers(parser, "processes (local) or tasks in flight (ray) (default: the config's)", default=None)
    parser.add_argument("--executor", choices=("local", "ray"), default=None, help="(default: the config's)")
    parser.add_argument("--shard-size", type=int, default=None, metavar="N",
                        help="clips per ledger shard (default: the config's)")
    parser.add_argument("--link", choices=("hardlink", "symlink", "copy"), default=None,
                        help="how clips enter the output sets (default: the config's)")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="exit 1 when any clip failed (default: only when every clip reaching a stage failed)")
    add_overrides(parser, "override a config key (dotted, e.g. dynamics.max_cuts=1; read as YAML); repeatable")
    parser.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    add_progress(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors (as OPHORA_DEBUG=1)")
    return parser


def _with_overrides(config, args):
    execution = {k: v for k, v in (("workers", args.workers), ("executor", args.executor),
                                   ("shard_size", args.shard_size), ("strict", args.strict)) if v is not None}
    config = dataclasses.replace(config, execution=dataclasses.replace(config.execution, **execution))
    if args.link:
        config = dataclasses.replace(config, output=dataclasses.replace(config.output, link=args.link))
    return dataclasses.replace(config)  # re-run validation


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = _with_overrides(load_config(CurationConfig, args.config, parse_overrides(args.set),
                                             what="curation config"), args)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(plain(config), sort_keys=False), end="")
        return 0
    if args.input is None or args.out is None:
        parser.error("--input and --out are required")
    start = time.perf_counter()
    try:
        summary = curate(args.input, args.out, config, progress=args.progress)
    except CurationFailed as err:
        return _fail(err, 1, config, args.debug or bool(os.environ.get("OPHORA_DEBUG")))
    except _USER_ERRORS as err:
        return _fail(err, 2, config, args.debug or bool(os.environ.get("OPHORA_DEBUG")))
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    failed = f"; {summary['failed']} clip(s) failed and will be retried by the next run" if summary["failed"] else ""
    print(f"curated {summary['input']} clips in {time.perf_counter() - start:.1f} s: {summary['in_160k']} in "
          f"{args.out / 'ophora_160k'}, {summary['in_28k']} in {args.out / 'ophora_28k'}{failed}; "
          f"report {args.out / 'report.md'}")
    return 0


def _fail(err: Exception, status: int, config: CurationConfig, debug: bool) -> int:
    """Print ``err`` as one redacted line (with its traceback under ``--debug``); returns ``status``."""
    if debug:
        raise err
    print(f"error: {redact(_message(err), config.secrets())}", file=sys.stderr)
    return status


def _message(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        where = f" ({err.filename})" if err.filename else ""
        hint = "; free some space and run the same command again to resume" if err.errno == errno.ENOSPC else ""
        return f"{err.strerror}{where}{hint}"
    return " ".join(str(err).split()) or type(err).__name__
