"""Faults in the data the suite reads and the weights it loads: huge or garbled manifests, repeated rows, swapped
weight files, and what the commands print about them."""
from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ophora import weights as W
from ophora.data import manifests
from ophora.data.manifests import ManifestError, read_csv_table
from ophora.data.manifests._common import _check_header, _write_csv
from ophora.generation import PromptFileError, read_prompts

ROOT = Path(__file__).resolve().parents[1]
MAX_MESSAGE = 2000  # characters: what any error message about a data file may run to
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

OPHNET_HEADER = "video_id,start,end,split,surgery_id,phase_id,operation_id\n"


def _wide_header(columns: int) -> str:
    return ",".join(f"column_{i:07d}" for i in range(columns)) + "\n"


def _short_error(call) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        call()
    assert len(str(info.value)) < MAX_MESSAGE, str(info.value)[:300]
    return info.value


# ---------------------------------------------------------------------------------------------------------
# Wide headers: linear time, short messages


def test_a_150000_column_header_is_refused_at_once_with_a_short_message(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(_wide_header(150_000) + "a,b\n")
    error = _short_error(lambda: manifests.read_instruction_set(path, check_files=False))
    assert error.line == 1 and str(path) in str(error)
    assert "missing required column(s) ['clip id', 'instruction']" in str(error)
    assert "'column_0000000'" in str(error) and "and 149,992 more" in str(error)


def test_a_header_repeating_every_column_is_refused_with_a_short_message(tmp_path):
    path = tmp_path / "twice.csv"
    names = [f"c{i}" for i in range(50_000)]
    path.write_text(",".join(names + names) + "\n")
    error = _short_error(lambda: read_csv_table(path, ["c0"]))
    assert "header repeats column(s) ['c0', 'c1'" in str(error) and "and 49,992 more" in str(error)


def test_a_row_wider_than_a_wide_header_is_refused_with_a_short_message(tmp_path):
    path = tmp_path / "wide_row.csv"
    path.write_text("clip id,instruction\n" + ",".join(["x" * 1000] * 5_000) + "\n")
    error = _short_error(lambda: manifests.read_instruction_set(path, check_files=False))
    assert (error.row, error.line) == (1, 2) and "found 5000" in str(error) and "and 4,992 more" in str(error)


def test_a_long_cell_is_quoted_shortened(tmp_path):
    path = tmp_path / "long_cell.csv"
    path.write_text(OPHNET_HEADER + "v,0,1,train,1,2," + "9" * 100_000 + "\n")
    error = _short_error(lambda: manifests.read_ophnet_csv(path))
    assert (error.line, error.field) == (2, "operation_id") and "100,002 characters" in str(error)


_READ_WIDE_HEADER = """
import sys
from ophora.data import manifests
try:
    manifests.read_instruction_set(sys.argv[1], check_files=False)
except manifests.ManifestError as error:
    print(len(str(error)))
"""


def test_a_3_mb_header_finishes_in_a_fresh_process(tmp_path):
    """Reading was quadratic in the header's width (a 3 MB header did not finish in 9 CPU-minutes); the bound
    here is generous (60 s, the child's imports included) so that a loaded machine does not fail it."""
    path = tmp_path / "wide.csv"
    path.write_text(_wide_header(300_000))
    assert path.stat().st_size > 3_000_000
    done = subprocess.run([sys.executable, "-c", _READ_WIDE_HEADER, str(path)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 0 < int(done.stdout) < MAX_MESSAGE


def test_header_checks_scale_linearly(tmp_path):
    """Counted, not timed: the header checks compare each column name a bounded number of times."""
    compared = []

    class Name(str):
        __hash__ = str.__hash__

        def __eq__(self, other):
            compared.append(1)
            return str.__eq__(self, other)

    def checks(columns: int) -> int:
        compared.clear()
        table = manifests.CsvTable(tmp_path / "t.csv", [Name(f"c{i}") for i in range(columns)], [], [])
        with pytest.raises(ManifestError):
            _check_header(table, ["clip id"], {})
        return len(compared)

    assert checks(20_000) <= 2 * checks(10_000) + 10


# ---------------------------------------------------------------------------------------------------------
# Property tests: well-formed tables round-trip, garbage gives ManifestError with file and line

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff"), max_size=12)
_names = st.lists(_text.filter(lambda s: s.strip() != ""), min_size=2, max_size=6, unique=True)


@st.composite
def _tables(draw):
    header = draw(_names)
    rows = draw(st.lists(st.lists(_text, min_size=len(header), max_size=len(header)), max_size=8))
    return header, [row for row in rows if any(row)]  # an all-empty row is a blank line, which readers skip


@PROPERTY
@given(table=_tables())
def test_written_tables_read_back_exactly(tmp_path, table):
    header, rows = table
    path = _write_csv(tmp_path / "t.csv", header, rows)
    read = read_csv_table(path, header)
    assert (read.header, read.rows) == (header, rows)
    assert read.lines == sorted(read.lines) and all(line >= 2 for line in read.lines)


@PROPERTY
@given(captions=st.lists(_text.filter(lambda s: s.strip() != ""), min_size=1, max_size=6),
       starts=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=6, max_size=6))
def test_raw_sets_round_trip(tmp_path, captions, starts):
    clips = [manifests.RawClip(f"clip{i}", caption, "source.mp4", start, start + 1.5, tmp_path / f"c{i}.mp4")
             for i, (caption, start) in enumerate(zip(captions, starts))]
    manifests.write_raw_set(tmp_path / "raw.csv", clips)
    assert manifests.read_raw_set(tmp_path / "raw.csv", check_files=False) == clips


@PROPERTY
@given(labels=st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)), min_size=1, max_size=6,
                       unique=True))
