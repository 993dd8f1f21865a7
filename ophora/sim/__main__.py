"""Write an OphSim world (three datasets in the real formats) and its contact sheet.

    ophora sim --out runs/world --videos 2 --seed 0          (or python -m ophora.sim ...)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ophora.cli import UsageError, add_output, add_progress, add_seed, add_workers, make_parser, run_command
from ophora.sim.world import WorldConfig, build_world, write_contact_sheet


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 128x160 (height x width), got {text!r}") from None
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("ophora.sim", __doc__)
    add_output(parser, "folder to write the world into (a stopped run resumes in it)", required=True)
    parser.add_argument("--videos", type=int, default=6, metavar="N", help="number of simulated surgeries (patients)")
    add_seed(parser, "root seed (the same seed gives the same frames)")
    parser.add_argument("--frames", type=int, default=33, metavar="T", help="frames per phase clip (8 fps)")
    parser.add_argument("--size", type=parse_size, default="128x128", metavar="HxW", help="frame size HxW (even)")
    parser.add_argument("--defects", type=float, default=0.0, metavar="RATE",
                        help="rate of raw clips with a planted defect (cut, frozen, lowres, subtitles, watermark)")
    add_workers(parser, "processes writing surgeries in parallel")
    parser.add_argument("--contact-sheet", type=Path, default=None, metavar="FILE",
                        help="also write the contact sheet here (.png or .jpg), e.g. under results/figures/")
    add_progress(parser)
    return parser


def write_world(argv: list[str] | None = None) -> int:
    """The command's work; a user's mistake raises (see :func:`main`)."""
    args = build_parser().parse_args(argv)
    try:
        config = WorldConfig(videos=args.videos, seed=args.seed, frames=args.frames, size=args.size,
                             defects=args.defects)
    except ValueError as err:
        raise UsageError(str(err)) from err
    start = time.perf_counter()
    summary = build_world(config, args.out, workers=args.workers, progress=args.progress)
    if args.contact_sheet:
        write_contact_sheet(config, args.contact_sheet)
    counts = summary["counts"]
    print(f"OphSim world in {args.out} ({time.perf_counter() - start:.1f} s): {counts['surgeries']} surgeries, "
          f"{counts['raw_clips']} raw clips, {counts['operation_segments']} operation segments, "
          f"planted defects {counts['defects']}; contact sheet {args.out / 'contact_sheet.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``ophora sim``: a user's mistake is one ``error:`` line and exit status 2."""
    return run_command(write_world, argv)


if __name__ == "__main__":
    sys.exit(main())
