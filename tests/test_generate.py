"""python -m ophora.generate with a tiny model trained on OphSim: seeds, shapes, the manifest, resuming, errors."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from ophora.configs import load_preset
from ophora.data.manifests import read_generated, write_generated
from ophora.data.video import probe, read_video
from ophora.generation import PromptFileError, generate, plan_jobs, read_prompts
from ophora.generation.sampler import _sample
from ophora.model import ModelNotFoundError, load_pipeline, transformer_sha256
from ophora.seeding import derive_seed
from ophora.training.demo import demo_data
from ophora.training.trainer import TrainRun, train

PROMPTS = ("A keratome creates a self-sealing main incision in the clear cornea.\n"
           "\n  Phacoemulsification of a dense cataract.\n")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    demo = demo_data(tmp_path_factory.getbasetemp() / "tiny_demo")
    run = tmp_path_factory.mktemp("gen") / "tpt"
    preset = load_preset("tiny", {"train.tpt.max_steps": 4})
    return train(TrainRun("tpt", preset, demo.tpt_data, run, progress=False))


@pytest.fixture(scope="module")
def preset():
    return load_preset("tiny", {"sampling.steps": 3})


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text(PROMPTS)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory, model, preset, prompt_file):
    out = tmp_path_factory.mktemp("videos") / "seed5"
    generate(model, read_prompts(prompt_file), preset, out, videos_per_prompt=2, seed=5)
    return out


def test_videos_have_the_requested_shape_and_fps(videos):
    names = sorted(p.name for p in videos.glob("*.mp4"))
    assert names == ["00000_00.mp4", "00000_01.mp4", "00001_00.mp4", "00001_01.mp4"]
    for name in names:
        assert read_video(videos / name).shape == (9, 32, 32, 3)
        assert probe(videos / name).fps == pytest.approx(8.0)


def test_manifest_says_how_each_video_was_made(videos, model):
    records = read_generated(videos)
    assert [(r.extra["prompt_index"], r.extra["video_index"]) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [r.extra["batch_videos"] for r in records] == [2, 2, 2, 2]  # the tiny preset samples 2 at a time
    assert [r.seed for r in records] == [derive_seed(5, i, k) for i in (0, 1) for k in (0, 1)]
    assert records[2].prompt == "Phacoemulsification of a dense cataract."
    weights = model / "transformer" / "diffusion_pytorch_model.safetensors"
    assert {r.checkpoint_hash for r in records} == {hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert {r.generator for r in records} == {"ophora"}
    settings = records[0].settings
    assert (settings["steps"], settings["fps"], settings["num_frames"]) == (3, 8.0, 9)
    assert (settings["scheduler"], settings["timestep_spacing"], settings["guidance_scale"]) == ("dpm", "trailing", 6.0)


def test_same_seed_same_videos_other_seed_other_videos(videos, model, preset, prompt_file, tmp_path):
    generate(model, read_prompts(prompt_file), preset, tmp_path / "again", videos_per_prompt=2, seed=5)
    for path in videos.glob("*.mp4"):
        assert np.array_equal(read_video(path), read_video(tmp_path / "again" / path.name))
    generate(model, read_prompts(prompt_file), preset, tmp_path / "other", videos_per_prompt=1, seed=6)
    assert not np.array_equal(read_video(videos / "00000_00.mp4"), read_video(tmp_path / "other" / "00000_00.mp4"))
    assert not np.array_equal(read_video(videos / "00000_00.mp4"), read_video(videos / "00000_01.mp4"))


def test_each_video_has_its_own_generator_whatever_the_batch(model, preset, prompt_file):
    pipeline = load_pipeline(model, preset.sampling)
    pipeline.set_progress_bar_config(disable=True)
    jobs = plan_jobs(read_prompts(prompt_file), 2, seed=5)
    together = _sample(pipeline, jobs[:3], preset, "cpu")
    alone = _sample(pipeline, jobs[2:3], preset, "cpu")
    assert together.shape == (3, 9, 32, 32, 3)
    np.testing.assert_allclose(together[2], alone[0], atol=1e-5)


def test_rerun_skips_finished_videos_and_redoes_unlisted_ones(videos, model, preset, prompt_file, tmp_path):
    out = shutil.copytree(videos, tmp_path / "copy")
    records = read_generated(out)
    write_generated(out, [r.__class__(out / r.path.name, *list(r.__dict__.values())[1:]) for r in records[:2]])
    (out / "00001_01.mp4").unlink()  # 00001_00.mp4 stays: written, but killed before its manifest line
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    written = generate(model, read_prompts(prompt_file), preset, out, videos_per_prompt=2, seed=5)
    assert sorted(p.name for p in written) == ["00001_00.mp4", "00001_01.mp4"]
    assert all(out.joinpath(n).stat().st_mtime_ns == stamps[n] for n in ("00000_00.mp4", "00000_01.mp4"))
    again = read_generated(out)
    assert sorted(r.path.name for r in again) == sorted(r.path.name for r in records)
    assert np.array_equal(read_video(out / "00001_01.mp4"), read_video(videos / "00001_01.mp4"))
    assert generate(model, read_prompts(prompt_file), preset, out, videos_per_prompt=2, seed=5) == []


def test_rerun_with_other_prompts_is_refused(videos, model, preset, tmp_path):
    out = shutil.copytree(videos, tmp_path / "copy")
    (tmp_path / "other.txt").write_text("a different first prompt\nanother one\n")
    with pytest.raises(ValueError, match=r"00000_00.mp4 was made from another prompt .*a prompt file changed"):
        generate(model, read_prompts(tmp_path / "other.txt"), preset, out, videos_per_prompt=2, seed=5)


def test_processes_share_the_videos(model, preset, prompt_file, tmp_path):
    prompts = read_prompts(prompt_file)
    first = generate(model, prompts, preset, tmp_path / "v", videos_per_prompt=2, seed=5, rank=0, world=2)
    assert [p.name for p in first] == ["00000_00.mp4", "00001_00.mp4"]
    generate(model, prompts, preset, tmp_path / "v", videos_per_prompt=2, seed=5, rank=1, world=2)
    assert len(read_generated(tmp_path / "v")) == 4


def test_prompt_files_of_every_format(tmp_path):
    from importlib import resources

    phases = read_prompts(resources.files("ophora.sim") / "data" / "phase_prompts.csv")
    assert len(phases) == 12 and phases[0].text.startswith("A diamond or steel keratome")
    assert phases[0].source["phase prompt"].endswith("as incision")
    by_column = read_prompts(resources.files("ophora.sim") / "data" / "phase_prompts.csv", column="phase prompt")
    assert by_column[0].text.endswith("as incision")
    (tmp_path / "set.csv").write_text('clip id,instruction\nX3jTUYMflCk_26,"Capsulorhexis, with forceps."\n')
    assert [(p.text, p.source) for p in read_prompts(tmp_path / "set.csv")] == [
        ("Capsulorhexis, with forceps.", {"clip id": "X3jTUYMflCk_26"})]
    (tmp_path / "bad.csv").write_text("id,text\n1,hello\n")
    with pytest.raises(PromptFileError, match=r"found columns \['id', 'text'\]"):
        read_prompts(tmp_path / "bad.csv")
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(PromptFileError, match="holds no prompt"):
        read_prompts(tmp_path / "empty.txt")


def test_bad_requests_fail_before_writing_anything(model, videos, prompt_file, tmp_path):
    from ophora.generate import main

    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(PromptFileError):
        main(["--model", str(model), "--prompts", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "a")])
    with pytest.raises(ValueError, match="holds a model of preset 'tiny'"):
        main(["--model", str(model), "--prompts", str(prompt_file), "--out", str(tmp_path / "b"), "--config", "paper"])
    with pytest.raises(ModelNotFoundError, match="model folder not found"):
        main(["--model", str(tmp_path / "none"), "--prompts", str(prompt_file), "--out", str(tmp_path / "c")])
    assert not any((tmp_path / name).exists() for name in "abc")
    with pytest.raises(ValueError, match="other settings.*steps"):
        main(["--model", str(model), "--prompts", str(prompt_file), "--out", str(videos), "--videos-per-prompt",
              "2", "--seed", "5", "--steps", "4"])


def test_command_line(model, prompt_file, tmp_path):
    from ophora.generate import main

    written = main(["--model", str(model), "--prompts", str(prompt_file), "--out", str(tmp_path / "cli"),
                    "--steps", "2", "--seed", "1", "--no-progress"])
    assert len(written) == 2 and read_generated(tmp_path / "cli")[1].seed == derive_seed(1, 1, 0)
    assert transformer_sha256(model) == read_generated(tmp_path / "cli")[0].checkpoint_hash
