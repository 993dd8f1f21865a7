"""``python -m ophora.generate``: videos from prompts with a trained model (see :mod:`ophora.generation.sampler`).

    python -m ophora.generate --model runs/p2ft/model --prompts prompts.txt --out runs/videos --videos-per-prompt 2
    accelerate launch -m ophora.generate --model runs/p2ft/model --prompts phase_prompts.csv --out runs/videos

The preset comes from the model folder's ``ophora_model.json`` (or ``--config`` for folders the suite did not
write, e.g. the public CogVideoX-2b); ``--config`` for a model of another preset is refused.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ophora.cli import run_command
from ophora.configs import Preset, apply_overrides, load_preset, parse_overrides, preset_from_dict
from ophora.model import ModelNotFoundError, check_model_dir, check_preset_matches, read_model_info
from ophora.training.distributed import make_accelerator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ophora.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="pipeline folder (a run's model/ folder)")
    parser.add_argument("--prompts", required=True, type=Path, help="text file (one prompt per line) or CSV")
    parser.add_argument("--out", required=True, type=Path, help="output folder (resumed if it exists)")
    parser.add_argument("--videos-per-prompt", type=int, default=1, metavar="K")
    parser.add_argument("--seed", type=int, default=0, help="root seed; video k of prompt i uses derive_seed(S, i, k)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the preset's)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="videos per denoising batch (default: the preset's)")
    parser.add_argument("--prompt-column", help="CSV column holding the prompts")
    parser.add_argument("--config", help="preset (needed only for folders without ophora_model.json)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a preset key")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def resolve_preset(args: argparse.Namespace) -> Preset:
    """The model's own preset (checked against --config when given), with the command line's overrides."""
    overrides = parse_overrides(args.set)
    for key, value in (("sampling.steps", args.steps), ("sampling.guidance_scale", args.guidance),
                       ("sampling.batch_size", args.batch_size)):
        if value is not None:
            overrides[key] = value
    info = read_model_info(args.model)
    if args.config is not None:
        preset = load_preset(args.config, overrides)
        check_preset_matches(preset, args.model)
        return preset
    if info is None:
        raise ValueError(f"{args.model} has no ophora_model.json; name its preset with --config (e.g. paper)")
    source = str(args.model / "ophora_model.json")
    return preset_from_dict(apply_overrides(info["config"], overrides, source), source)


def main(argv: list[str] | None = None) -> list[Path]:
    from ophora.generation import generate, read_prompts

    args = parse_args(argv)
    check_model_dir(args.model)
    preset = resolve_preset(args)
    prompts = read_prompts(args.prompts, args.prompt_column)
    accelerator = make_accelerator()
    written = generate(args.model, prompts, preset, args.out, args.videos_per_prompt, args.seed,
                       rank=accelerator.process_index, world=accelerator.num_processes, device=accelerator.device,
                       progress=not args.no_progress and accelerator.is_local_main_process,
                       barrier=accelerator.wait_for_everyone)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        print(f"wrote {len(written)} videos (rank 0) -> {args.out}", file=sys.stderr)
    return written


if __name__ == "__main__":
    from ophora.generation import PromptFileError

    sys.exit(run_command(main, errors=(ModelNotFoundError, PromptFileError)))
