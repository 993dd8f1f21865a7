"""Leakage checks (ophora.data.leakage): a planted leak is refused naming both clips, a clean OphSim split
passes, and the perceptual hash is stable under re-encoding and resizing but tells different clips apart."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ophora.data import manifests
from ophora.data.leakage import (
    ClipRef,
    LeakageConfig,
    LeakageError,
    PHashProtocol,
    check_leakage,
    clip_hashes,
    hamming,
    phash,
    refs_of_instruction_set,
    source_video,
)
from ophora.data.video import read_video, write_video

PROTOCOL = PHashProtocol()


@pytest.fixture(scope="module")
def heldout_world(tmp_path_factory):
    """Two other patients (another seed) than the shared one-patient training world."""
    from ophora.sim.world import WorldConfig, build_world

    root = tmp_path_factory.mktemp("heldout_world") / "world"
    build_world(WorldConfig(videos=2, seed=1000, frames=16, size=(64, 64)), root, workers=1, progress=False)
    return root


def _instructions(world):
    return world / "ophora_instructions" / "instructions.csv"


def _resized_copy(source, target, size, crf):
    frames = read_video(source)
    frames = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames])
    return write_video(target, frames, 8.0, crf=crf)


def test_source_video_is_the_clip_id_without_its_index():
    assert source_video("X3jTUYMflCk_26") == "X3jTUYMflCk"
    assert source_video("a_b_c_3") == "a_b_c"
    assert source_video("case_0001") == "case"  # an OphNet-style id is not a clip id: callers pass video_id
    assert source_video("noindex") == "noindex"
    assert source_video("clip_x") == "clip_x"


@pytest.mark.slow  # the held-out world fixture takes about 5 s
def test_a_clean_ophsim_split_passes(four_clip_world, heldout_world):
    world, _ = four_clip_world
    train = {"ophora_160k": refs_of_instruction_set(_instructions(world))}
    heldout = {"real": refs_of_instruction_set(_instructions(heldout_world))}
    report = check_leakage(train, heldout).enforce()
    assert report.leaks == [] and not report.allowed
    record = report.to_json()["checked"][0]
    assert record["hashed"] == {"real": 24, "ophora_160k": 12}
    assert record["source_video_leaks"] == 0 and record["near_duplicate_leaks"] == 0


@pytest.mark.slow  # the held-out world fixture takes about 5 s
def test_the_same_source_video_in_train_and_heldout_is_refused_naming_both_clips(four_clip_world, heldout_world):
    world, _ = four_clip_world
    train = refs_of_instruction_set(_instructions(world))
    heldout = refs_of_instruction_set(_instructions(heldout_world))
    planted = ClipRef(f"{train[0].source}_99", train[0].source)  # another clip of a training video, no file
    report = check_leakage({"ophora_160k": train}, {"real": heldout + [planted]}, LeakageConfig(phash=False))
    with pytest.raises(LeakageError) as caught:
        report.enforce()
    message = str(caught.value)
    assert "1 leak(s)" in message and f"'{planted.clip_id}' (real)" in message
    assert f"'{train[0].clip_id}' (ophora_160k)" in message and f"video '{train[0].source}'" in message
    assert "leakage.allow" in message


@pytest.mark.slow  # the held-out world fixture takes about 5 s
def test_a_reencoded_resized_copy_of_a_training_clip_is_refused_naming_both_clips(four_clip_world, heldout_world,
                                                                                   tmp_path):
    world, _ = four_clip_world
    train = refs_of_instruction_set(_instructions(world))
    heldout = refs_of_instruction_set(_instructions(heldout_world))
    copy = _resized_copy(train[5].path, tmp_path / "renamed.mp4", (48, 48), crf=30)
    planted = ClipRef("zzUnrelated_3", "zzUnrelated", copy)  # a new id: only the frames give it away
    report = check_leakage({"ophora_160k": train}, {"real": heldout + [planted]})
    assert [leak.heldout for leak in report.leaks] == ["zzUnrelated_3"]
    assert report.leaks[0].train == train[5].clip_id and report.leaks[0].kind == "near-duplicate"
    with pytest.raises(LeakageError, match=rf"'zzUnrelated_3' \(real\) and training clip '{train[5].clip_id}'"):
        report.enforce()
    allowed = check_leakage({"ophora_160k": train}, {"real": [planted]}).enforce(allow=True)
    assert allowed.allowed and allowed.to_json()["leaks"] == 1


def test_many_leaks_are_named_up_to_a_bound_then_counted(four_clip_world):
    world, _ = four_clip_world
    train = refs_of_instruction_set(_instructions(world))
    report = check_leakage({"t": train}, {"h": train}, LeakageConfig(phash=False))
    message = report.message()
    assert len(report.leaks) == 12 and message.count("\n  - ") == 5 and "... and 7 more" in message


def test_phash_is_stable_under_reencoding_and_resizing(four_clip_world, tmp_path):
    world, _ = four_clip_world
    clip = refs_of_instruction_set(_instructions(world))[2]
    original = clip_hashes([clip], PROTOCOL)
    for name, size, crf in (("crf", (64, 64), 35), ("small", (48, 48), 23), ("large", (128, 128), 23)):
        copy = ClipRef(name, name, _resized_copy(clip.path, tmp_path / f"{name}.mp4", size, crf))
        distances = hamming(clip_hashes([copy], PROTOCOL).hashes[0], original.hashes[0])
        assert distances.max() <= 24, (name, distances)  # threshold: 28 of 256 bits


def test_phash_of_a_large_frame_survives_a_downscale():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (9, 16, 3), dtype=np.uint8)
    hd = np.asarray(Image.fromarray(small).resize((1920, 1080), Image.BICUBIC))
    sd = np.asarray(Image.fromarray(hd).resize((854, 480), Image.BILINEAR))
    assert phash(hd).shape == (4,) and phash(hd).dtype == np.uint64
    assert hamming(phash(hd), phash(sd)) <= 8


@pytest.mark.slow  # the held-out world fixture takes about 5 s
def test_phash_tells_other_patients_apart_even_in_the_same_phase(four_clip_world, heldout_world):
    world, _ = four_clip_world
    train = clip_hashes(refs_of_instruction_set(_instructions(world)), PROTOCOL)
    other = clip_hashes(refs_of_instruction_set(_instructions(heldout_world)), PROTOCOL)
    nearest = hamming(other.hashes[:, :, None, None], train.hashes[None, None]).min(axis=3)  # [24, F, 12]
    second_best = np.sort(nearest, axis=1)[:, 1, :]  # min_frames = 2
    assert second_best.min() > PROTOCOL.max_distance + 10
    same_phase = [second_best[i, i % 12] for i in range(24)]  # clip k of each patient is phase k
    assert min(same_phase) > PROTOCOL.max_distance


def test_undecodable_clips_are_reported_not_matched(tmp_path, four_clip_world):
    world, _ = four_clip_world
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    hashes = clip_hashes([ClipRef("broken_0", "broken", broken)], PROTOCOL)
    assert not hashes.valid[0] and "broken_0" in hashes.problems[0]
    train = refs_of_instruction_set(_instructions(world))
    report = check_leakage({"t": train}, {"h": [ClipRef("broken_0", "broken", broken)]})
    assert report.leaks == [] and report.checked[0]["undecodable"]["h"]


def test_hashes_are_cached_by_protocol_and_files(four_clip_world, tmp_path):
    world, _ = four_clip_world
    clips = refs_of_instruction_set(_instructions(world))[:3]
    first = clip_hashes(clips, PROTOCOL, cache=tmp_path)
    assert len(list(tmp_path.glob("phash-*.npz"))) == 1
    again = clip_hashes(clips, PROTOCOL, cache=tmp_path)
    np.testing.assert_array_equal(first.hashes, again.hashes)
    clip_hashes(clips, PHashProtocol(frames=2), cache=tmp_path)
    assert len(list(tmp_path.glob("phash-*.npz"))) == 2


def test_a_raw_set_gives_its_source_video_column(tmp_path, four_clip_world):
    world, _ = four_clip_world
    refs = refs_of_instruction_set(world / "ophvl_raw" / "raw.csv")
    raw = manifests.read_raw_set(world / "ophvl_raw" / "raw.csv")
    assert [r.source for r in refs] == [c.source_video for c in raw]


@pytest.mark.slow  # the held-out world fixture takes about 5 s
def test_table1_checks_the_heldout_set_against_every_training_set(four_clip_world, heldout_world, tmp_path):
    from benchmarks.table1.config import load_table1_config
    from benchmarks.table1.preflight import leakage

    world, four = four_clip_world
    sets = {"ophora_160k": _instructions(world), "ophora_28k": four, "real": _instructions(heldout_world)}
    config = load_table1_config("paper", {f"data.{k}": str(v) for k, v in sets.items()})
    report = leakage(config, sets, tmp_path / "cache")
    assert report.leaks == [] and [c["train"] for c in report.checked] == ["ophora_160k", "ophora_28k"]
    assert report.skipped == ["training set 'original': not in this config"]
    leaky = {**sets, "real": four}  # held-out clips that are training clips
    with pytest.raises(LeakageError, match=r"held-out clip '(\w|-)+_0' \(real\) and training clip"):
        leakage(config, leaky)
    allowed = load_table1_config("paper", {**{f"data.{k}": str(v) for k, v in leaky.items()}, "leakage.allow": True})
    assert leakage(allowed, leaky).allowed
