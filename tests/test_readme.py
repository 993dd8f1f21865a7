"""The README says true things about the tree: every path and dotted name it mentions exists, and its map of the
folders names every module of the packages' main folders."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MAP = README[README.index("## Map of the folders"):README.index("\n## ", README.index("## Map of the folders") + 5)]
# folders whose every module the map names (sub-packages are named as folders)
MAPPED = ("ophora", "ophora/data", "ophora/configs", "benchmarks", "benchmarks/metrics", "baselines", "downstream",
          "downstream/table2")


def test_every_path_the_readme_names_exists():
    paths = set(re.findall(r"`((?:ophora|benchmarks|baselines|downstream|tests|results|tools)/[\w./-]*)`", README))
    assert len(paths) > 30
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


def test_every_dotted_name_the_readme_names_imports():
    missing = []
    for name in sorted(set(re.findall(r"`((?:ophora|benchmarks|baselines|downstream)\.[\w.]+)`", README))):
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


@pytest.mark.parametrize("folder", MAPPED)
def test_the_map_names_every_module(folder):
    modules = [p for p in sorted((ROOT / folder).iterdir())
               if (p.suffix == ".py" and not p.name.startswith("__")) or (p / "__init__.py").is_file()]
    unnamed = [p.name for p in modules if not re.search(rf"`[\w/.]*\b{re.escape(p.stem)}(\.py|/)?[`\s]", MAP)
               and f"python -m {folder.replace('/', '.')}.{p.stem}" not in MAP]
    assert unnamed == []
