"""Write-then-rename (:mod:`ophora.data.atomic`): a killed writer's temporary file is swept by the next run; a
live writer's, or another host's, is left alone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np

from ophora.data.atomic import atomic_dir, atomic_path, remove_stale_temporaries
from ophora.data.manifests import read_generated
from ophora.generation import read_prompts
from ophora.generation.sampler import write_videos


def _killed_writer(target, helper: str = "atomic_path", write: str = 'tmp.write_bytes(b"half a video")') -> list:
    """Start a process that opens ``helper`` (atomic_path or atomic_dir) on ``target``, runs ``write`` inside it
    and hangs; SIGKILL it; return the temporaries it left beside ``target``."""
    script = textwrap.dedent(f"""
        import time
        from ophora.data.atomic import {helper}
        with {helper}({str(target)!r}) as tmp:
            {write}
            print("writing", flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    stem = target.name if helper == "atomic_dir" else target.stem  # a folder keeps its whole name
    return [p for p in target.parent.iterdir() if p.name.startswith(f".{stem}.")]


def test_a_killed_writers_temporary_is_removed_and_live_or_foreign_ones_are_kept(tmp_path):
    left = _killed_writer(tmp_path / "sub" / "video.mp4")
    assert len(left) == 1 and not (tmp_path / "sub" / "video.mp4").exists()
    foreign = tmp_path / "sub" / ".clip.otherhost-1.abcd1234.tmp.mp4"  # a writer on another host
    foreign.write_bytes(b"x")
    unrelated = tmp_path / "sub" / ".notes.tmp"  # not a name atomic_path makes
    unrelated.write_bytes(b"x")
    with atomic_path(tmp_path / "sub" / "mine.csv") as mine:  # this process is alive: its file stays
        mine.write_text("a,b\n")
        assert remove_stale_temporaries(tmp_path) == []  # not recursive: sub/ untouched
        assert remove_stale_temporaries(tmp_path, recursive=True) == left
        assert mine.exists() and foreign.exists() and unrelated.exists()
    assert (tmp_path / "sub" / "mine.csv").read_text() == "a,b\n"
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_the_generation_writer_sweeps_a_killed_runs_half_written_video(tmp_path):
    out = tmp_path / "gen"
    left = _killed_writer(out / "prompt0000_v00.mp4")
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("a phaco tip enters\n")

    def render(jobs):
        return np.full((len(jobs), 4, 16, 16, 3), 128, dtype=np.uint8)

    written = write_videos(out, read_prompts(prompts_file), 1, 0, render=render, generator="test", checkpoint="0",
                           settings={}, batch_size=1, fps=8.0)
    assert len(written) == 1 and not any(p.exists() for p in left)
    assert [r.path.name for r in read_generated(out)] == [written[0].name]
    assert not [p for p in os.listdir(out) if ".tmp" in p]


def test_a_killed_folder_writer_is_swept_and_a_finished_folder_replaces_the_old(tmp_path):
    left = _killed_writer(tmp_path / "model", "atomic_dir", '(tmp / "weights.safetensors").write_bytes(b"half")')
    assert len(left) == 1 and left[0].is_dir() and not (tmp_path / "model").exists()
    assert remove_stale_temporaries(tmp_path) == left and not left[0].exists()
    for version in ("old", "new"):
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "version.txt").write_text(version)
    assert (tmp_path / "model" / "version.txt").read_text() == "new" and os.listdir(tmp_path) == ["model"]
