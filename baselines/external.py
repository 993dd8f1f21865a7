"""``python -m baselines.external check DIR [--prompts FILE] [--min-frames N] [--headers-only]``: validate a folder
of videos written by the official Endora / Bora code before scoring it.

The folder layout and the ``video,prompt`` mapping are described in :mod:`ophora.data.external`, which reads
them for every stage (the evaluation harness, Table 1's external rows, Table 2's synthetic clips).
"""
from __future__ import annotations

import argparse
import sys

from ophora.data.external import ExternalVideos, ExternalVideosError
from ophora.data.manifests import ManifestError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m baselines.external",
                                description="Check a folder of videos written by official Endora/Bora code.")
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate the folder and the prompt mapping, print a summary")
    check.add_argument("folder", help="folder of .mp4 files or of frame folders")
    check.add_argument("--prompts", default=None, help="CSV with columns video,prompt (omit for unconditional)")
    check.add_argument("--min-frames", type=int, default=16, help="frames each video needs (FVD: 16)")
    check.add_argument("--generator", default="external", help="a label for the summary")
    check.add_argument("--headers-only", action="store_true", help="read headers only, do not decode frames")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        videos = ExternalVideos(args.folder, args.prompts, args.generator)
        report = videos.validate(args.min_frames, decode=not args.headers_only)
    except (ExternalVideosError, ManifestError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    fake = (f"{videos.folder} --fake-prompts {videos.prompts_file}" if videos.prompts_file else
            f"external:{videos.folder} --metrics fid,fvd")
    print(f"ok: score it with python -m benchmarks.evaluate --fake {fake}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
