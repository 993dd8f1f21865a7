"""The generator registry (names, did-you-mean, the interface every generator offers) and the Ophora adapter
end to end on a tiny OphSim world: TPT, P2FT from the TPT model on the privacy-filtered set, generation into the
self-describing folder, idempotent calls."""
from __future__ import annotations

import pytest

import baselines
from ophora.data import manifests
from ophora.data.manifests import read_generated
from ophora.data.video import probe
from ophora.generation.prompts import Prompt
from ophora.training.demo import privacy_filtered
from ophora.training.logs import read_log

pytestmark = pytest.mark.usefixtures("torch_one_thread")

STEPS = {"train.tpt.max_steps": 3, "train.p2ft.max_steps": 3, "train.tpt.checkpoint_every": 2,
         "train.p2ft.checkpoint_every": 2}


def test_names_list_ophora_and_the_baselines_once_registered():
    names = baselines.names()
    assert "ophora" in names and names == sorted(names)
    missing = [name for name in ("endora", "bora") if name not in names]
    if missing:
        pytest.skip(f"not registered yet: {missing}")


def test_unknown_name_suggests_the_closest():
    typo, meant = ("endorra", "endora") if "endora" in baselines.names() else ("ophra", "ophora")
    with pytest.raises(KeyError) as caught:
        baselines.get(typo)
    message = str(caught.value).lower()
    assert f"did you mean '{meant}'" in message and f"unknown generator '{typo}'" in message


@pytest.mark.parametrize("name", baselines.names())
def test_every_generator_offers_the_interface(name):
    generator = baselines.get(name)
    assert isinstance(generator, baselines.VideoGenerator)
    assert generator.name == name
    assert isinstance(generator.conditional, bool)
    assert isinstance(generator.stages, tuple) and generator.stages
    assert all(isinstance(stage, str) for stage in generator.stages)
    assert callable(generator.train) and callable(generator.generate)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny OphSim world: 9-frame 64x64 clips, half the raw videos with planted subtitles/watermarks, and the
    privacy-filtered instruction set next to the full one."""
    from ophora.sim.world import WorldConfig, build_world

    root = tmp_path_factory.mktemp("ophsim")
    build_world(WorldConfig(videos=1, seed=0, frames=9, size=(64, 64), defects=0.5), root / "world", progress=False)
    instructions = root / "world" / "ophora_instructions" / "instructions.csv"
    kept = privacy_filtered(instructions, root / "world" / "ophvl_raw" / "defects.csv")
    filtered = manifests.write_instruction_set(instructions.with_name("privacy_filtered.csv"), kept)
    return root, instructions, filtered


def test_ophora_adapter_trains_both_stages_and_generates(world, tmp_path):
    root, instructions, filtered = world
    all_clips, kept = manifests.read_instruction_set(instructions), manifests.read_instruction_set(filtered)
    assert 0 < len(kept) < len(all_clips)
    ophora = baselines.get("ophora")
    assert ophora.conditional and ophora.stages == ("tpt", "p2ft")

    tpt = ophora.train(instructions, tmp_path / "tpt", overrides=STEPS)
    assert tpt == tmp_path / "tpt" / "run" / "model" and (tpt / "model_index.json").is_file()
    assert [row["step"] for row in read_log(tpt.parent)] == [1, 2, 3]

    with pytest.raises(ValueError, match="P2FT starts from a TPT model"):
        ophora.train(filtered, tmp_path / "p2ft_no_init", stage="p2ft", overrides=STEPS)
    with pytest.raises(ValueError, match="Ophora has stages .*not 'sft'"):
        ophora.train(filtered, tmp_path / "sft", stage="sft", overrides=STEPS)
    assert not (tmp_path / "p2ft_no_init").exists() and not (tmp_path / "sft").exists()

    p2ft = ophora.train(filtered, tmp_path / "p2ft", stage="p2ft", init=tpt.parent, overrides=STEPS)  # the run folder
    assert (p2ft / "model_index.json").is_file()
    assert [row["step"] for row in read_log(p2ft.parent)] == [1, 2, 3]
    from ophora.model import read_model_info

    info = read_model_info(p2ft)
    assert info["stage"] == "p2ft" and info["step"] == 3 and info["init"] == str(tpt.resolve())
    with pytest.raises(ValueError, match="P2FT starts from a TPT model"):  # a P2FT model is no TPT init
        ophora.train(filtered, tmp_path / "p2ft_again", stage="p2ft", init=p2ft, overrides=STEPS)

    prompts = [Prompt(0, kept[0].instruction), Prompt(1, kept[-1].instruction)]
    written = ophora.generate(p2ft, prompts, tmp_path / "gen", videos_per_prompt=1, seed=0)
    assert [p.name for p in written] == ["00000_00.mp4", "00001_00.mp4"]
    records = read_generated(tmp_path / "gen")
    assert [r.prompt for r in records] == [p.text for p in prompts] and {r.generator for r in records} == {"ophora"}
    assert all(probe(p).num_frames == 9 for p in written)

    # idempotent: a finished stage returns at once, generated videos are not made again
    stamp = (tpt / "model_index.json").stat().st_mtime_ns
    assert ophora.train(instructions, tmp_path / "tpt", overrides={"train.tpt.max_steps": 99}) == tpt
    assert (tpt / "model_index.json").stat().st_mtime_ns == stamp and len(read_log(tpt.parent)) == 3
    assert ophora.generate(p2ft, prompts, tmp_path / "gen", videos_per_prompt=1, seed=0) == []
