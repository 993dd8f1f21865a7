"""Results that describe themselves: every file a run writes carries its config, seed, commit and environment.

``write_json`` is the one way stages write result files; given ``roots`` it writes every absolute path as
``$name/relative`` under one of them, or relative to the file's own folder, so a result file names no
directory of the machine that made it. ``python -m ophora.results compare A.json B.json`` says whether two
result files agree (identical, or every number within stated tolerances), and ``python -m ophora.results
perf-report FILE`` turns a pytest-benchmark JSON file into the Markdown table kept under ``results/perf/``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

from ophora.data.atomic import atomic_write_text
from ophora.flags import HelpFormatter, make_parser

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


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` knows; "" if unknown)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, Any]:
    """Where and when a result was made: commit, UTC time, Python, platform, CPU model and count, every installed
    distribution's version, and, when torch is loaded, its thread count and the CPU capability its kernels
    dispatched to (``AVX2``, ``AVX512``, ...): float results on a CPU depend on both."""
    document = {
        "git_commit": git_commit(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "distributions": installed_distributions(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        document["torch_threads"] = torch.get_num_threads()
        document["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return document


def installed_distributions() -> dict[str, str]:
    """``{name: version}`` of every distribution in the running environment (what a lock file pins)."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(name.lower().replace("_", "-"), dist.version)
    return dict(sorted(found.items()))


