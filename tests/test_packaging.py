"""Packaging: ``pyproject.toml`` declares every third-party package the code imports, and ``constraints.txt`` (the
lock that ``tools/lock.sh`` writes) pins every distribution of the README's installs.

The import rule, checked on the AST of every module of the four packages: a third-party module must come from a
distribution in ``[project] dependencies``. One exception: an import inside the body of a ``try`` whose handler
catches ``ImportError`` (or ``ModuleNotFoundError``) is optional, the handler telling the user which extra to
install (``pip install 'ophora[ray]'``); it may come from a distribution of any ``[project.optional-dependencies]``
extra instead. A ``try`` that catches only ``Exception`` does not make an import optional (its handler would
misreport a missing package). Imports under ``if TYPE_CHECKING:`` are not run and are not checked.
"""
from __future__ import annotations

import ast
import os
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ophora", "benchmarks", "baselines", "downstream")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
OPTIONAL_GUARDS = {"ImportError", "ModuleNotFoundError"}


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(texts: list[str]) -> list[Requirement]:
    return [Requirement(text) for text in texts]


CORE = {canonical(r.name) for r in _requirements(PROJECT["dependencies"])}
EXTRAS = {extra: {canonical(r.name) for r in _requirements(texts)}
          for extra, texts in PROJECT.get("optional-dependencies", {}).items()}
LOCAL = set(PACKAGES) | set(PYPROJECT.get("tool", {}).get("ruff", {}).get("lint", {}).get("isort", {})
                             .get("known-local-folder", []))


# ---------------------------------------------------------------------------------------------------------
# Imports -> declared distributions


class _Imports(ast.NodeVisitor):
    """Top-level module names imported by one file: {name: optional?} (optional only if every import is)."""

    def __init__(self) -> None:
        self.found: dict[str, bool] = {}
        self._guarded = 0

    def _add(self, module: str) -> None:
        top = module.split(".")[0]
        self.found[top] = self.found.get(top, True) and self._guarded > 0

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self._add(node.module)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        guards = set()
        for handler in node.handlers:
            kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            guards |= {k.id for k in kinds if isinstance(k, ast.Name)}
        optional = bool(guards & OPTIONAL_GUARDS)
        self._guarded += optional
        for child in node.body:
            self.visit(child)
        self._guarded -= optional
        for child in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(child)

    visit_TryStar = visit_Try


def imported_modules() -> dict[str, tuple[bool, list[str]]]:
    """Third-party top-level modules imported by the four packages: {module: (optional everywhere, files)}."""
    found: dict[str, tuple[bool, list[str]]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            visitor = _Imports()
            visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
            for module, optional in visitor.found.items():
                if module in sys.stdlib_module_names or module in LOCAL:
                    continue
                was_optional, files = found.get(module, (True, []))
                found[module] = (was_optional and optional, [*files, str(path.relative_to(ROOT))])
    return found


def test_the_scan_sees_required_and_optional_imports(tmp_path):
    visitor = _Imports()
    visitor.visit(ast.parse("import numpy as np\nfrom PIL import Image\n"
                            "def f():\n    try:\n        import ray\n    except ImportError:\n        raise\n"
                            "try:\n    from huggingface_hub import x\nexcept Exception:\n    pass\n"
                            "if TYPE_CHECKING:\n    import deepspeed\n"))
    assert visitor.found == {"numpy": False, "PIL": False, "ray": True, "huggingface_hub": False}
    modules = imported_modules()
    assert modules["ray"][0] and not modules["torch"][0] and not modules["platformdirs"][0]
    assert "ophora" not in modules and "json" not in modules and "__future__" not in modules


def test_every_imported_package_is_declared():
    installed = metadata.packages_distributions()
    optional_dists = set().union(*EXTRAS.values()) if EXTRAS else set()
    problems = []
    for module, (optional, files) in sorted(imported_modules().items()):
        allowed = CORE | optional_dists if optional else CORE
        dists = {canonical(d) for d in installed.get(module, [])}
        if not dists and optional and canonical(module) in optional_dists:
            continue  # an optional extra that is not installed here, named like its module (deepspeed)
        if not dists:
            problems.append(f"{module} (in {files[0]}): not installed, so no distribution to check")
        elif not dists & allowed:
            where = "[project] dependencies or an extra" if optional else "[project] dependencies"
            problems.append(f"{module} (in {files[0]}): from {sorted(dists)}, none of them in {where}")
    assert problems == []


# ---------------------------------------------------------------------------------------------------------
# The lock


def read_lock(path: Path = ROOT / "constraints.txt") -> dict[str, str]:
    """constraints.txt as {canonical name: version}; every line must be a comment or ``name==version``."""
    pins: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;=<>!~@]+)", text)
        assert match, f"constraints.txt line {number}: {line!r} is not name==version"
        name = canonical(match.group(1))
        assert name not in pins, f"constraints.txt line {number}: {name} pinned twice"
        pins[name] = match.group(2)
    return pins


def test_the_lock_pins_every_declared_distribution():
    pins = read_lock()
    declared = CORE | EXTRAS.get("test", set())
    assert sorted(declared - set(pins)) == []
    assert canonical(PROJECT["name"]) not in pins  # the project itself is installed from the checkout
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"  # the builds on the machines' disk


