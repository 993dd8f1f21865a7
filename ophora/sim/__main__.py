"""``python -m ophora.sim``: write an OphSim world (three datasets in the real formats) and its contact sheet."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ophora.sim.world import WorldConfig, build_world, write_contact_sheet


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 128x160 (height x width), got {text!r}") from None
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ophora.sim", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the world into")
    parser.add_argument("--videos", type=int, default=6, help="number of simulated surgeries (patients)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=33, help="frames per phase clip (8 fps)")
    parser.add_argument("--size", type=parse_size, default=(128, 128), help="frame size HxW (even)")
    parser.add_argument("--defects", type=float, default=0.0,
                        help="rate of raw clips with a planted defect (cut, frozen, lowres, subtitles, watermark)")
    parser.add_argument("--workers", type=int, default=1, help="processes writing surgeries in parallel")
    parser.add_argument("--contact-sheet", type=Path, default=None,
                        help="also write the contact sheet here (.png or .jpg), e.g. under results/figures/")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = WorldConfig(videos=args.videos, seed=args.seed, frames=args.frames, size=args.size,
                             defects=args.defects)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    summary = build_world(config, args.out, workers=args.workers, progress=not args.quiet)
    if args.contact_sheet:
        write_contact_sheet(config, args.contact_sheet)
    counts = summary["counts"]
    print(f"OphSim world in {args.out} ({time.perf_counter() - start:.1f} s): {counts['surgeries']} surgeries, "
          f"{counts['raw_clips']} raw clips, {counts['operation_segments']} operation segments, "
          f"planted defects {counts['defects']}; contact sheet {args.out / 'contact_sheet.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
