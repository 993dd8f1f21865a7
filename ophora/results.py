"""Results that describe themselves: every file a run writes carries its config, seed, commit and environment.

``write_json`` is the one way stages write result files. ``python -m ophora.results perf-report FILE`` turns
a pytest-benchmark JSON file into the Markdown table kept under ``results/perf/``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ophora.data.atomic import atomic_write_text

_PACKAGES = ("ophora", "torch", "torchvision", "numpy", "av", "opencv-python-headless", "scenedetect",
             "diffusers", "transformers", "pandas", "scipy")


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The current commit hash, with ``-dirty`` appended when tracked files changed; None outside git."""
    cwd = Path(cwd or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that change numbers (None where not installed)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance() -> dict[str, Any]:
    """Where and when a result was made: commit, UTC time, Python, platform, CPU count, torch's thread count
    (when torch is loaded: float results on the CPU depend on it), package versions."""
    document = {
        "git_commit": git_commit(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        document["torch_threads"] = torch.get_num_threads()
    return document


def write_json(path: str | os.PathLike, payload: dict[str, Any], *, config: Any = None,
               seed: int | None = None) -> Path:
    """Write ``payload`` plus ``config``, ``seed`` and :func:`provenance` to ``path`` atomically."""
    document = {"config": plain(config), "seed": seed, "provenance": provenance(), **payload}
    return atomic_write_text(path, json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def plain(value: Any) -> Any:
    """Dataclasses and paths to JSON-ready values."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# ---------------------------------------------------------------------------------------------------------
# Performance report


def perf_table(bench: dict[str, Any]) -> str:
    """Markdown table of a pytest-benchmark JSON document.

    Benchmarks may set ``extra_info["items"]`` and ``extra_info["unit"]`` (e.g. 64 and "frames"); the table
    then shows throughput in units per second. ``extra_info["baseline"]`` names another benchmark of the
    same run; the table shows the speed ratio against it.
    """
    rows = {b["name"]: b for b in bench["benchmarks"]}
    lines = ["| benchmark | mean (s) | stddev (s) | rounds | throughput | vs baseline |", "|---|---|---|---|---|---|"]
    for name, b in rows.items():
        stats, info = b["stats"], b.get("extra_info", {})
        throughput = f"{info['items'] / stats['mean']:.1f} {info.get('unit', 'items')}/s" if "items" in info else ""
        base = rows.get(info.get("baseline", ""))
        ratio = f"{base['stats']['mean'] / stats['mean']:.2f}x {info['baseline']}" if base else ""
        lines.append(f"| {name} | {stats['mean']:.4f} | {stats['stddev']:.4f} | {stats['rounds']} | {throughput} | {ratio} |")
    return "\n".join(lines)


def write_perf_report(bench_json: str | os.PathLike) -> Path:
    """Write ``<name>.md`` beside a pytest-benchmark JSON file ``<name>.json``: machine, commit and the table."""
    bench_json = Path(bench_json)
    bench = json.loads(bench_json.read_text())
    machine = bench.get("machine_info", {})
    commit = bench.get("commit_info", {}).get("id") or git_commit()
    header = (f"# Performance figures\n\nMeasured by `tox -e bench` (pytest-benchmark), stored in `{bench_json.name}`, on "
              f"{bench.get('datetime', '?')}.\nMachine: {machine.get('cpu', {}).get('brand_raw', '?')}, "
              f"{machine.get('cpu', {}).get('count', '?')} cores, Python {machine.get('python_version', '?')}; "
              f"commit {commit}.\n\n")
    return atomic_write_text(bench_json.with_suffix(".md"), header + perf_table(bench) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ophora.results", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("perf-report", help="Markdown table from a pytest-benchmark JSON file")
    report.add_argument("bench_json", type=Path)
    args = parser.parse_args(argv)
    if args.command == "perf-report":
        print(f"wrote {write_perf_report(args.bench_json)}")


if __name__ == "__main__":
    main()
