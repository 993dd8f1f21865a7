"""Faults injected into the evaluation's files: an unusable reference-cache entry (truncated, empty, not a zip,
wrong or tampered arrays) is named, set aside and recomputed with the same result; a full disk when caching
only skips the cache; an appended manifest line is written whole or not at all (short writes, EINTR, ENOSPC);
an empty or malformed set is refused with one line naming the file and exit 1; an unreadable Table 1 stage
record is set aside and the stage run again."""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks import cache
from benchmarks.evaluate import EvalConfig, EvaluationInputError, evaluate, main
from benchmarks.metrics import get_protocol
from ophora.data.manifests import GeneratedVideo, append_generated, read_generated
from ophora.data.manifests import generated as generated_manifest

from eval_sets import make_folder, make_generated


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def small_disk(tmp_path):
    """A real 64 KiB tmpfs (root and Linux only; skipped elsewhere), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if getattr(os, "geteuid", lambda: 1)() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _enospc(path: object = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), *([str(path)] if path else []))


# ---------------------------------------------------------------------------------------------------------
# the reference-statistics cache, entry by entry


class _State:
    """Stands in for a metric's state: what ``save_reference`` asks of one."""

    videos = 3

    def to_arrays(self):
        return {"stats_sum": np.arange(4.0), "rows": np.ones((3, 2), np.float16)}


FVD = get_protocol("fvd/stylegan-v")
KEY = "ab" * 32


def _restore(arrays, videos):
    return {"arrays": arrays, "videos": videos}


def _good_entry(notes=None) -> Path:
    return cache.save_reference(cache.Reference(KEY, _State(), [{"path": "x.mp4", "reason": "empty"}]), FVD,
                                notes=notes)


def _plant(kind: str, path: Path) -> None:
    good = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not a zip":
        path.write_bytes(b"not an npz at all\n" * 10)
    elif kind == "no meta":
        np.savez(path, stats_sum=np.zeros(4))
    elif kind == "other key":
        np.savez(path, stats_sum=np.zeros(4), meta=np.array(json.dumps({"key": "cd" * 32, "videos": 3,
                                                                        "failed": []})))
    elif kind == "tampered arrays":
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
        arrays["stats_sum"] = arrays["stats_sum"] + 1
        np.savez(path, **arrays)
    elif kind == "meta not JSON":
        np.savez(path, stats_sum=np.zeros(4), meta=np.array("{"))


@pytest.mark.parametrize("kind", ["truncated", "empty", "not a zip", "no meta", "other key", "tampered arrays",
                                  "meta not JSON"])
def test_an_unusable_entry_is_named_set_aside_and_missed(kind, caplog):
    path = _good_entry()
    assert cache.load_reference(KEY, FVD, _restore).state["videos"] == 3  # the clean entry hits
    _plant(kind, path)
    notes: list[str] = []
    with caplog.at_level(logging.WARNING, logger="benchmarks.cache"):
        assert cache.load_reference(KEY, FVD, _restore, notes=notes) is None
    assert len(notes) == 1 and str(path) in notes[0] and "recomputing" in notes[0] and str(path) in caplog.text
    aside = sorted(path.parent.glob(path.name + ".corrupt-*"))
    assert not path.exists() and len(aside) == 1 and aside[0].name in notes[0]
    assert _good_entry() == path and cache.load_reference(KEY, FVD, _restore) is not None  # cached again


def test_an_entry_whose_state_does_not_rebuild_is_set_aside():
    path = _good_entry()
    notes: list[str] = []

    def broken(arrays, videos):
        raise KeyError("root_factor")

    assert cache.load_reference(KEY, FVD, broken, notes=notes) is None
    assert "KeyError" in notes[0] and list(path.parent.glob(path.name + ".corrupt-*"))