def _installed_closure(roots: list[Requirement]) -> set[str]:
    """Canonical names of the installed distributions that ``roots`` pull in here, extras and markers applied."""
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = list(roots)
    while stack:
        requirement = stack.pop()
        key = (canonical(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue  # not for this platform or Python (its marker said so on the way in)
        seen.add(key)
        for text in dist.requires or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": extra})
                                           for extra in (requirement.extras or {""})):
                stack.append(child)
    return {name for name, _ in seen}


def test_the_lock_pins_what_the_test_install_resolves_here():
    """Every distribution installed here because of the [test] install is pinned (a dependency that appeared
    without a refresh of the lock fails here: run tools/lock.sh)."""
    roots = [r for r in _requirements([*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["test"]])
             if r.marker is None or r.marker.evaluate({"extra": ""})]
    assert sorted(_installed_closure(roots) - set(read_lock())) == []


def test_the_lock_command_is_there_and_documented():
    script = ROOT / "tools" / "lock.sh"
    assert script.is_file() and os.access(script, os.X_OK)
    text = script.read_text(encoding="utf-8")
    assert "pip freeze --all --exclude-editable" in text and "mv -f" in text  # the freeze, written by a rename
    header = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line.startswith("#")]
    assert any("tools/lock.sh" in line for line in header)
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # the front page or its docs/
    assert any("tools/lock.sh" in page.read_text(encoding="utf-8") for page in documents)


def test_the_lock_reader_refuses_ranges_and_duplicates(tmp_path):
    lock = tmp_path / "constraints.txt"
    lock.write_text("# header\nNumPy==2.0.1  # note\n\nPyYAML==6.0.2\n")
    assert read_lock(lock) == {"numpy": "2.0.1", "pyyaml": "6.0.2"}
    lock.write_text("numpy>=2\n")
    with pytest.raises(AssertionError, match="line 1: 'numpy>=2' is not name==version"):
        read_lock(lock)
    lock.write_text("numpy==2.0.1\nnumpy==2.0.2\n")
    with pytest.raises(AssertionError, match="numpy pinned twice"):
        read_lock(lock)


# ---------------------------------------------------------------------------------------------------------
# The files a project has: LICENSE, CITATION.cff, CHANGELOG.md, py.typed, one version, the console script

# SHA-256 of https://www.apache.org/licenses/LICENSE-2.0.txt (and of Debian's /usr/share/common-licenses/Apache-2.0)
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def _citation() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def test_one_version_everywhere():
    import ophora

    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    newest = re.search(r"^## \[(\d+\.\d+\.\d+[^\]]*)\]", changelog, re.MULTILINE)
    assert newest, "CHANGELOG.md has no '## [X.Y.Z]' section"
    assert ophora.__version__ == PROJECT["version"] == str(_citation()["version"]) == newest.group(1)


def test_the_license_is_the_apache_2_text_that_pyproject_names():
    import hashlib

    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_SHA256  # the whole text, unchanged
    assert PROJECT["license"] == _citation()["license"] == "Apache-2.0"


def test_the_citation_names_the_paper_and_the_suite():
    citation = _citation()
    for key in ("cff-version", "message", "title", "authors", "type"):
        assert citation.get(key), f"CITATION.cff: '{key}' is missing"
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    paper = citation["preferred-citation"]
    assert paper["title"].startswith("Ophora: ") and paper["year"] == 2025
    assert paper["conference"]["name"] == "MICCAI 2025"
    names = [f"{a['given-names']} {a['family-names']}" for a in paper["authors"]]
    assert names[0] == "Wei Li" and names[-1] == "Junjun He" and len(names) == 10
    assert {"type": "other", "value": "arXiv:2505.07449", "description": "the arXiv preprint"} in paper["identifiers"]


def test_every_package_is_typed_and_ships_its_marker():
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package in PACKAGES:
        assert (ROOT / package / "py.typed").is_file(), f"{package}/py.typed is missing"
        assert "py.typed" in package_data.get(package, []), f"pyproject: package-data of {package} lacks py.typed"


def test_the_console_script_is_the_launcher():
    from ophora import __main__ as launcher

    assert PROJECT["scripts"] == {"ophora": "ophora.__main__:main"}
    assert callable(launcher.main)


@pytest.mark.slow
def test_the_wheel_carries_the_license_markers_script_and_version(tmp_path):
    """Build the wheel from a copy of the sources (no build files in the checkout) and read what it holds."""
    import shutil
    import subprocess
    import zipfile

    import ophora

    source = tmp_path / "src"
    source.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=skip)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    wheels = list((tmp_path / "dist").glob("ophora-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        info = f"ophora-{ophora.__version__}.dist-info"
        assert {f"{p}/py.typed" for p in PACKAGES} <= names
        assert any(n.startswith(f"{info}/") and n.endswith("LICENSE") for n in names), sorted(n for n in names
                                                                                           if "dist-info" in n)
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        assert "[console_scripts]" in entry_points and "ophora = ophora.__main__:main" in entry_points
        metadata_text = wheel.read(f"{info}/METADATA").decode()
        assert f"Version: {ophora.__version__}\n" in metadata_text
