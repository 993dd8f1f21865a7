"""Tests for ophora.data.manifests: round trips, every validation error, and the real OphNet2024 counts."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from ophora.data.manifests import (
    OPHNET2024_DIR,
    OPHNET2024_FILES,
    CogVideoXItem,
    GeneratedVideo,
    InstructionClip,
    ManifestError,
    RawClip,
    append_generated,
    bundled_ophnet_csv,
    class_counts,
    read_cogvideox_set,
    read_generated,
    read_instruction_set,
    read_ophnet_csv,
    read_raw_set,
    split_counts,
    write_cogvideox_set,
    write_generated,
    write_instruction_set,
    write_ophnet_csv,
    write_raw_set,
)

OPHNET_DIR = OPHNET2024_DIR  # the real OphNet2024 CSVs, shipped as package data (ophora/data/ophnet2024/)

# Text that breaks naive CSV handling: delimiters, quotes, line breaks of every kind, padding, NA-like values.
AWKWARD_TEXTS = [
    "phacoemulsification, then irrigation/aspiration",
    'the surgeon says "careful" here',
    "first line\nsecond line",
    "windows\r\nline end",
    "lone\rcarriage return",
    "  leading and trailing spaces  ",
    "ünïcödé ✓ 白内障 — em dash",
    "NA",
    "null",
    '""',
    "#not a comment",
    "tab\tinside",
    "0002",
]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00")
    return path


def write_raw_text(path: Path, text: str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def assert_location(error: ManifestError, row: int | None, line: int | None, field: str | None) -> None:
    """The exception attributes AND its message point at the same place."""
    assert (error.row, error.line, error.field) == (row, line, field)
    message = str(error)
    if row is not None:
        assert f"row {row}" + (f" (line {line})" if line is not None else "") in message
    elif line is not None:
        assert f"line {line}" in message
    if field is not None:
        assert f"'{field}'" in message


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp" in p.name]


# ---------------------------------------------------------------------------------------------------------
# ManifestError
# ---------------------------------------------------------------------------------------------------------


def test_manifest_error_is_value_error_with_readable_message():
    error = ManifestError("/x/train.csv", "end (3.2) must be greater than start (5.0)", row=17, line=18,
                          field="end")
    assert isinstance(error, ValueError)
    assert str(error) == "/x/train.csv, row 17 (line 18), column 'end': end (3.2) must be greater than start (5.0)"
    assert error.path == Path("/x/train.csv")


# ---------------------------------------------------------------------------------------------------------
# 1. Ophora-160K instruction set
# ---------------------------------------------------------------------------------------------------------


def make_instruction_set(root: Path, rows: list[tuple[str, str]], files: bool = True) -> list[InstructionClip]:
    clips = [InstructionClip(cid, text, root / "clips" / f"{cid}.mp4") for cid, text in rows]
    if files:
        for clip in clips:
            touch(clip.path)
    return clips


def test_instruction_set_round_trip_is_exact_for_awkward_text(tmp_path):
    rows = [(f"X3jTUYMflCk_{i}", text) for i, text in enumerate(AWKWARD_TEXTS)] + [("0002", "id of digits")]
    clips = make_instruction_set(tmp_path, rows)
    csv_path = write_instruction_set(tmp_path / "ophora160k.csv", clips)
    assert csv_path.read_bytes().startswith(b"clip id,instruction\r\n")
    back = read_instruction_set(tmp_path / "ophora160k.csv")
    assert back == clips
    assert all(clip.path.is_absolute() for clip in back)
    assert no_temp_files(tmp_path)


def test_instruction_set_reads_released_layout_with_bom_and_lf(tmp_path):
    write_raw_text(tmp_path / "Ophora-160K.csv", 'clip id,instruction\nabc_1,"Insert the lens, gently."\n', bom=True)
    touch(tmp_path / "clips" / "abc_1.mp4")
    (clip,) = read_instruction_set(tmp_path / "Ophora-160K.csv")
    assert clip == InstructionClip("abc_1", "Insert the lens, gently.", tmp_path / "clips" / "abc_1.mp4")


def test_instruction_set_root_can_differ_from_csv_folder(tmp_path):
    clips = make_instruction_set(tmp_path / "data", [("a_1", "x")])
    write_instruction_set(tmp_path / "meta" / "set.csv", clips, root=tmp_path / "data")
    assert read_instruction_set(tmp_path / "meta" / "set.csv", root=tmp_path / "data") == clips
    with pytest.raises(ManifestError, match="clip file not found"):
        read_instruction_set(tmp_path / "meta" / "set.csv")  # default root is the CSV folder


def test_instruction_set_missing_column_names_missing_and_found(tmp_path):
    write_raw_text(tmp_path / "set.csv", "clip_id,instruction\na,b\n")
    with pytest.raises(ManifestError) as info:
        read_instruction_set(tmp_path / "set.csv", check_files=False)
    message = str(info.value)
    assert "missing required column(s) ['clip id']" in message
    assert "found columns ['clip_id', 'instruction']" in message
    assert "'clip_id' should be spelled 'clip id'" in message
    assert info.value.line == 1


def test_instruction_set_duplicate_id_names_both_rows(tmp_path):
    write_raw_text(tmp_path / "set.csv", "clip id,instruction\na,x\nb,y\na,z\n")
    with pytest.raises(ManifestError) as info:
        read_instruction_set(tmp_path / "set.csv", check_files=False)
    assert_location(info.value, row=3, line=4, field="clip id")
    assert "row 1 (line 2)" in str(info.value)


@pytest.mark.parametrize("instruction", ["", "   ", "\t"])
def test_instruction_set_rejects_empty_instruction(tmp_path, instruction):
    write_raw_text(tmp_path / "set.csv", f'clip id,instruction\na,x\nb,"{instruction}"\n')
    with pytest.raises(ManifestError) as info:
        read_instruction_set(tmp_path / "set.csv", check_files=False)
    assert_location(info.value, row=2, line=3, field="instruction")


def test_instruction_set_line_numbers_count_embedded_newlines(tmp_path):
    write_raw_text(tmp_path / "set.csv", 'clip id,instruction\na,"one\ntwo\nthree"\n\nb,""\n')
    with pytest.raises(ManifestError) as info:
        read_instruction_set(tmp_path / "set.csv", check_files=False)
    assert_location(info.value, row=2, line=6, field="instruction")


@pytest.mark.parametrize("clip_id", ["..", ".", "../evil", "/etc/passwd", "sub/clip", "back\\slash", " "])
def test_instruction_set_rejects_ids_that_escape_clips_folder(tmp_path, clip_id):
    write_raw_text(tmp_path / "set.csv", f'clip id,instruction\nok,x\n"{clip_id}",y\n')
    with pytest.raises(ManifestError) as info:
        read_instruction_set(tmp_path / "set.csv", check_files=False)
    assert_location(info.value, row=2, line=3, field="clip id")


def test_instruction_set_missing_clip_gives_expected_path(tmp_path):
    make_instruction_set(tmp_path, [("a", "x")])
    write_raw_text(tmp_path / "set.csv", "clip id,instruction\na,x\nb,y\n")
    with pytest.raises(ManifestError) as info:
        read_instruction_set(tmp_path / "set.csv")
    assert_location(info.value, row=2, line=3, field="clip id")
    assert str(tmp_path / "clips" / "b.mp4") in str(info.value)
    assert len(read_instruction_set(tmp_path / "set.csv", check_files=False)) == 2


@pytest.mark.parametrize("line", ["a,x,extra", "a"])
def test_instruction_set_rejects_wrong_field_count(tmp_path, line):
    write_raw_text(tmp_path / "set.csv", f"clip id,instruction\nb,y\n{line}\n")
    with pytest.raises(ManifestError, match="expected 2 fields") as info:
        read_instruction_set(tmp_path / "set.csv", check_files=False)
    assert (info.value.row, info.value.line) == (2, 3)


def test_instruction_set_rejects_malformed_quoting_and_empty_file(tmp_path):
    write_raw_text(tmp_path / "bad.csv", 'clip id,instruction\na,"unterminated\n')
    with pytest.raises(ManifestError, match="malformed CSV"):
        read_instruction_set(tmp_path / "bad.csv", check_files=False)
    write_raw_text(tmp_path / "empty.csv", "")
    with pytest.raises(ManifestError, match="empty"):
        read_instruction_set(tmp_path / "empty.csv", check_files=False)
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        read_instruction_set(tmp_path / "absent.csv")


def test_write_instruction_set_validates_before_writing(tmp_path):
    good = make_instruction_set(tmp_path, [("a", "x")], files=False)
    write_instruction_set(tmp_path / "set.csv", good)
    before = (tmp_path / "set.csv").read_bytes()
    bad_sets = {
        "duplicate": good + good,
        "empty": [InstructionClip("b", " ", tmp_path / "clips" / "b.mp4")],
        "escape": [InstructionClip("../b", "x", tmp_path / "b.mp4")],
        "path": [InstructionClip("b", "x", tmp_path / "elsewhere" / "b.mp4")],
    }
    for name, clips in bad_sets.items():
        with pytest.raises(ManifestError) as info:
            write_instruction_set(tmp_path / "set.csv", clips)
        assert info.value.row is not None, name
    assert (tmp_path / "set.csv").read_bytes() == before
    assert no_temp_files(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# 2. Raw narrated set
# ---------------------------------------------------------------------------------------------------------

RAW_HEADER = "clip_id,caption,source_video,start,end,path\n"


def raw_csv(tmp_path: Path, *lines: str, bom: bool = False) -> Path:
    return write_raw_text(tmp_path / "raw.csv", RAW_HEADER + "".join(line + "\n" for line in lines), bom=bom)


def test_raw_set_round_trip_is_exact(tmp_path):
    clips = [
        RawClip(f"vid_{i}", text, "youtube:abc", start, start + 5.54, tmp_path / "clips" / f"vid_{i}.mp4")
        for i, (text, start) in enumerate(zip(AWKWARD_TEXTS, [0.0, 0.1 + 0.2, 1e-3, 12.0, 3599.999] * 3))
    ]
    for clip in clips:
        touch(clip.path)
    write_raw_set(tmp_path / "raw.csv", clips)
    back = read_raw_set(tmp_path / "raw.csv")
    assert back == clips  # floats compare exactly
    assert "clips/vid_0.mp4" in (tmp_path / "raw.csv").read_text(encoding="utf-8")


def test_raw_set_reads_bom_and_keeps_text_ids(tmp_path):
    raw_csv(tmp_path, "0002,NA,case_0002,0,5,clips/0002.mp4", bom=True)
    (clip,) = read_raw_set(tmp_path / "raw.csv", check_files=False)
    assert ((clip.clip_id, clip.caption, clip.source_video, clip.start, clip.end)
            == ("0002", "NA", "case_0002", 0.0, 5.0))
    assert clip.path == tmp_path / "clips" / "0002.mp4"


def test_raw_set_missing_columns(tmp_path):
    write_raw_text(tmp_path / "raw.csv", "clip_id,caption,start,end\na,b,0,1\n")
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['source_video', 'path'\]") as info:
        read_raw_set(tmp_path / "raw.csv", check_files=False)
    assert "found columns ['clip_id', 'caption', 'start', 'end']" in str(info.value)


def test_raw_set_duplicate_ids(tmp_path):
    raw_csv(tmp_path, "a,x,v,0,1,clips/a.mp4", "a,y,v,1,2,clips/b.mp4")
    with pytest.raises(ManifestError, match=r"row 1 \(line 2\)") as info:
        read_raw_set(tmp_path / "raw.csv", check_files=False)
    assert_location(info.value, row=2, line=3, field="clip_id")


def test_raw_set_empty_caption_rejected_unless_allowed(tmp_path):
    raw_csv(tmp_path, "a,x,v,0,1,clips/a.mp4", "b,,v,0,1,clips/b.mp4")
    with pytest.raises(ManifestError, match="allow_empty_captions") as info:
        read_raw_set(tmp_path / "raw.csv", check_files=False)
    assert_location(info.value, row=2, line=3, field="caption")
    clips = read_raw_set(tmp_path / "raw.csv", check_files=False, allow_empty_captions=True)
    assert [clip.caption for clip in clips] == ["x", ""]


@pytest.mark.parametrize(
    "start,end,field,message",
    [
        ("abc", "1", "start", "expected a number of seconds, found 'abc'"),
        ("0", "", "end", "expected a number of seconds, found ''"),
        ("0", "nan", "end", "finite"),
        ("inf", "1", "start", "finite"),
        ("5.0", "3.2", "end", "end (3.2) must be greater than start (5.0)"),
        ("2", "2", "end", "end (2.0) must be greater than start (2.0)"),
        ("-0.5", "1", "start", "start (-0.5) must be >= 0"),
    ],
)
def test_raw_set_rejects_bad_times(tmp_path, start, end, field, message):
    raw_csv(tmp_path, "a,x,v,0,1,clips/a.mp4", f"b,y,v,{start},{end},clips/b.mp4")
    with pytest.raises(ManifestError) as info:
        read_raw_set(tmp_path / "raw.csv", check_files=False)
    assert_location(info.value, row=2, line=3, field=field)
    assert message in str(info.value)


def test_raw_set_error_message_matches_documented_form(tmp_path):
    raw_csv(tmp_path, "b,y,v,5.0,3.2,clips/b.mp4")
    with pytest.raises(ManifestError) as info:
        read_raw_set(tmp_path / "raw.csv", check_files=False)
    assert str(info.value) == (f"{tmp_path / 'raw.csv'}, row 1 (line 2), column 'end': "
                               "end (3.2) must be greater than start (5.0)")


@pytest.mark.parametrize("path", ["../outside.mp4", "clips/../../outside.mp4", "/etc/passwd", "", ".", "C:/x.mp4"])
def test_raw_set_rejects_paths_outside_root(tmp_path, path):
    raw_csv(tmp_path / "ds", "a,x,v,0,1,clips/a.mp4", f"b,y,v,0,1,{path}")
    touch(tmp_path / "outside.mp4")
    with pytest.raises(ManifestError) as info:
        read_raw_set(tmp_path / "ds" / "raw.csv", check_files=False)
    assert_location(info.value, row=2, line=3, field="path")


def test_raw_set_accepts_inner_dotdot_that_stays_inside(tmp_path):
    raw_csv(tmp_path, "a,x,v,0,1,clips/sub/../a.mp4")
    touch(tmp_path / "clips" / "a.mp4")
    (clip,) = read_raw_set(tmp_path / "raw.csv")
    assert clip.path == tmp_path / "clips" / "a.mp4"


def test_raw_set_missing_file_gives_expected_path(tmp_path):
    raw_csv(tmp_path, "a,x,v,0,1,clips/a.mp4")
    with pytest.raises(ManifestError) as info:
        read_raw_set(tmp_path / "raw.csv")
    assert_location(info.value, row=1, line=2, field="path")
    assert str(tmp_path / "clips" / "a.mp4") in str(info.value)


def test_write_raw_set_rejects_bad_records(tmp_path):
    ok = RawClip("a", "x", "v", 0.0, 1.0, tmp_path / "clips" / "a.mp4")
    cases = {
        "path": RawClip("b", "x", "v", 0.0, 1.0, tmp_path.parent / "b.mp4"),
        "end": RawClip("b", "x", "v", 2.0, 1.0, tmp_path / "b.mp4"),
        "start": RawClip("b", "x", "v", -1.0, 1.0, tmp_path / "b.mp4"),
        "clip_id": RawClip("a", "y", "v", 0.0, 1.0, tmp_path / "c.mp4"),
    }
    for field, clip in cases.items():
        with pytest.raises(ManifestError) as info:
            write_raw_set(tmp_path / "raw.csv", [ok, clip])
        assert_location(info.value, row=2, line=None, field=field)
    assert not (tmp_path / "raw.csv").exists()


# ---------------------------------------------------------------------------------------------------------
# 3. CogVideoX layout
# ---------------------------------------------------------------------------------------------------------


def test_cogvideox_round_trip(tmp_path):
    prompts = ['Phaco, "divide and conquer" ✓', "NA", "  capsulorhexis  "]
    items = [CogVideoXItem(prompt, touch(tmp_path / "videos" / f"{i}.mp4")) for i, prompt in enumerate(prompts)]
    items.append(("tuple input works", Path("videos/sub/3.mp4")))
    touch(tmp_path / "videos" / "sub" / "3.mp4")
    write_cogvideox_set(tmp_path, items)
    assert (tmp_path / "videos.txt").read_text().splitlines()[-1] == "videos/sub/3.mp4"
    back = read_cogvideox_set(tmp_path)
    assert [item.prompt for item in back] == prompts + ["tuple input works"]
    assert [item.path for item in back] == [tmp_path / "videos" / f"{i}.mp4" for i in range(3)] + [
        tmp_path / "videos" / "sub" / "3.mp4"
    ]
    prompt, path = back[0]
    assert path.is_absolute() and prompt == prompts[0]
    assert no_temp_files(tmp_path)


def test_cogvideox_reads_crlf_bom_and_missing_final_newline(tmp_path):
    write_raw_text(tmp_path / "prompts.txt", "first\r\nsecond", bom=True)
    write_raw_text(tmp_path / "videos.txt", "a.mp4\r\nb.mp4\r\n")
    items = read_cogvideox_set(tmp_path, check_files=False)
    assert items == [("first", tmp_path / "a.mp4"), ("second", tmp_path / "b.mp4")]


def test_cogvideox_count_mismatch_names_both_counts(tmp_path):
    write_raw_text(tmp_path / "prompts.txt", "a\nb\nc\n")
    write_raw_text(tmp_path / "videos.txt", "a.mp4\nb.mp4\n")
    with pytest.raises(ManifestError, match="prompts.txt has 3 lines but videos.txt has 2"):
        read_cogvideox_set(tmp_path, check_files=False)


def test_cogvideox_empty_prompt_line_is_named(tmp_path):
    write_raw_text(tmp_path / "prompts.txt", "a\n  \nc\n")
    write_raw_text(tmp_path / "videos.txt", "a.mp4\nb.mp4\nc.mp4\n")
    with pytest.raises(ManifestError) as info:
        read_cogvideox_set(tmp_path, check_files=False)
    assert info.value.path == tmp_path / "prompts.txt"
    assert_location(info.value, row=2, line=2, field="prompt")


@pytest.mark.parametrize("video", ["../x.mp4", "/abs/x.mp4", "a/../../x.mp4"])
def test_cogvideox_rejects_escaping_video(tmp_path, video):
    write_raw_text(tmp_path / "prompts.txt", "a\nb\n")
    write_raw_text(tmp_path / "videos.txt", f"a.mp4\n{video}\n")
    with pytest.raises(ManifestError) as info:
        read_cogvideox_set(tmp_path, check_files=False)
    assert info.value.path == tmp_path / "videos.txt"
    assert_location(info.value, row=2, line=2, field="video")


def test_cogvideox_missing_video_gives_expected_path(tmp_path):
    write_raw_text(tmp_path / "prompts.txt", "a\n")
    write_raw_text(tmp_path / "videos.txt", "videos/a.mp4\n")
    with pytest.raises(ManifestError) as info:
        read_cogvideox_set(tmp_path)
    assert str(tmp_path / "videos" / "a.mp4") in str(info.value)
    assert_location(info.value, row=1, line=1, field="video")


@pytest.mark.parametrize("prompt", ["two\nlines", "carriage\rreturn", "", "   "])
def test_write_cogvideox_rejects_bad_prompts(tmp_path, prompt):
    with pytest.raises(ManifestError) as info:
        write_cogvideox_set(tmp_path, [("fine", "a.mp4"), (prompt, "b.mp4")])
    assert_location(info.value, row=2, line=None, field="prompt")
    assert not (tmp_path / "prompts.txt").exists() and not (tmp_path / "videos.txt").exists()


def test_write_cogvideox_rejects_video_outside_root(tmp_path):
    with pytest.raises(ManifestError) as info:
        write_cogvideox_set(tmp_path / "ds", [("a", tmp_path / "elsewhere.mp4")])
    assert_location(info.value, row=1, line=None, field="video")


# ---------------------------------------------------------------------------------------------------------
# 4. OphNet2024
# ---------------------------------------------------------------------------------------------------------

OPHNET_HEADER = "video_id,start,end,split,surgery_id,phase_id,operation_id"


def ophnet_csv(tmp_path: Path, *lines: str, header: str = OPHNET_HEADER) -> Path:
    return write_raw_text(tmp_path / "ophnet.csv", header + "\r\n" + "".join(line + "\r\n" for line in lines))


def test_the_real_ophnet_files_ship_with_their_licence_and_citation():
    assert sorted(p.name for p in OPHNET_DIR.glob("*.csv")) == sorted(OPHNET2024_FILES)
    assert all(bundled_ophnet_csv(name) == OPHNET_DIR / name for name in OPHNET2024_FILES)
    licence = (OPHNET_DIR / "LICENSE").read_text()
    assert "MIT License" in licence and "Copyright (c) 2024 Ming Hu" in licence
    readme = (OPHNET_DIR / "README.md").read_text()
    assert "minghu0830/OphNet-benchmark" in readme and "1fcc3d1" in readme and "@inproceedings{hu2024ophnet" in readme
    with pytest.raises(KeyError, match="OphNet2024_loca_challenge.csv"):
        bundled_ophnet_csv("OphNet2024_challenge.csv")


def test_package_paths_name_shipped_files_from_any_directory(tmp_path, monkeypatch):
    from ophora.data.bundled import package_file, resolve_path

    monkeypatch.chdir(tmp_path)
    spec = "package:ophora/data/ophnet2024/OphNet2024_loca_challenge.csv"
    assert resolve_path(spec) == package_file(spec) == bundled_ophnet_csv("OphNet2024_loca_challenge.csv")
    assert resolve_path(spec).is_absolute() and resolve_path(spec).is_file()
    assert resolve_path("data/x.csv") == Path("data/x.csv")  # anything else: relative to the working directory
    assert not resolve_path("package:ophora/data/ophnet2024/absent.csv").exists()  # listed by preflights, not raised
    with pytest.raises(FileNotFoundError, match=r"OphNet2024_surgery\.csv"):
        package_file("package:ophora/data/ophnet2024/absent.csv")
    with pytest.raises(FileNotFoundError, match="no installed package 'nopackage'"):
        package_file("package:nopackage/x.csv")
    with pytest.raises(ValueError, match="expected package:<package>/<path"):
        package_file("package:ophora")


def test_ophnet_challenge_real_counts():
    path = OPHNET_DIR / "OphNet2024_loca_challenge.csv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # this file exercises BOM handling
    df = read_ophnet_csv(path)
    assert list(df.columns) == ["video_id", "start", "end", "split", "surgery_id", "phase_id", "operation_id"]
    assert len(df) == 17_508
    assert sorted(df["phase_id"].unique()) == list(range(52))
    assert sorted(df["operation_id"].unique()) == list(range(107))
    counts = split_counts(df)
    assert counts.to_dict() == {
        "videos": {"train": 445, "val": 144, "test": 154},
        "clips": {"train": 10_505, "val": 3_522, "test": 3_481},
    }
    assert class_counts(df, "operation_id").sum() == len(df)
    assert len(class_counts(df, "phase_id")) == 52


def test_ophnet_challenge_phase_real_counts():
    df = read_ophnet_csv(OPHNET_DIR / "OphNet2024_loca_challenge_phase.csv")
    assert "operation_id" not in df.columns
    assert len(df) == 14_674
    assert sorted(df["phase_id"].unique()) == list(range(52))
    assert split_counts(df).to_dict() == {
        "videos": {"train": 445, "val": 144, "test": 154},
        "clips": {"train": 8_773, "val": 2_964, "test": 2_937},
    }


def test_ophnet_all_real_counts():
    df = read_ophnet_csv(OPHNET_DIR / "OphNet2024_loca_all.csv")
    assert len(df) == 17_508
    assert df["phase_id"].nunique() == 96 and df["phase_id"].max() == 95
    assert df["operation_id"].nunique() == 232 and df["operation_id"].max() == 231
    assert split_counts(df)["videos"].to_dict() == {"train": 445, "val": 144, "test": 154}


def test_ophnet_values_match_an_independent_pandas_read():
    path = OPHNET_DIR / "OphNet2024_loca_challenge.csv"
    ours = read_ophnet_csv(path)
    reference = pd.read_csv(path, encoding="utf-8-sig")
    assert (ours["video_id"].to_numpy() == reference["video_id"].to_numpy()).all()
    for column in ["start", "end", "surgery_id", "phase_id", "operation_id"]:
        assert (ours[column].to_numpy() == reference[column].to_numpy()).all(), column
    assert (ours["split"].astype(str).to_numpy() == reference["split"].to_numpy()).all()


def test_ophnet_real_file_round_trips(tmp_path):
    df = read_ophnet_csv(OPHNET_DIR / "OphNet2024_loca_challenge.csv")
    write_ophnet_csv(tmp_path / "copy.csv", df)
    pd.testing.assert_frame_equal(read_ophnet_csv(tmp_path / "copy.csv"), df)


def test_ophnet_dtypes_and_text_ids(tmp_path):
    ophnet_csv(tmp_path, "case_0002,0,10,train,5,3,2", "case_0002,11.33,15.23,train,0,6,8", "0007,1,2,test,0,0,0")
    df = read_ophnet_csv(tmp_path / "ophnet.csv")
    assert df["video_id"].tolist() == ["case_0002", "case_0002", "0007"]
    assert pd.api.types.is_string_dtype(df["video_id"])
    assert df["start"].dtype == "float64" and df["end"].dtype == "float64"
    assert isinstance(df["split"].dtype, pd.CategoricalDtype)
    assert list(df["split"].dtype.categories) == ["train", "val", "test"]
    assert all(df[c].dtype == "int64" for c in ["surgery_id", "phase_id", "operation_id"])
    assert df["end"].tolist() == [10.0, 15.23, 2.0]
    assert split_counts(df).loc["val"].tolist() == [0, 0]


def test_ophnet_missing_columns_named(tmp_path):
    ophnet_csv(tmp_path, "case_1,0,1,train,0", header="video_id,start,end,split,surgery")
    with pytest.raises(ManifestError) as info:
        read_ophnet_csv(tmp_path / "ophnet.csv")
    assert "['surgery_id', 'phase_id']" in str(info.value)
    assert "found columns ['video_id', 'start', 'end', 'split', 'surgery']" in str(info.value)


@pytest.mark.parametrize(
    "line,field,message",
    [
        ("case_2,0,1,training,0,0,0", "split", "expected one of ['train', 'val', 'test'], found 'training'"),
        ("case_2,5,3,train,0,0,0", "end", "end (3.0) must be greater than start (5.0)"),
        ("case_2,x,3,train,0,0,0", "start", "found 'x'"),
        ("case_2,-1,3,train,0,0,0", "start", "must be >= 0"),
        ("case_2,0,3,train,0,-1,0", "phase_id", "non-negative integer"),
        ("case_2,0,3,train,0,0,3.0", "operation_id", "found '3.0'"),
        ("case_2,0,3,train,,0,0", "surgery_id", "found ''"),
        (",0,3,train,0,0,0", "video_id", "expected a video id"),
        ("case_1,0,3,test,0,0,0", "split", "a video must belong to one split"),
    ],
)
def test_ophnet_validation_errors_name_row_and_column(tmp_path, line, field, message):
    ophnet_csv(tmp_path, "case_1,0,1,train,0,0,0", line)
    with pytest.raises(ManifestError) as info:
        read_ophnet_csv(tmp_path / "ophnet.csv")
    assert_location(info.value, row=2, line=3, field=field)
    assert message in str(info.value)


def test_ophnet_segment_paths(tmp_path):
    header = OPHNET_HEADER + ",segment_path"
    ophnet_csv(tmp_path, "case_1,0,1,train,0,0,0,case_1/case_1_0.mp4", "case_1,1,2,train,0,0,0,case_1/case_1_1.mp4",
               header=header)
    touch(tmp_path / "videos" / "case_1" / "case_1_0.mp4")
    df = read_ophnet_csv(tmp_path / "ophnet.csv")
    assert df["segment_path"].tolist() == ["case_1/case_1_0.mp4", "case_1/case_1_1.mp4"]
    with pytest.raises(ManifestError) as info:
        read_ophnet_csv(tmp_path / "ophnet.csv", videos_root=tmp_path / "videos", check_files=True)
    assert_location(info.value, row=2, line=3, field="segment_path")
    assert str(tmp_path / "videos" / "case_1" / "case_1_1.mp4") in str(info.value)
    with pytest.raises(ValueError, match="videos_root"):
        read_ophnet_csv(tmp_path / "ophnet.csv", check_files=True)


@pytest.mark.parametrize("segment", ["../case_1.mp4", "/videos/case_1.mp4", "case_1/../../x.mp4"])
def test_ophnet_segment_path_escape_rejected(tmp_path, segment):
    ophnet_csv(tmp_path, f"case_1,0,1,train,0,0,0,{segment}", header=OPHNET_HEADER + ",segment_path")
    with pytest.raises(ManifestError) as info:
        read_ophnet_csv(tmp_path / "ophnet.csv")
    assert_location(info.value, row=1, line=2, field="segment_path")


def test_write_ophnet_csv_round_trip_and_validation(tmp_path):
    ophnet_csv(tmp_path, "case_1,0.1,0.30000000000000004,val,0,51,106", "case_2,1,2,test,27,0,0")
    df = read_ophnet_csv(tmp_path / "ophnet.csv")
    write_ophnet_csv(tmp_path / "copy.csv", df)
    assert not (tmp_path / "copy.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    pd.testing.assert_frame_equal(read_ophnet_csv(tmp_path / "copy.csv"), df)

    bad = df.copy()
    bad.loc[1, "end"] = 0.5
    with pytest.raises(ManifestError) as info:
        write_ophnet_csv(tmp_path / "bad.csv", bad)
    assert_location(info.value, row=2, line=None, field="end")
    with pytest.raises(ManifestError, match="missing required column"):
        write_ophnet_csv(tmp_path / "bad.csv", df.drop(columns=["split"]))
    assert not (tmp_path / "bad.csv").exists()


def test_class_counts_unknown_column(tmp_path):
    ophnet_csv(tmp_path, "case_1,0,1,train,0,2,0", "case_1,1,2,train,0,2,1", "case_1,2,3,train,0,0,1")
    df = read_ophnet_csv(tmp_path / "ophnet.csv")
    assert class_counts(df, "phase_id").to_dict() == {0: 1, 2: 2}
    with pytest.raises(KeyError, match="found columns"):
        class_counts(df, "operation")


# ---------------------------------------------------------------------------------------------------------
# 5. Generated-video folders
# ---------------------------------------------------------------------------------------------------------


def generated(folder: Path, name: str, seed: int = 0, **extra) -> GeneratedVideo:
    return GeneratedVideo(
        path=touch(folder / "videos" / name),
        prompt='Phaco, "chop" — 白内障\nsecond line',
        seed=seed,
        generator="ophora-tiny",
        checkpoint_hash="sha256:abc123",
        settings={"steps": 50, "guidance": 6.0, "size": [720, 480], "fps": 8},
        extra=extra,
    )


def manifest_lines(folder: Path) -> list[str]:
    return (folder / "manifest.jsonl").read_text(encoding="utf-8").split("\n")


def test_generated_round_trip_keeps_extra_fields(tmp_path):
    records = [generated(tmp_path, "a.mp4", seed=1, phase="capsulorhexis"), generated(tmp_path, "b.mp4", seed=2)]
    write_generated(tmp_path, records)
    assert read_generated(tmp_path) == records
    first = json.loads(manifest_lines(tmp_path)[0])
    assert first["path"] == "videos/a.mp4" and first["phase"] == "capsulorhexis"
    assert no_temp_files(tmp_path)


def test_append_generated_writes_complete_lines_and_refuses_duplicates(tmp_path):
    append_generated(tmp_path, generated(tmp_path, "a.mp4"))
    append_generated(tmp_path, generated(tmp_path, "b.mp4"))
    data = (tmp_path / "manifest.jsonl").read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 2
    with pytest.raises(ManifestError, match="duplicate path") as info:
        append_generated(tmp_path, generated(tmp_path, "a.mp4", seed=9))
    assert_location(info.value, row=3, line=3, field="path")
    assert [r.path.name for r in read_generated(tmp_path)] == ["a.mp4", "b.mp4"]


def test_append_generated_refuses_missing_video_and_path_outside(tmp_path):
    record = generated(tmp_path, "a.mp4")
    record.path.unlink()
    with pytest.raises(ManifestError, match="write the video before"):
        append_generated(tmp_path, record)
    append_generated(tmp_path, record, check_file=False)
    outside = GeneratedVideo(tmp_path.parent / "x.mp4", "p", 0, "g", "h", {})
    with pytest.raises(ManifestError, match="not inside") as info:
        append_generated(tmp_path, outside, check_file=False)
    assert info.value.field == "path"


def test_torn_last_line_is_skipped_with_warning(tmp_path):
    write_generated(tmp_path, [generated(tmp_path, "a.mp4")])
    with open(tmp_path / "manifest.jsonl", "ab") as handle:
        handle.write(b'{"path": "videos/b.mp4", "prompt": "cut off mid-wri')
    with pytest.warns(UserWarning, match=r"manifest\.jsonl.*torn last line 2"):
        records = read_generated(tmp_path)
    assert [r.path.name for r in records] == ["a.mp4"]


def test_torn_multibyte_last_line_is_skipped(tmp_path):
    write_generated(tmp_path, [generated(tmp_path, "a.mp4")])
    with open(tmp_path / "manifest.jsonl", "ab") as handle:
        handle.write('{"prompt": "白'.encode("utf-8")[:-1])  # cut inside a UTF-8 character
    with pytest.warns(UserWarning, match="torn"):
        assert len(read_generated(tmp_path)) == 1


def test_append_after_torn_line_cuts_it_off(tmp_path):
    append_generated(tmp_path, generated(tmp_path, "a.mp4"))
    with open(tmp_path / "manifest.jsonl", "ab") as handle:
        handle.write(b'{"path": "vid')
    with pytest.warns(UserWarning, match="cutting off torn last line 2"):
        append_generated(tmp_path, generated(tmp_path, "b.mp4"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.path.name for r in read_generated(tmp_path)] == ["a.mp4", "b.mp4"]


def test_unterminated_but_complete_last_line_is_kept(tmp_path):
    write_generated(tmp_path, [generated(tmp_path, "a.mp4"), generated(tmp_path, "b.mp4")])
    data = (tmp_path / "manifest.jsonl").read_bytes()
    (tmp_path / "manifest.jsonl").write_bytes(data.rstrip(b"\n"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_generated(tmp_path)) == 2
        append_generated(tmp_path, generated(tmp_path, "c.mp4"))
        assert [r.path.name for r in read_generated(tmp_path)] == ["a.mp4", "b.mp4", "c.mp4"]


@pytest.mark.parametrize("terminated", [True, False])
def test_malformed_middle_line_is_rejected(tmp_path, terminated):
    write_generated(tmp_path, [generated(tmp_path, "a.mp4")])
    good = manifest_lines(tmp_path)[0].replace("videos/a.mp4", "videos/c.mp4")
    touch(tmp_path / "videos" / "c.mp4")
    with open(tmp_path / "manifest.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"path": "videos/b.mp4", "prompt": \n' + good + ("\n" if terminated else ""))
    with pytest.raises(ManifestError, match="malformed JSON") as info:
        read_generated(tmp_path)
    assert_location(info.value, row=2, line=2, field=None)


def test_malformed_terminated_last_line_is_rejected(tmp_path):
    write_generated(tmp_path, [generated(tmp_path, "a.mp4")])
    with open(tmp_path / "manifest.jsonl", "ab") as handle:
        handle.write(b'{"path": "videos/b.mp4"\n')  # has its line end: not a torn write
    with pytest.raises(ManifestError, match="malformed JSON") as info:
        read_generated(tmp_path)
    assert (info.value.row, info.value.line) == (2, 2)


@pytest.mark.parametrize(
    "change,field,message",
    [
        (lambda o: o.pop("seed"), "seed", "missing field(s) ['seed']"),
        (lambda o: o.pop("checkpoint_hash"), "checkpoint_hash", "missing field(s)"),
        (lambda o: o.update(seed=1.0), "seed", "expected an integer seed"),
        (lambda o: o.update(seed=True), "seed", "expected an integer seed"),
        (lambda o: o.update(seed="7"), "seed", "expected an integer seed"),
        (lambda o: o.update(settings=[1]), "settings", "expected a JSON object"),
        (lambda o: o.update(prompt=None), "prompt", "expected a JSON string"),
        (lambda o: o.update(generator=""), "generator", "non-empty"),
        (lambda o: o.update(path="../escape.mp4"), "path", "leaves the dataset root"),
        (lambda o: o.update(path="/abs/x.mp4"), "path", "is absolute"),
        (lambda o: o.update(path="videos/a.mp4"), "path", "duplicate path"),
    ],
)
def test_generated_field_errors_name_line_and_field(tmp_path, change, field, message):
    write_generated(tmp_path, [generated(tmp_path, "a.mp4")])
    obj = json.loads(manifest_lines(tmp_path)[0])
    obj["path"] = "videos/b.mp4"
    change(obj)
    with open(tmp_path / "manifest.jsonl", "a", encoding="utf-8") as handle:
        handle.write("\n" + json.dumps(obj) + "\n")  # blank line 2, record on line 3
    with pytest.raises(ManifestError) as info:
        read_generated(tmp_path, check_files=False)
    assert_location(info.value, row=2, line=3, field=field)
    assert message in str(info.value)


def test_generated_non_object_line_and_missing_video(tmp_path):
    write_generated(tmp_path, [generated(tmp_path, "a.mp4")])
    (tmp_path / "videos" / "a.mp4").unlink()
    with pytest.raises(ManifestError, match="video not found") as info:
        read_generated(tmp_path)
    assert_location(info.value, row=1, line=1, field="path")
    assert len(read_generated(tmp_path, check_files=False)) == 1
    with open(tmp_path / "manifest.jsonl", "a", encoding="utf-8") as handle:
        handle.write("[1, 2]\n")
    with pytest.raises(ManifestError, match="expected a JSON object"):
        read_generated(tmp_path, check_files=False)


def test_write_generated_rejects_bad_records(tmp_path):
    a = generated(tmp_path, "a.mp4")
    cases = [
        ([a, a], "duplicate path"),
        ([GeneratedVideo(a.path, "p", 0, "g", "h", {}, extra={"seed": 3})], "extra repeats core field"),
        ([GeneratedVideo(a.path, "p", 0, "g", "h", {"guidance": math.nan})], "not JSON-serialisable"),
        ([GeneratedVideo(a.path, "p", 0, "g", "h", {"when": object()})], "not JSON-serialisable"),
        ([GeneratedVideo(tmp_path.parent / "x.mp4", "p", 0, "g", "h", {})], "not inside"),
    ]
    for records, message in cases:
        with pytest.raises(ManifestError, match=message):
            write_generated(tmp_path, records)
    assert not (tmp_path / "manifest.jsonl").exists()
    assert no_temp_files(tmp_path)


def test_read_generated_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.jsonl"):
        read_generated(tmp_path)


def test_write_generated_accepts_relative_paths(tmp_path):
    touch(tmp_path / "v.mp4")
    write_generated(tmp_path, [GeneratedVideo(Path("v.mp4"), "", 3, "endora", "sha256:0", {})])
    (record,) = read_generated(tmp_path)
    assert record.path == tmp_path / "v.mp4" and record.prompt == "" and os.path.isabs(record.path)


def test_manifest_error_survives_pickling():
    import pickle

    error = ManifestError("/x/m.jsonl", "bad seed", row=2, line=3, field="seed", field_kind="field")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.row, copy.line, copy.field, str(copy)) == (error.path, 2, 3, "seed", str(error))


def test_non_utf8_files_are_reported(tmp_path):
    write_raw_text(tmp_path / "prompts.txt", "a\n")
    (tmp_path / "prompts.txt").write_bytes(b"caf\xe9\n")
    write_raw_text(tmp_path / "videos.txt", "a.mp4\n")
    with pytest.raises(ManifestError, match="expected UTF-8"):
        read_cogvideox_set(tmp_path, check_files=False)
    (tmp_path / "set.csv").write_bytes(b"clip id,instruction\na,caf\xe9\n")
    with pytest.raises(ManifestError, match="expected UTF-8"):
        read_instruction_set(tmp_path / "set.csv", check_files=False)
