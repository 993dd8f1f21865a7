"""python -m ophora.prepare on an OphSim world: what the shards hold, resuming, sharding, buckets, errors."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ophora.configs import load_preset
from ophora.data import manifests
from ophora.model import load_frozen
from ophora.sim.world import WorldConfig, build_world
from ophora.training.data import BatchPlan, PreparedDataError, PreparedSet
from ophora.training.prepare import choose_bucket, encode_clip, load_clip, prepare

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    build_world(WorldConfig(videos=1, seed=0, frames=9, size=(64, 64)), out, progress=False)
    return out / "ophora_instructions" / "instructions.csv"


@pytest.fixture(scope="module")
def six(world):
    """The first six clips of the world, as their own Ophora-160K manifest."""
    path = world.parent / "six.csv"
    manifests.write_instruction_set(path, manifests.read_instruction_set(world)[:6])
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, world):
    from ophora.prepare import main

    out = tmp_path_factory.mktemp("prep") / "data"
    main(["--config", "tiny", "--manifest", str(world), "--out", str(out), "--no-progress"])
    return out


def test_index_lists_every_clip_in_shards(prepared, world):
    data = PreparedSet(prepared)
    clips = manifests.read_instruction_set(world)
    assert [item.key for item in data.items] == [c.clip_id for c in clips]
    assert len(list((prepared / "shards").glob("*.safetensors"))) == 3  # 12 clips, 4 per shard
    mean, logvar, embeds = data.load(0)
    assert mean.shape == logvar.shape == (4, 3, 4, 4) and embeds.shape == (32, 32)
    assert json.loads((prepared / "index.json").read_text())["buckets"] == {"9x32x32": 12}


def test_latents_are_the_vae_moments_of_the_resized_clip(prepared, world):
    data = PreparedSet(prepared)
    frozen = load_frozen(prepared / "base_model")
    clip = manifests.read_instruction_set(world)[5]
    video = load_clip(clip.path, (9, 32, 32), 8.0)
    assert video.shape == (3, 9, 32, 32) and video.min() >= -1 and video.max() <= 1
    mean, logvar = encode_clip(frozen, video, "cpu")
    stored_mean, stored_logvar, _ = data.load(5)
    assert torch.allclose(stored_mean, mean, atol=1e-6) and torch.allclose(stored_logvar, logvar, atol=1e-6)


def test_text_embeddings_equal_the_pipelines(prepared, world):
    from diffusers import CogVideoXPipeline

    pipe = CogVideoXPipeline.from_pretrained(prepared / "base_model")
    data = PreparedSet(prepared)
    embeds, _ = pipe.encode_prompt(data.items[3].instruction, do_classifier_free_guidance=False,
                                   max_sequence_length=32, device="cpu")
    assert torch.allclose(data.load(3)[2], embeds[0], atol=1e-6)


def test_rerun_skips_done_shards_and_redoes_missing_ones(tmp_path, prepared, world):
    import shutil

    out = shutil.copytree(prepared, tmp_path / "copy")
    plan = json.loads((out / "prepare.json").read_text())
    plan["model_dir"] = str(out / "base_model")
    (out / "prepare.json").write_text(json.dumps(plan))
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.safetensors")}
    (out / "shards" / "00001.json").unlink()  # as if killed between tensors and record
    (out / "index.json").unlink()
    prepare(world, load_preset("tiny"), out, out / "base_model")
    after = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.safetensors")}
    assert after["00000.safetensors"] == stamps["00000.safetensors"]
    assert after["00001.safetensors"] != stamps["00001.safetensors"]
    redone = load_file(out / "shards" / "00001.safetensors")
    original = load_file(prepared / "shards" / "00001.safetensors")
    assert redone.keys() == original.keys() and all(torch.equal(redone[k], original[k]) for k in redone)


def test_processes_take_every_other_shard(tmp_path, prepared, six):
    tiny, base = load_preset("tiny", {"prepare.shard_size": 2}), prepared / "base_model"
    with pytest.raises(RuntimeError, match="not done"):  # rank 0 alone cannot finish the index
        prepare(six, tiny, tmp_path / "p", base, rank=0, world=2)
    assert sorted(p.stem for p in (tmp_path / "p" / "shards").glob("*.json")) == ["00000", "00002"]
    prepare(six, tiny, tmp_path / "p", base, rank=1, world=2)
    assert sorted(p.stem for p in (tmp_path / "p" / "shards").glob("*.json")) == ["00000", "00001", "00002"]
    prepare(six, tiny, tmp_path / "p", base, rank=0, world=2)  # now every shard is done
    assert len(PreparedSet(tmp_path / "p")) == 6


def test_buckets_by_frames_then_aspect_ratio():
    buckets = [(9, 32, 32), (5, 32, 32), (9, 32, 48)]
    assert choose_bucket(buckets, 12, 64, 64) == (9, 32, 32)
    assert choose_bucket(buckets, 12, 480, 720) == (9, 32, 48)
    assert choose_bucket(buckets, 7, 480, 720) == (5, 32, 32)
    assert choose_bucket(buckets, 4, 64, 64) is None


def test_short_clips_go_to_a_shorter_bucket_or_are_skipped(tmp_path, prepared, six):
    preset = load_preset("tiny", {"data.fps": 5, "data.buckets": [[5, 32, 32]], "data.selection": "fps_window"})
    prepare(six, preset, tmp_path / "b", prepared / "base_model")  # 9 frames at 8 fps = 5 frames at 5 fps
    assert json.loads((tmp_path / "b" / "index.json").read_text())["buckets"] == {"5x32x32": 6}
    assert PreparedSet(tmp_path / "b").load(0)[0].shape == (4, 2, 4, 4)
    preset = load_preset("tiny", {"data.fps": 3, "data.selection": "fps_window"})
    prepare(six, preset, tmp_path / "s", prepared / "base_model")  # 3 frames: shorter than every bucket
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    assert not index["items"] and "smallest bucket needs 9" in index["skipped"][0]["reason"]
    with pytest.raises(PreparedDataError, match="no clip was prepared"):
        PreparedSet(tmp_path / "s")


def test_batches_never_mix_buckets_and_depend_only_on_the_step():
    buckets = [(9, 32, 32)] * 5 + [(5, 32, 32)] * 3
    plan = BatchPlan(buckets, global_batch=2, seed=7)
    for step in range(3 * plan.per_epoch):
        batch = plan.batch(step)
        assert len(batch) == 2 and len({buckets[i] for i in batch}) == 1
    assert {i for b in plan.epoch(0) for i in b} == set(range(8))  # every item each epoch
    assert BatchPlan(buckets, 2, 7).batch(5) == plan.batch(5)
    assert [BatchPlan(buckets, 2, 8).batch(s) for s in range(6)] != [plan.batch(s) for s in range(6)]


def test_a_folder_prepared_otherwise_is_refused(tmp_path, prepared, world):
    import shutil

    out = shutil.copytree(prepared, tmp_path / "copy")
    with pytest.raises(ValueError, match="prepared with other settings.*preset_fingerprint"):
        prepare(world, load_preset("tiny", {"data.fps": 4, "data.selection": "fps_window"}), out, out / "base_model")


def test_empty_manifest_and_unfinished_or_damaged_folders(tmp_path, prepared, world):
    import shutil

    empty = world.parent / "empty.csv"
    empty.write_text("clip id,instruction\n")
    with pytest.raises(ValueError, match="lists no clips"):
        prepare(empty, load_preset("tiny"), tmp_path / "e", prepared / "base_model")
    with pytest.raises(PreparedDataError, match="not a prepared folder"):
        PreparedSet(tmp_path / "nothing")
    out = shutil.copytree(prepared, tmp_path / "copy")
    (out / "shards" / "00002.safetensors").unlink()
    with pytest.raises(PreparedDataError, match="missing latents: expected shard"):
        PreparedSet(out)
    (out / "index.json").unlink()
    with pytest.raises(PreparedDataError, match="prepare has not finished"):
        PreparedSet(out)


def test_tiny_base_model_can_fit_its_vae_first(tmp_path, six):
    from ophora.prepare import main

    out = tmp_path / "fit"
    main(["--config", "tiny", "--manifest", str(six), "--out", str(out), "--fit-vae-steps", "3", "--no-progress"])
    info = json.loads((out / "base_model" / "ophora_model.json").read_text())
    assert info["vae_fit"]["steps"] == 3 and info["vae_fit"]["clips"] == 6
    assert PreparedSet(out).plan["scaling_factor"] != pytest.approx(1.15258426)  # set from the fitted latents
    with pytest.raises(ValueError, match="built with 3 VAE fit steps, not 5"):
        main(["--config", "tiny", "--manifest", str(six), "--out", str(out), "--fit-vae-steps", "5"])
    with pytest.raises(ValueError, match="cannot be combined with --model"):
        main(["--config", "tiny", "--manifest", str(six), "--out", str(tmp_path / "x"), "--model",
              str(out / "base_model"), "--fit-vae-steps", "3"])