def test_ophnet_frames_round_trip(tmp_path, labels):
    frame = pd.DataFrame({"video_id": [f"case_{i}" for i in range(len(labels))], "start": 0.0, "end": 2.5,
                          "split": "train", "surgery_id": [a for a, _ in labels], "phase_id": [b for _, b in labels]})
    manifests.write_ophnet_csv(tmp_path / "o.csv", frame)
    read = manifests.read_ophnet_csv(tmp_path / "o.csv")
    assert read[["surgery_id", "phase_id"]].to_numpy().tolist() == [list(pair) for pair in labels]


def _only_manifest_errors(path: Path, read) -> None:
    """``read()`` returns, or raises a ManifestError naming ``path`` and a line, in a message of bounded length."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a torn last JSONL line is skipped with a warning
            read()
    except ManifestError as error:
        assert error.line is not None and f"line {error.line}" in str(error), str(error)
        assert str(path) in str(error) and len(str(error)) < MAX_MESSAGE


_cells = st.one_of(_text, st.sampled_from(["", "train", "val", "nan", "inf", "-1", "1e999", "9" * 40, "٣",
                                           "../x.mp4", "/etc/x", "a\x00b", "\"", "x\"y", "\r", "\n"]),
                   st.integers(-(2**70), 2**70).map(str))


@st.composite
def _near_csv(draw, header: str) -> bytes:
    """A CSV that starts well-formed (``header``, then rows of plausible and odd cells) and may then be cut,
    garbled with random bytes, or given a byte-order mark."""
    columns = header.count(",") + 1
    rows = draw(st.lists(st.lists(_cells, min_size=columns - 1, max_size=columns + 1), max_size=5))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"]))).writerows(rows)
    data = (header + buffer.getvalue()).encode()
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=20)) + data[at + draw(st.integers(0, 5)):]
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + data


_CSV_READERS = {
    "instructions": ("clip id,instruction\n", lambda p: manifests.read_instruction_set(p, check_files=False)),
    "raw": ("clip_id,caption,source_video,start,end,path\n", lambda p: manifests.read_raw_set(p, check_files=True)),
    "ophnet": (OPHNET_HEADER.replace("\n", ",segment_path\n"), lambda p: manifests.read_ophnet_csv(p)),
}


@pytest.mark.parametrize("kind", sorted(_CSV_READERS))
@PROPERTY
@given(data=st.data())
def test_garbled_csv_gives_a_manifest_error_with_file_and_line(tmp_path, kind, data):
    header, read = _CSV_READERS[kind]
    path = tmp_path / f"{kind}.csv"
    path.write_bytes(data.draw(st.one_of(_near_csv(header), st.binary(max_size=200))))
    _only_manifest_errors(path, lambda: read(path))


_GOOD_RECORD = b'{"path": "v.mp4", "prompt": "p", "seed": 1, "generator": "g", "checkpoint_hash": "h", "settings": {}}'
_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | _text,
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                            max_leaves=8)


@st.composite
def _near_jsonl(draw) -> bytes:
    import json

    lines = []
    for n in range(draw(st.integers(0, 4))):
        record = {"path": f"v{n}.mp4", "prompt": "p", "seed": 1, "generator": "g", "checkpoint_hash": "h",
                  "settings": {}}
        if draw(st.booleans()):
            record[draw(st.sampled_from(sorted(record)))] = draw(_json_values)
        lines.append(json.dumps(record, allow_nan=True).encode())
    lines.append(draw(st.sampled_from([b"", b"[1, 2]", b"NaN", b"{", b'"x"', b"\xff\xfe", _GOOD_RECORD])))
    data = b"\n".join(lines)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=20)) + data[at:]
    return data


@PROPERTY
@given(data=st.data())
def test_garbled_jsonl_gives_a_manifest_error_with_file_and_line(tmp_path, data):
    folder = tmp_path / "generated"
    folder.mkdir(exist_ok=True)
    manifest = folder / manifests.MANIFEST_NAME
    manifest.write_bytes(data.draw(st.one_of(_near_jsonl(), st.binary(max_size=200))))
    _only_manifest_errors(manifest, lambda: manifests.read_generated(folder, check_files=False))


def test_deeply_nested_jsonl_gives_a_manifest_error(tmp_path):
    nested = b"[" * 100_000 + b"]" * 100_000
    (tmp_path / manifests.MANIFEST_NAME).write_bytes(_GOOD_RECORD[:-3] + nested + b"}\n")
    _only_manifest_errors(tmp_path / manifests.MANIFEST_NAME,
                          lambda: manifests.read_generated(tmp_path, check_files=False))


@PROPERTY
@given(prompts=st.binary(max_size=80), videos=st.binary(max_size=80))
def test_garbled_cogvideox_lists_give_a_manifest_error(tmp_path, prompts, videos):
    (tmp_path / "prompts.txt").write_bytes(prompts)
    (tmp_path / "videos.txt").write_bytes(videos)
    try:
        manifests.read_cogvideox_set(tmp_path, check_files=False)
    except ManifestError as error:
        assert len(str(error)) < MAX_MESSAGE and str(tmp_path) in str(error)
        if error.line is None:  # the two files disagree in length: both are named, with their counts
            assert "prompts.txt has" in str(error) and "but videos.txt has" in str(error)
        else:
            assert f"line {error.line}" in str(error)


def test_undecodable_bytes_are_named_by_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"\xef\xbb\xbfclip id,instruction\r\na,ok\r\nb,caf\xe9\r\n")
    error = _short_error(lambda: manifests.read_instruction_set(path, check_files=False))
    assert error.line == 3 and "expected UTF-8" in str(error) and "at byte 35" in str(error)


# ---------------------------------------------------------------------------------------------------------
# OphNet rows


def test_a_repeated_ophnet_row_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "ophnet.csv"
    path.write_text(OPHNET_HEADER + "case_1,0,10,train,5,3,2\ncase_1,10,20,train,5,3,2\ncase_1,0,10,train,5,3,2\n")
    error = _short_error(lambda: manifests.read_ophnet_csv(path))
    assert (error.row, error.line) == (3, 4) and "repeats row 1 (line 2)" in str(error)


def test_load_clips_refuses_a_repeated_row(tmp_path):
    from downstream.ophnet import ClipSource, load_clips

    path = tmp_path / "ophnet.csv"
    path.write_text(OPHNET_HEADER + "case_1,0,10,train,5,3,2\ncase_1,0,10,train,5,3,2\n")
    with pytest.raises(ManifestError, match=r"row 2 \(line 3\).*repeats row 1 \(line 2\)"):
        load_clips(ClipSource(path, "phase"))


@pytest.mark.parametrize("label", [str(2**63), "9" * 5000, str(2**31)])
def test_a_huge_class_id_is_refused_naming_file_line_and_column(tmp_path, label):
    path = tmp_path / "ophnet.csv"
    path.write_text(OPHNET_HEADER + "case_1,0,10,train,5,3,2\ncase_2,0,10,val,5," + label + ",2\n")
    error = _short_error(lambda: manifests.read_ophnet_csv(path))
    assert (error.line, error.field) == (3, "phase_id") and str(path) in str(error)
    assert "larger than 2,147,483,647" in str(error)


def test_the_largest_class_id_is_read(tmp_path):
    path = tmp_path / "ophnet.csv"
    path.write_text(OPHNET_HEADER + f"case_1,0,10,train,5,00{2**31 - 1},2\n")
    assert manifests.read_ophnet_csv(path)["phase_id"].tolist() == [2**31 - 1]


# ---------------------------------------------------------------------------------------------------------
# Weights: swapped files are caught; commands print one line


@pytest.fixture
def fake_weights(tmp_path, monkeypatch):
    """A registered fake entry, its verified file, and a private cache dir."""
    payload = b"ophora fake detector weights\n" * 100
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPHORA_WEIGHTS_DIR", raising=False)
    entry = W.WeightsEntry(name="fake-detector", file="fake.bin", url="https://example.invalid/fake.bin",
                           loader="state_dict", license="test", sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(W.REGISTRY, entry.name, entry)
    path = tmp_path / "fake.bin"
    path.write_bytes(payload)
    return entry, path


def _swap_keeping_size_and_mtime(path: Path) -> str:
    """Overwrite ``path`` in place (same inode) with other bytes of the same size, restore its mtime; return the
    new sha256."""
    stat = path.stat()
    forged = bytes(b ^ 1 for b in path.read_bytes())
    with open(path, "r+b") as handle:
        handle.write(forged)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return hashlib.sha256(forged).hexdigest()


def test_a_swapped_file_with_its_mtime_restored_fails_in_a_new_process(fake_weights, monkeypatch):
    entry, path = fake_weights
    W.verify(path, entry)
    forged = _swap_keeping_size_and_mtime(path)
    monkeypatch.setattr(W, "_HASHED", {})  # what the next process starts with
    with pytest.raises(W.ChecksumMismatchError) as info:
        W.verify(path, entry)
    message = str(info.value)
    assert str(path) in message and entry.sha256 in message and forged in message and "\n" not in message


def test_a_swapped_file_with_its_mtime_restored_fails_in_the_same_process(fake_weights):
    """The in-process memo is keyed on ctime too, which writing and ``os.utime`` both move (to the clock's
    coarse tick, hence the pause)."""
    entry, path = fake_weights
    W.verify(path, entry)
    time.sleep(0.05)
    forged = _swap_keeping_size_and_mtime(path)
    with pytest.raises(W.ChecksumMismatchError, match=forged):
        W.verify(path, entry)


_VERIFY = """
import hashlib, sys
from ophora import weights as W
W.register(W.WeightsEntry(name="fake-detector", file="fake.bin", url="", loader="state_dict", license="test",
                          sha256=sys.argv[2]))
