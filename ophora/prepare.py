"""Encode a clip manifest once with the frozen VAE and T5 (the folder layout: ophora.training.prepare).

    ophora prepare --config tiny --manifest WORLD/ophora_instructions/instructions.csv --out runs/prep
    python -m ophora.prepare --config tiny --manifest WORLD/ophora_instructions/instructions.csv --out runs/prep
    accelerate launch -m ophora.prepare --config paper --set model.pretrained=/w/CogVideoX-2b --manifest ... --out ...

Tiny presets build their base model once in OUT/base_model (``--fit-vae-steps N`` first fits the random VAE to the
manifest's clips, so that demo videos show eyes rather than noise); ``--model DIR`` encodes with another model folder's
frozen parts instead (e.g. a TPT run's ``model/``, so that P2FT data matches the TPT model).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ophora.cli import UsageError, add_output, add_overrides, add_progress, make_parser, run_command
from ophora.configs import load_preset, parse_overrides
from ophora.model import ModelNotFoundError, VaeFit, base_model_dir, check_model_dir, check_preset_matches
from ophora.training.distributed import make_accelerator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser("ophora.prepare", __doc__)
    parser.add_argument("--config", required=True, help="preset name (tiny, paper) or YAML file")
    parser.add_argument("--manifest", required=True, type=Path, metavar="CSV|DIR",
                        help="Ophora-160K CSV (clip id,instruction) or a CogVideoX folder (prompts.txt, videos.txt)")
    add_output(parser, "prepared folder (created; resumed if it exists)", required=True)
    parser.add_argument("--model", type=Path, metavar="DIR",
                        help="pipeline folder whose VAE/T5/tokenizer encode the clips")
    parser.add_argument("--fit-vae-steps", type=int, default=0, metavar="N",
                        help="tiny presets: first fit the random VAE to the manifest's clips for N steps")
    add_overrides(parser, "override a preset key (dotted, e.g. data.fps=8; the value is read as YAML); repeatable")
    add_progress(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    from ophora.training.prepare import fit_clips, prepare

    args = parse_args(argv)
    preset = load_preset(args.config, parse_overrides(args.set))
    accelerator = make_accelerator()
    if args.model is not None:
        if args.fit_vae_steps:
            raise UsageError("--fit-vae-steps builds a new base model; it cannot be combined with --model")
        model_dir = check_model_dir(args.model)
        check_preset_matches(preset, model_dir)
    elif accelerator.is_main_process:
        fit = None
        if args.fit_vae_steps:
            built = (args.out / "base_model" / "model_index.json").is_file()
            fit = VaeFit(None if built else fit_clips(args.manifest, preset), args.fit_vae_steps)
        model_dir = base_model_dir(preset, args.out / "base_model", fit)
    accelerator.wait_for_everyone()
    if args.model is None and not accelerator.is_main_process:
        model_dir = base_model_dir(preset, args.out / "base_model")
    index = prepare(args.manifest, preset, args.out, model_dir, rank=accelerator.process_index,
                    world=accelerator.num_processes, device=accelerator.device,
                    progress=args.progress and accelerator.is_local_main_process,
                    barrier=accelerator.wait_for_everyone)
    if accelerator.is_main_process:
        summary = json.loads(index.read_text())
        print(f"prepared {len(summary['items'])} clips in buckets {summary['buckets']} "
              f"({len(summary['skipped'])} skipped) -> {args.out}", file=sys.stderr)
    return index


def run(argv: list[str] | None = None) -> int:
    """``ophora prepare``: a user's mistake (a missing manifest, a folder prepared with other settings) is one
    ``error:`` line and exit status 2."""
    return run_command(main, argv, errors=(ModelNotFoundError,), checks=(ValueError,))


if __name__ == "__main__":
    sys.exit(run())
