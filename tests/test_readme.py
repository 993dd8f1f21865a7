"""The README and the guides in docs/ say true things about the tree: every path and dotted name they mention
exists, every link between them points at a file, and the README's map of the folders names every module of the
packages' main folders."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = {path.relative_to(ROOT).as_posix(): path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}
PAGES = {"README.md": README, **DOCS}
_START = README.index("## Map of the folders")
_END = README.find("\n## ", _START + 5)
MAP = README[_START:_END if _END != -1 else len(README)]
# folders whose every module the map names (sub-packages are named as folders)
MAPPED = ("ophora", "ophora/data", "ophora/configs", "benchmarks", "benchmarks/metrics", "baselines", "downstream",
          "downstream/table2")


@pytest.mark.parametrize("page", PAGES)
def test_every_path_a_page_names_exists(page):
    paths = set(re.findall(r"`((?:ophora|benchmarks|baselines|downstream|tests|results|tools|docs)/[\w./-]*)`",
                           PAGES[page]))
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


def test_the_pages_name_many_paths():
    assert len({p for text in PAGES.values()
                for p in re.findall(r"`((?:ophora|benchmarks|baselines|downstream|tests)/[\w./-]*)`", text)}) > 50
    assert len(DOCS) >= 8 and "## Quick start" in README[:2500] and "## Terms" in README


@pytest.mark.parametrize("page", PAGES)
def test_every_link_between_pages_points_at_a_file(page):
    base = (ROOT / page).parent
    targets = re.findall(r"\]\((?!https?://|#)([^)#\s]+)(?:#[^)]*)?\)", PAGES[page])
    assert targets or page != "README.md"
    assert sorted(t for t in targets if not (base / t).exists()) == []


@pytest.mark.parametrize("page", PAGES)
def test_every_dotted_name_a_page_names_imports(page):
    missing = []
    for name in sorted(set(re.findall(r"`((?:ophora|benchmarks|baselines|downstream)\.[\w.]+)`", PAGES[page]))):
        parts, obj, k = name.split("."), None, 0
        for k in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:k]))
                break
            except ImportError:
                continue
        for attribute in parts[k:]:
            obj = getattr(obj, attribute, None)
        if obj is None:
            missing.append(name)
    assert missing == []


def test_terms_are_explained_before_the_readme_uses_them():
    terms = README.index("## Terms")
    for term in ("TPT", "P2FT", "160K-style", "shifted bootstrap"):
        first = README.find(term)
        assert first == -1 or first >= terms or "[Terms](#terms)" in README[first:first + 60], term


@pytest.mark.parametrize("folder", MAPPED)
def test_the_map_names_every_module(folder):
    modules = [p for p in sorted((ROOT / folder).iterdir())
               if (p.suffix == ".py" and not p.name.startswith("__")) or (p / "__init__.py").is_file()]
    unnamed = [p.name for p in modules if not re.search(rf"`[\w/.]*\b{re.escape(p.stem)}(\.py|/)?[`\s]", MAP)
               and f"python -m {folder.replace('/', '.')}.{p.stem}" not in MAP]
    assert unnamed == []