try:
    W.verify(sys.argv[1], "fake-detector")
except W.ChecksumMismatchError as error:
    print(error)
    sys.exit(3)
"""


@pytest.mark.slow
def test_a_swap_between_two_processes_is_caught(fake_weights):
    entry, path = fake_weights
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def verify_in_a_new_process() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _VERIFY, str(path), entry.sha256], capture_output=True,
                              text=True, timeout=120, env=env, cwd=ROOT)

    assert verify_in_a_new_process().returncode == 0
    forged = _swap_keeping_size_and_mtime(path)
    done = verify_in_a_new_process()
    assert done.returncode == 3, done.stderr[-2000:]
    assert str(path) in done.stdout and entry.sha256 in done.stdout and forged in done.stdout


def test_weights_command_reports_a_checksum_mismatch_in_one_line(fake_weights, monkeypatch, capsys):
    entry, path = fake_weights
    _swap_keeping_size_and_mtime(path)
    monkeypatch.setattr(W, "_HASHED", {})
    monkeypatch.setenv("OPHORA_WEIGHTS_DIR", str(path.parent))
    assert W.main(["where", entry.name]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: checksum mismatch") and err.count("\n") == 1
    assert entry.sha256 in err and str(path) in err


def test_weights_command_reports_a_malformed_url_in_one_line(fake_weights, capsys, tmp_path):
    entry, _ = fake_weights
    assert W.main(["fetch", entry.name, "--dest", str(tmp_path / "dest"), "--url", "not a url"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a url" in err and err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ophora.weights", "benchmarks.weights"])
def test_weights_commands_print_one_line_and_no_traceback(tmp_path, command):
    entry = W.get_entry("pytorch-fid-inception")
    (tmp_path / entry.file).write_bytes(b"not the inception weights")
    env = {**os.environ, "OPHORA_WEIGHTS_DIR": str(tmp_path), "OPHORA_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", command, "where", entry.name], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: checksum mismatch") and entry.sha256 in done.stderr


# -- prompt files (ophora.generation.prompts) -------------------------------------------------------------------


def test_a_wide_prompt_csv_is_refused_with_a_short_message(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text(_wide_header(150_000) + ",".join(["x"] * 150_000) + "\n")
    with pytest.raises(PromptFileError, match="no prompt column") as info:
        read_prompts(path)
    assert "and 149,992 more" in str(info.value) and len(str(info.value)) < MAX_MESSAGE


@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_undecodable_prompt_files_are_named_by_line(tmp_path, suffix):
    path = tmp_path / f"prompts{suffix}"
    path.write_bytes(b"instruction\nfirst prompt\nsecond \xff prompt\n")
    with pytest.raises(PromptFileError, match=r"line 3") as info:
        read_prompts(path)
    assert str(path) in str(info.value) and "UTF-8" in str(info.value)


def test_a_prompt_csv_row_with_a_missing_field_is_refused_with_its_line(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("clip id,instruction\nc0,first prompt\nc1\n")
    with pytest.raises(PromptFileError, match=r"line 3"):
        read_prompts(path)
    path.write_text("clip id,instruction\nc0,first prompt\n\nc1,second\n")
    assert [p.text for p in read_prompts(path)] == ["first prompt", "second"]
    assert read_prompts(path)[1].source == {"clip id": "c1"}


def test_an_instruction_set_clip_id_with_white_space_around_it_is_refused_with_its_row(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "set.csv").write_text("clip id,instruction\nc0,first\n c0,second\n")
    error = _short_error(lambda: manifests.read_instruction_set(tmp_path / "set.csv", check_files=False))
    assert error.line == 3 and error.field == "clip id" and "white space around it" in str(error)