def test_a_full_disk_skips_the_cache_and_leaves_no_partial_entry(monkeypatch):
    def full_disk(handle, **arrays):
        handle.write(b"PK\x03\x04" + bytes(200))
        raise _enospc()

    monkeypatch.setattr(np, "savez", full_disk)
    notes: list[str] = []
    assert _good_entry(notes) is None
    assert "not cached" in notes[0] and "disk is full" in notes[0]
    assert list(cache.stats_dir().iterdir()) == []  # neither the entry nor its temporary file


# ---------------------------------------------------------------------------------------------------------
# the reference-statistics cache, end to end


def _sets(root: Path) -> None:
    make_folder(root / "real", 2, 20, seed=0)  # two videos each: the fewest FVD scores (I3D time is most of a run)
    make_generated(root / "fake", 2, 16, seed=1)


def _evaluate(root: Path, **kw) -> dict:
    options = {"metrics": ("fvd",), "tiny_i3d": True, "bootstrap": 10, "workers": 0, "progress": False, **kw}
    return evaluate(EvalConfig(str(root / "real"), str(root / "fake"), **options))


@pytest.mark.slow
def test_truncated_and_empty_entries_are_recomputed_to_the_clean_result(tmp_path, caplog):
    _sets(tmp_path)
    clean = _evaluate(tmp_path)["metrics"]["fvd"]
    entry = Path(clean["reference_cache"]["path"])
    for kind in ("truncated", "empty"):
        _plant(kind, entry)
        with caplog.at_level(logging.WARNING, logger="benchmarks.cache"):
            again = _evaluate(tmp_path)["metrics"]["fvd"]
        assert str(entry) in caplog.text and "unusable" in caplog.text
        assert (again["value"], again["ci"], again["n_real"]) == (clean["value"], clean["ci"], clean["n_real"])
        assert not again["reference_cache"]["hit"] and str(entry) in again["reference_cache"]["warnings"][0]
        caplog.clear()
    assert len(list(entry.parent.glob(entry.name + ".corrupt-*"))) == 2
    hit = _evaluate(tmp_path)["metrics"]["fvd"]  # recomputed and cached again
    assert hit["reference_cache"]["hit"] and hit["reference_cache"]["warnings"] == []
    assert hit["value"] == clean["value"]


def test_a_full_disk_when_caching_still_writes_the_result(tmp_path, monkeypatch):
    _sets(tmp_path)
    monkeypatch.setattr(np, "savez", lambda handle, **arrays: (_ for _ in ()).throw(_enospc()))
    result = _evaluate(tmp_path, out=str(tmp_path / "out.json"))
    written = json.loads((tmp_path / "out.json").read_text())["metrics"]["fvd"]
    assert written["value"] == result["metrics"]["fvd"]["value"] is not None
    record = written["reference_cache"]
    assert record["path"] is None and not record["hit"] and "not cached" in record["warnings"][0]
    assert "disk is full" in record["warnings"][0]
    assert not cache.stats_dir().exists() or list(cache.stats_dir().iterdir()) == []


def test_a_real_full_disk_when_caching_still_writes_the_result(tmp_path, small_disk, monkeypatch, capsys):
    """The cache on a 64 KiB tmpfs: the FVD entry (~1.3 MB) cannot be written; the run still exits 0."""
    _sets(tmp_path)
    monkeypatch.setenv("OPHORA_CACHE", str(small_disk / "cache"))
    code = main(["--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--metrics", "fvd",
                 "--tiny-i3d", "--bootstrap", "0", "--workers", "0", "--quiet", "--out", str(tmp_path / "out.json")])
    assert code == 0
    record = json.loads((tmp_path / "out.json").read_text())["metrics"]["fvd"]["reference_cache"]
    assert record["path"] is None and "No space left on device" in record["warnings"][0]
    assert list((small_disk / "cache" / "stats").iterdir()) == []  # no partial entry left on the full disk
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# user errors: one line naming the file, exit 1


def _cli(root: Path, fake: Path, out: Path) -> list[str]:
    return ["--real", str(root / "real"), "--fake", str(fake), "--metrics", "fvd", "--tiny-i3d", "--bootstrap", "0",
            "--workers", "0", "--quiet", "--out", str(out)]


