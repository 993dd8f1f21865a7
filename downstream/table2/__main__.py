"""``python -m downstream.table2 [--config demo|paper|FILE] [--set KEY=VALUE ...]``: see :mod:`downstream.table2`.

    python -m downstream.table2                                  # the demo on OphSim (CPU, minutes)
    python -m downstream.table2 --config paper --preflight       # lists every missing asset
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch

import downstream.table2 as table2
from downstream.table2.data import real_data
from downstream.table2.preflight import leakage
from downstream.table2.render import notes, render, table_frame
from ophora.cli import UsageError, add_cache, add_output, add_overrides, add_progress, make_parser, run_command
from ophora.configs import parse_overrides
from ophora.data.leakage import LeakageError
from ophora.results import write_json
from ophora.weights import cache_dir


def main(argv: list[str] | None = None) -> int:
    summary, examples = table2.__doc__.split("\n\n")[0], __doc__.split("\n\n", 1)[1]
    parser = make_parser("downstream.table2", summary + "\n\n" + examples)
    parser.add_argument("--config", default="demo", help="demo, paper, or a YAML path")
    add_overrides(parser, "override a config key, e.g. dataset.videos_root=/data/OphNet2024/videos (repeatable)")
    add_cache(parser, "cache folder of finished stages (default runs/table2/<config>)")
    add_output(parser, "output folder (default results/table2/<config>)")
    parser.add_argument("--preflight", action="store_true",
                        help="list missing assets (and, when none is missing on OphNet, check leakage) and exit")
    parser.add_argument("--allow-missing", action="store_true", help="run what can run; missing rows print n/a")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: the tiny models run fastest on one thread of a busy machine; "
                             "GPU runs are unaffected)")
    add_progress(parser, default=False)
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per checkpoint file otherwise
    config = table2.load_config(args.config, parse_overrides(args.set))
    if args.preflight:
        missing = table2.preflight(config)
        print("\n".join(["missing:"] + [f"  - {m}" for m in missing]) if missing else "preflight: nothing missing")
        if not missing and config.dataset.kind == "ophnet":  # OphSim data is made by the run and checked there
            real = {task: real_data(config, task, None)[0] for task in config.tasks}
            report = leakage(config, real, None, (args.cache or Path("runs/table2") / config.name) / "leakage")
            print(report.message() if report.leaks else f"preflight: no val or test clip leaks "
                  f"({len(report.checked)} pairs of sets checked{'; ' if report.skipped else ''}"
                  f"{'; '.join(report.skipped)})")
        return 2 if missing else 0
    work = args.cache or Path("runs") / "table2" / config.name
    out = args.out or Path("results") / "table2" / config.name
    payload = table2.run_table2(config, work, allow_missing=args.allow_missing, progress=args.progress)
    frame = table_frame(payload, config)
    paths = render(frame, config, out, notes(payload, config))
    write_json(out / "results.json", {"table": frame.to_dict("records"), **payload}, config=config,
               seed=config.seeds[0], roots={"$work": work, "$cache": cache_dir()})
    print(paths["md"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}, {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, errors=(LeakageError,)))
