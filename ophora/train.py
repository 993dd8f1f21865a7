"""``python -m ophora.train``: train the Ophora transformer, stage TPT or P2FT (see :mod:`ophora.training.trainer`).

    python -m ophora.train --stage tpt  --config tiny --data runs/prep_tpt  --out runs/tpt
    python -m ophora.train --stage p2ft --config tiny --data runs/prep_p2ft --out runs/p2ft --init runs/tpt
    accelerate launch --config_file ophora/configs/accelerate/deepspeed_zero3.yaml -m ophora.train \\
        --stage tpt --config paper --set model.pretrained=/w/CogVideoX-2b --data ... --out ...

``--resume`` continues from the run's latest checkpoint; the result equals an uninterrupted run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ophora.cli import run_command
from ophora.configs import load_preset, parse_overrides
from ophora.model import ModelNotFoundError
from ophora.training.checkpoint import CheckpointError
from ophora.training.data import PreparedDataError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ophora.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=("tpt", "p2ft"))
    parser.add_argument("--config", required=True, help="preset name (tiny, paper) or YAML file")
    parser.add_argument("--data", required=True, type=Path, help="folder written by python -m ophora.prepare")
    parser.add_argument("--out", required=True, type=Path, help="run folder")
    parser.add_argument("--init", type=Path, help="run folder or pipeline folder to start from (P2FT: the TPT run)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    parser.add_argument("--stop-after", type=int, metavar="N",
                        help="leave after N optimizer steps without saving more (as a killed job would)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a preset key")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    from ophora.training.trainer import TrainRun, train

    args = parse_args(argv)
    preset = load_preset(args.config, parse_overrides(args.set))
    return train(TrainRun(args.stage, preset, args.data, args.out, init=args.init, resume=args.resume,
                          stop_after=args.stop_after, progress=not args.no_progress))


if __name__ == "__main__":
    sys.exit(run_command(lambda argv: print(main(argv)),
                         errors=(ModelNotFoundError, PreparedDataError, CheckpointError)))