@pytest.mark.parametrize("content", ["", "\n\n", '{"path": "vid_00.mp4", "pro'], ids=["empty", "blank", "only torn"])
def test_an_empty_manifest_is_refused_naming_it(tmp_path, capsys, content):
    make_folder(tmp_path / "real", 2, 20)
    (tmp_path / "fake").mkdir()
    manifest = tmp_path / "fake" / "manifest.jsonl"
    manifest.write_text(content)
    torn = pytest.warns(UserWarning, match="torn last line") if "pro" in content else contextlib.nullcontext()
    with torn:
        assert main(_cli(tmp_path, tmp_path / "fake", tmp_path / "out.json")) == 2
    err = capsys.readouterr().err
    assert f"error: {manifest}: the fake set" in err and "lists no videos" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out.json").exists()
    with torn, pytest.raises(EvaluationInputError, match="lists no videos"):
        _evaluate(tmp_path)


def test_a_malformed_manifest_is_one_line_naming_file_and_line(tmp_path, capsys):
    make_folder(tmp_path / "real", 2, 20)
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "manifest.jsonl").write_text('{"path": "a.mp4"}\n{not json}\n')
    assert main(_cli(tmp_path, tmp_path / "fake", tmp_path / "out.json")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'fake' / 'manifest.jsonl'}, row 1 (line 1)") and "Traceback" not in err


