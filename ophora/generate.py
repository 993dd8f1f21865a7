"""Videos from prompts with a trained model (the output folder: ophora.generation.sampler).

    ophora generate --model runs/p2ft/model --prompts prompts.txt --out runs/videos
    python -m ophora.generate --model runs/p2ft/model --prompts prompts.txt --out runs/videos --videos-per-prompt 2
    accelerate launch -m ophora.generate --model runs/p2ft/model --prompts phase_prompts.csv --out runs/videos

The preset comes from the model folder's ``ophora_model.json`` (or ``--config`` for folders the suite did not
write, e.g. the public CogVideoX-2b); ``--config`` for a model of another preset is refused.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ophora.cli import UsageError, add_output, add_overrides, add_progress, add_seed, make_parser, run_command
from ophora.configs import Preset, apply_overrides, load_preset, parse_overrides, preset_from_dict
from ophora.model import ModelNotFoundError, check_model_dir, check_preset_matches, read_model_info
from ophora.training.distributed import make_accelerator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = make_parser("ophora.generate", __doc__)
    parser.add_argument("--model", required=True, type=Path, metavar="DIR",
                        help="pipeline folder (a run's model/ folder)")
    parser.add_argument("--prompts", required=True, type=Path, metavar="FILE",
                        help="text file (one prompt per line) or CSV")
    add_output(parser, "output folder (resumed if it exists)", required=True)
    parser.add_argument("--videos-per-prompt", type=int, default=1, metavar="K", help="videos made for each prompt")
    add_seed(parser, "root seed; video k of prompt i uses derive_seed(S, i, k)")
    parser.add_argument("--steps", type=int, metavar="N", help="denoising steps (default: the preset's)")
    parser.add_argument("--guidance", type=float, metavar="W",
                        help="classifier-free guidance scale (default: the preset's)")
    parser.add_argument("--batch-size", type=int, metavar="B",
                        help="videos per denoising batch (default: the preset's)")
    parser.add_argument("--prompt-column", metavar="NAME", help="CSV column holding the prompts")
    parser.add_argument("--config", help="preset (needed only for folders without ophora_model.json)")
    add_overrides(parser, "override a preset key (dotted, e.g. sampling.steps=4; read as YAML); repeatable")
    add_progress(parser)
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
        raise UsageError(f"{args.model} has no ophora_model.json; name its preset with --config (e.g. paper)")
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
                       progress=args.progress and accelerator.is_local_main_process,
                       barrier=accelerator.wait_for_everyone)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        print(f"wrote {len(written)} videos (rank 0) -> {args.out}", file=sys.stderr)
    return written


def run(argv: list[str] | None = None) -> int:
    """``ophora generate``: a user's mistake (a missing model folder, an empty prompt file, an output folder made
    with other settings) is one ``error:`` line and exit status 2."""
    from ophora.generation import PromptFileError

    return run_command(main, argv, errors=(ModelNotFoundError, PromptFileError), checks=(ValueError,))


if __name__ == "__main__":
    sys.exit(run())
