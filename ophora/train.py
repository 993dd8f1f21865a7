"""Train the Ophora transformer, stage TPT or P2FT (the run folder: ophora.training.trainer).

    ophora train --stage tpt --config tiny --data runs/prep_tpt --out runs/tpt
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

from ophora.cli import add_output, add_overrides, add_progress, make_parser, run_command
from ophora.configs import load_preset, parse_overrides
from ophora.model import ModelNotFoundError
from ophora.training.checkpoint import CheckpointError
from ophora.training.data import PreparedDataError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser("ophora.train", __doc__)
    parser.add_argument("--stage", required=True, choices=("tpt", "p2ft"),
                        help="tpt: transfer pre-training; p2ft: privacy-preserving fine-tuning from a TPT run")
    parser.add_argument("--config", required=True, help="preset name (tiny, paper) or YAML file")
    parser.add_argument("--data", required=True, type=Path, metavar="DIR", help="folder written by ophora prepare")
    add_output(parser, "run folder", required=True)
    parser.add_argument("--init", type=Path, metavar="DIR",
                        help="run folder or pipeline folder to start from (P2FT: the TPT run)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    parser.add_argument("--stop-after", type=int, metavar="N",
                        help="leave after N optimizer steps without saving more (as a killed job would)")
    add_overrides(parser, "override a preset key (dotted, e.g. train.tpt.max_steps=6; read as YAML); repeatable")
    add_progress(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    from ophora.training.trainer import TrainRun, train

    args = parse_args(argv)
    preset = load_preset(args.config, parse_overrides(args.set))
    return train(TrainRun(args.stage, preset, args.data, args.out, init=args.init, resume=args.resume,
                          stop_after=args.stop_after, progress=args.progress))


def run(argv: list[str] | None = None) -> int:
    """``ophora train``: prints the run's model folder; a user's mistake (missing prepared data, a P2FT without
    its TPT run, a run folder that already holds checkpoints) is one ``error:`` line and exit status 2."""
    return run_command(lambda args: print(main(args)), argv,
                       errors=(ModelNotFoundError, PreparedDataError, CheckpointError), checks=(ValueError,))


if __name__ == "__main__":
    sys.exit(run())