def test_a_full_disk_when_writing_the_result_is_one_line(tmp_path, monkeypatch, capsys):
    """The run itself is mocked: whatever ``evaluate`` raises for a full disk (the result file, the cache
    folder, the temporary rows) reaches the command as an OSError."""
    out = tmp_path / "out.json"

    def full_disk(cfg):
        raise _enospc(cfg.out)

    monkeypatch.setattr("benchmarks.evaluate.evaluate", full_disk)
    assert main(_cli(tmp_path, tmp_path / "fake", out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: [Errno 28]") and str(out) in err[0]
    assert "the disk is full" in err[0] and not out.exists()


# ---------------------------------------------------------------------------------------------------------
# the generated-video manifest: appends are whole or absent


def _record(folder: Path, i: int, prompt: str = "phacoemulsification of the nucleus") -> GeneratedVideo:
    video = folder / f"vid_{i}.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    video.write_bytes(b"")  # check_file asks only that it exists
    return GeneratedVideo(video, prompt, i, "test", "0" * 8, {"fps": 8})


def _listed(folder: Path) -> list[str]:
    return [r.path.name for r in read_generated(folder)]


def test_appends_survive_one_byte_writes_and_eintr(tmp_path, monkeypatch):
    real_write, calls = os.write, []

    def one_byte_then_eintr(descriptor, data):
        calls.append(len(data))
        if len(calls) % 7 == 3:
            raise InterruptedError(errno.EINTR, "interrupted")
        return real_write(descriptor, bytes(data[:1]))

    monkeypatch.setattr(generated_manifest.os, "write", one_byte_then_eintr)
    for i in range(3):
        append_generated(tmp_path, _record(tmp_path, i))
    monkeypatch.undo()
    assert _listed(tmp_path) == ["vid_0.mp4", "vid_1.mp4", "vid_2.mp4"] and len(calls) > 100


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_failed_append_leaves_exactly_the_earlier_records(tmp_path, monkeypatch, where):
    append_generated(tmp_path, _record(tmp_path, 0))
    before = (tmp_path / "manifest.jsonl").read_bytes()
    real_write = os.write

    def short_then_full(descriptor, data):  # 10 bytes land, then the disk is full
        if len(data) > 10:
            return real_write(descriptor, bytes(data[:10]))
        raise _enospc()

    if where == "write":
        monkeypatch.setattr(generated_manifest.os, "write", short_then_full)
    else:
        monkeypatch.setattr(generated_manifest.os, "fsync", lambda descriptor: (_ for _ in ()).throw(_enospc()))
    with pytest.raises(OSError) as failure:
        append_generated(tmp_path, _record(tmp_path, 1))
    assert failure.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert (tmp_path / "manifest.jsonl").read_bytes() == before  # no torn line
    append_generated(tmp_path, _record(tmp_path, 2))
    append_generated(tmp_path, _record(tmp_path, 1))  # the failed one, again
    assert _listed(tmp_path) == ["vid_0.mp4", "vid_2.mp4", "vid_1.mp4"]


def test_a_real_full_disk_leaves_no_torn_line(small_disk):
    folder = small_disk / "generated"
    append_generated(folder, _record(folder, 0))
    before = (folder / "manifest.jsonl").read_bytes()
    filler = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte
        with pytest.raises(OSError) as full:
            while True:
                os.write(filler, bytes(1024))
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(filler)
    with pytest.raises(OSError) as failure:
        append_generated(folder, _record(folder, 1, prompt="x" * 20000))  # needs new pages
    assert failure.value.errno == errno.ENOSPC and (folder / "manifest.jsonl").read_bytes() == before
    (small_disk / "filler").unlink()
    append_generated(folder, _record(folder, 1, prompt="x" * 20000))
    append_generated(folder, _record(folder, 2))
    assert _listed(folder) == ["vid_0.mp4", "vid_1.mp4", "vid_2.mp4"]


def test_a_torn_trailing_line_is_reported_with_file_and_line(tmp_path):
    for i in range(2):
        append_generated(tmp_path, _record(tmp_path, i))
    with open(tmp_path / "manifest.jsonl", "ab") as handle:
        handle.write(b'{"path": "vid_2.mp4", "prompt": "irrig')  # a crash mid-append
    manifest = tmp_path / "manifest.jsonl"
    with pytest.warns(UserWarning, match=rf"{manifest}: ignoring torn last line 3 .* 2 record\(s\) read"):
        assert _listed(tmp_path) == ["vid_0.mp4", "vid_1.mp4"]
    with pytest.warns(UserWarning, match=rf"{manifest}: cutting off torn last line 3"):
        append_generated(tmp_path, _record(tmp_path, 2))
    assert _listed(tmp_path) == ["vid_0.mp4", "vid_1.mp4", "vid_2.mp4"]



def test_an_unreadable_table1_stage_record_is_set_aside_and_the_stage_rerun(tmp_path):
    from benchmarks.table1.stages import Table1Run

    lines: list[str] = []
    run = Table1Run(None, tmp_path / "stages", log=lines.append, progress=False)
    first = run.stage("world", "demo", {"seed": 0}, lambda folder: {"n": 1})
    done = first.folder / "done.json"
    done.write_text(done.read_text()[:20])  # truncated
    again = run.stage("world", "demo", {"seed": 0}, lambda folder: {"n": 2})
    assert not again.cached and again.record == {"n": 2} and any(
        line.startswith("[corrupt] world/demo") and str(done) in line for line in lines)
    assert len(list(first.folder.glob("done.json.corrupt-*"))) == 1
    assert run.stage("world", "demo", {"seed": 0}, lambda folder: {"n": 3}).record == {"n": 2}  # cached now


def test_a_set_whose_every_video_fails_exits_non_zero_with_the_reasons_written(tmp_path, capsys):
    make_folder(tmp_path / "real", 2, 20)
    make_folder(tmp_path / "fake", 2, 20)
    for video in (tmp_path / "fake").glob("*.mp4"):
        video.write_bytes(b"")  # every fake video is empty
    out = tmp_path / "out.json"
    assert main(_cli(tmp_path, tmp_path / "fake", out)) == 1
    err = capsys.readouterr().err
    assert "error: no metric could be computed: 2 input(s) failed" in err and "Traceback" not in err
    written = json.loads(out.read_text())
    assert written["metrics"]["fvd"]["value"] is None and len(written["failed"]) == 2
    assert all("empty" in f["reason"] for f in written["failed"])