def write_json(path: str | os.PathLike, payload: dict[str, Any], *, config: Any = None,
               seed: int | None = None, roots: Mapping[str, str | os.PathLike] | None = None) -> Path:
    """Write ``payload`` plus ``config``, ``seed`` and :func:`provenance` to ``path`` atomically.

    ``roots`` (``{"$work": folder, ...}``): write every absolute path in the document relative to the deepest
    root that holds it (``$work/generate/videos``), and any other absolute path relative to ``path``'s folder;
    the document's ``roots`` field then says what each name stood for (relative to ``path``'s folder where it
    can be, else the environment variable or cache dir a reader resolves it by)."""
    path = Path(path)
    document = {"config": plain(config), "seed": seed, "provenance": provenance(), **payload}
    if roots is not None:
        document = relative_paths(document, roots, path.parent)
    return atomic_write_text(path, json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def relative_paths(document: Any, roots: Mapping[str, str | os.PathLike], base: str | os.PathLike) -> Any:
    """``document`` with every string that is an absolute path rewritten as ``$name/rel`` under the deepest of
    ``roots`` that holds it, else relative to ``base``; adds ``roots``: how each name was written."""
    resolved = sorted(((name, Path(root).expanduser().resolve()) for name, root in roots.items()),
                      key=lambda item: len(item[1].parts), reverse=True)
    base = Path(base).expanduser().resolve()

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        if isinstance(value, str) and os.path.isabs(value) and "\n" not in value:
            return _relative(Path(value), resolved, base)
        return value

    out = rewrite(plain(document))
    out["roots"] = {name: _root_label(root, base) for name, root in resolved}
    return out


def resolve_path(text: str, document: Mapping[str, Any], result_file: str | os.PathLike,
                 roots: Mapping[str, str | os.PathLike] | None = None) -> Path:
    """The absolute path that ``text`` (a path as :func:`write_json` wrote it into ``document``, read from
    ``result_file``) stands for: ``$name/rel`` under that root, anything else relative to the file's folder.
    ``roots`` gives a root that the document could not record (one outside the result file's tree, such as
    ``{"$cache": cache_dir()}``)."""
    base = Path(result_file).expanduser().resolve().parent
    name, _, rest = text.partition("/")
    if name.startswith("$"):
        known = {**{k: v for k, v in document.get("roots", {}).items() if v is not None}, **(roots or {})}
        if name not in known:
            raise KeyError(f"{result_file}: path {text!r} is under root {name}, which the file does not locate; "
                           f"pass roots={{{name!r}: <folder>}}")
        return (base / Path(known[name]).expanduser() / rest).resolve()
    return (base / text).resolve()


def _relative(path: Path, roots: list[tuple[str, Path]], base: Path) -> str:
    path = Path(os.path.normpath(path))
    for name, root in roots:
        if path == root:
            return name
        if root in path.parents:
            return f"{name}/{path.relative_to(root).as_posix()}"
    return Path(os.path.relpath(path, base)).as_posix()


def _root_label(root: Path, base: Path) -> str | None:
    """A root relative to the result file's folder when both lie in one tree below ``/``, else None (a root
    outside it, such as the user cache dir, is found again by its name)."""
    if len(Path(os.path.commonpath([root, base])).parts) > 1:
        return Path(os.path.relpath(root, base)).as_posix()
    return None


def plain(value: Any) -> Any:
    """Dataclasses and paths to JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Two numbers agree when ``|a - b| <= atol + rtol * |b|``."""

    rtol: float = 0.0
    atol: float = 0.0

    def agrees(self, a: float, b: float) -> bool:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= self.atol + self.rtol * abs(b)


# What differs between two runs of the same work by construction: when, where and how fast it ran.
VOLATILE_KEYS = frozenset({"provenance", "created_utc", "timings_s", "seconds", "wall_s", "cache", "roots",
                           "hit", "hits"})


@dataclasses.dataclass
class Comparison:
    """The outcome of :func:`compare_results`: numbers compared, numbers that differ at all, the largest
    absolute and relative difference, and every difference outside the tolerance (``path: a vs b``)."""

    numbers: int = 0
    differing: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst: str = ""
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.differing == 0 and not self.failures

    def summary(self, tolerance: Tolerance) -> str:
        if self.identical:
            return f"identical: {self.numbers} numbers, all equal"
        head = (f"{self.differing} of {self.numbers} numbers differ; largest difference {self.max_abs:.4g} "
                f"({self.max_rel:.2%} relative) at {self.worst}")
        if not self.failures:
            return f"within tolerance (rtol={tolerance.rtol:g}, atol={tolerance.atol:g}): {head}"
        return (f"NOT within tolerance (rtol={tolerance.rtol:g}, atol={tolerance.atol:g}): {head}\n  "
                + "\n  ".join(self.failures))


def compare_results(a: Any, b: Any, tolerance: Tolerance = Tolerance(),
                    ignore: frozenset[str] = VOLATILE_KEYS) -> Comparison:
    """Compare two result documents leaf by leaf: numbers within ``tolerance``, everything else exactly, keys
    in ``ignore`` (at any depth) skipped. ``b`` is the reference (relative differences are taken against it)."""
    out = Comparison()
    for where, x, y in _leaves(a, b, "", ignore):
        if _is_number(x) and _is_number(y):
            out.numbers += 1
            x, y = float(x), float(y)
            if x == y or (math.isnan(x) and math.isnan(y)):
                continue
            out.differing += 1
            diff, rel = abs(x - y), abs(x - y) / max(abs(y), 1e-300)
            if diff > out.max_abs:
                out.max_abs, out.max_rel, out.worst = diff, rel, where
            if not tolerance.agrees(x, y):
                out.failures.append(f"{where}: {x!r} vs {y!r}")
        elif x != y:
            out.failures.append(f"{where}: {x!r} vs {y!r}")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _leaves(a: Any, b: Any, where: str, ignore: frozenset[str]) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key in ignore:
                continue
            here = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                yield here, a.get(key, "<missing>"), b.get(key, "<missing>")
            else:
                yield from _leaves(a[key], b[key], here, ignore)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _leaves(x, y, f"{where}[{i}]", ignore)
    else:
        yield where, a, b


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
        lines.append(f"| {name} | {stats['mean']:.4f} | {stats['stddev']:.4f} | {stats['rounds']} | {throughput} "
                     f"| {ratio} |")
    return "\n".join(lines)


def write_perf_report(bench_json: str | os.PathLike) -> Path:
    """Write ``<name>.md`` beside a pytest-benchmark JSON file ``<name>.json``: machine, commit and the table."""
    bench_json = Path(bench_json)
    bench = json.loads(bench_json.read_text())
    machine = bench.get("machine_info", {})
    commit = bench.get("commit_info", {}).get("id") or git_commit()
    header = (f"# Performance figures\n\nMeasured by `tox -e bench` (pytest-benchmark), "
              f"stored in `{bench_json.name}`, on {bench.get('datetime', '?')}.\n"
              f"Machine: {machine.get('cpu', {}).get('brand_raw', '?')}, "
              f"{machine.get('cpu', {}).get('count', '?')} cores, Python {machine.get('python_version', '?')}; "
              f"commit {commit}.\n\n")
    return atomic_write_text(bench_json.with_suffix(".md"), header + perf_table(bench) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("ophora.results", __doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{compare,perf-report}")
    report = sub.add_parser("perf-report", help="Markdown table from a pytest-benchmark JSON file",
                            description="Write NAME.md beside a pytest-benchmark file NAME.json.",
                            formatter_class=HelpFormatter)
    report.add_argument("bench_json", type=Path, metavar="BENCH_JSON", help="the pytest-benchmark JSON file")
    compare = sub.add_parser("compare", help="do two results.json files agree? (exit 0: yes, 1: no, 2: unreadable)",
                             description="Compare two result files number by number, skipping provenance, timings "
                                         "and cache records. Exit status 0: they agree; 1: they do not; 2: a file "
                                         "cannot be read.", formatter_class=HelpFormatter)
    compare.add_argument("new", type=Path, help="the result file to check")
    compare.add_argument("reference", type=Path, help="the result file it should agree with (e.g. committed)")
    compare.add_argument("--rtol", type=float, default=0.0, help="relative tolerance per number (0.02: 2%%)")
    compare.add_argument("--atol", type=float, default=0.0, help="absolute tolerance per number")
    compare.add_argument("--ignore", action="append", default=[], metavar="KEY",
                         help="also skip this key at any depth (e.g. per_video); repeatable")
    args = parser.parse_args(argv)
    if args.command == "perf-report":
        print(f"wrote {write_perf_report(args.bench_json)}")
        return 0
    documents = []
    for path in (args.new, args.reference):
        try:
            documents.append(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            print(f"error: cannot read result file {path}: {err}", file=sys.stderr)
            return 2
    tolerance = Tolerance(args.rtol, args.atol)
    outcome = compare_results(*documents, tolerance, VOLATILE_KEYS | set(args.ignore))
    print(f"{args.new} vs {args.reference}: {outcome.summary(tolerance)}")
    return 0 if not outcome.failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
