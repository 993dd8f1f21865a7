"""Full reproduction of the shipped surgical detectors (not part of the test suite; about 50 minutes on 2 busy
cores, most of it the dual encoder's video tower: 1,921 s there, frame 424 s, dual 557 s, video 749 s with its
arrow-of-time branch).
Run from the repository root:

    python tests/manual/surgical_reproduction.py [FOLDER]

Runs ``python -m benchmarks.detectors.train_surgical --out FOLDER/out --work FOLDER/worlds`` (the demo recipe:
OphSim worlds of the reserved seeds 7001-7004) and compares the sha256 of each file it writes with the digest
registered in :mod:`ophora.weights` for the shipped file. Tolerance: none (byte-identical files), which holds on
the same package lock and CPU kernels (``torch_cpu_capability``); on another CPU compare features instead.
``tests/test_surgical_detectors.py`` reproduces the frame detector in the suite (marked slow).
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

from benchmarks.detectors.surgical import ENTRIES
from benchmarks.detectors.train_surgical import main as train_main
from benchmarks.detectors.train_surgical import weights_file
from ophora.weights import get_entry


def run(folder: Path) -> bool:
    assert train_main(["--out", str(folder / "out"), "--work", str(folder / "worlds")]) == 0
    same = True
    for kind, entry in ENTRIES.items():
        made = hashlib.sha256((folder / "out" / weights_file(kind)).read_bytes()).hexdigest()
        expected = get_entry(entry).sha256
        print(f"{kind:6s} {'identical' if made == expected else 'DIFFERS'}  made {made}  shipped {expected}")
        same &= made == expected
    return same


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(0 if run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp)) else 1)
