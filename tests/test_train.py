"""python -m ophora.train on OphSim latents (tiny preset, CPU): learning, exact resume, P2FT, the run folder."""
from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from ophora.configs import load_preset
from ophora.data import manifests
from ophora.training.data import PreparedDataError
from ophora.training.demo import demo_data
from ophora.training.logs import read_log
from ophora.training.prepare import prepare
from ophora.training.trainer import TrainRun, train

WEIGHTS = "model/transformer/diffusion_pytorch_model.safetensors"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny(**overrides):
    return load_preset("tiny", {f"train.{k.replace('__', '.')}": v for k, v in overrides.items()})


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_data(tmp_path_factory.getbasetemp() / "tiny_demo")


@pytest.fixture(scope="module")
def world(demo):
    return demo.world


@pytest.fixture(scope="module")
def base(demo):
    return demo.base


@pytest.fixture(scope="module")
def data(demo):
    return demo.tpt_data


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data):
    """An uninterrupted 6-step TPT run with EMA, checkpoints every 3 steps."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    train(TrainRun("tpt", tiny(tpt__max_steps=6, tpt__checkpoint_every=3, tpt__ema_decay=0.9), data, out,
                   progress=False))
    return out


def test_overfitting_four_clips_drives_the_loss_down(world, base, tmp_path):
    clips = manifests.read_instruction_set(world / "ophora_instructions" / "instructions.csv")[:4]
    manifests.write_instruction_set(world / "ophora_instructions" / "four.csv", clips)
    four = tmp_path / "four"
    prepare(world / "ophora_instructions" / "four.csv", load_preset("tiny"), four, base)
    preset = tiny(tpt__max_steps=120, tpt__learning_rate=1e-2, tpt__batch_size=4, tpt__checkpoint_every=1000)
    train(TrainRun("tpt", preset, four, tmp_path / "run", progress=False))
    losses = [row["loss"] for row in read_log(tmp_path / "run")]
    assert len(losses) == 120
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.5 * first, (first, last)


def test_killed_and_resumed_run_equals_uninterrupted_bit_for_bit(straight, data, tmp_path):
    preset = tiny(tpt__max_steps=6, tpt__checkpoint_every=3, tpt__ema_decay=0.9)
    stopped = train(TrainRun("tpt", preset, data, tmp_path / "r", stop_after=4, progress=False))
    assert stopped.name == "step_0000003" and not (tmp_path / "r" / "model").exists()
    train(TrainRun("tpt", preset, data, tmp_path / "r", resume=True, progress=False))
    a, b = load_file(straight / WEIGHTS), load_file(tmp_path / "r" / WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in read_log(straight)] == [r["loss"] for r in read_log(tmp_path / "r")]
    other = tiny(tpt__max_steps=6, tpt__checkpoint_every=3, tpt__ema_decay=0.9, tpt__seed=43)
    train(TrainRun("tpt", other, data, tmp_path / "seed43", progress=False))
    c = load_file(tmp_path / "seed43" / WEIGHTS)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # equality above is not trivially true


def test_run_folder_holds_log_plot_checkpoints_and_record(straight):
    with open(straight / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["step", "loss", "lr", "samples_per_s"] and len(rows) == 6
    assert float(rows[0]["lr"]) == 0.0 and float(rows[5]["lr"]) == pytest.approx(5e-3)  # warmup of 5 steps
    assert (straight / "loss.png").stat().st_size > 1000
    checkpoints = sorted(p.name for p in (straight / "checkpoints").iterdir())
    assert checkpoints == ["step_0000003", "step_0000006"]
    files = {p.name for p in (straight / "checkpoints" / "step_0000003").iterdir()}
    assert files == {"trainer_state.json", "checkpoint.json", "model.safetensors"} | {
        f"{stem}.{ext}" for stem in ("optimizer", "lr_schedule", "ema", "rng_0") for ext in ("json", "safetensors")}
    state = json.loads((straight / "checkpoints" / "step_0000003" / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["config"]["name"] == "tiny" and state["loss"] == "v_prediction"
    record = json.loads((straight / "run.json").read_text())
    assert record["loss"] == "v_prediction" and record["timestep_sampling"] == "stratified"
    assert record["provenance"]["packages"]["diffusers"]


def test_final_model_loads_with_diffusers(straight):
    from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline

    pipe = CogVideoXPipeline.from_pretrained(straight / "model")
    assert isinstance(pipe.scheduler, CogVideoXDPMScheduler) and pipe.scheduler.config.timestep_spacing == "trailing"
    saved = load_file(straight / WEIGHTS)
    for name, param in pipe.transformer.state_dict().items():
        assert torch.equal(param, saved[name])
    info = json.loads((straight / "model" / "ophora_model.json").read_text())
    assert (info["stage"], info["step"], info["weights"], info["loss"]) == ("tpt", 6, "ema", "v_prediction")


def test_final_save_reuses_the_trained_tensors_and_keeps_float32(base):
    """The saved model is built around the trained tensors (no second copy of a 1.7B transformer), with the
    same buffers, so it computes what the trained one does; 16-bit weights (ZeRO-3's gathered state) come back
    as float32."""
    from ophora.model import load_transformer
    from ophora.training.trainer import _from_state

    model = load_transformer(base).eval()
    state = model.state_dict()
    final = _from_state(type(model), model.config, state).eval()
    assert all(final.state_dict()[k].data_ptr() == v.data_ptr() for k, v in state.items())
    config = model.config
    latents = torch.randn(1, 3, config.in_channels, config.sample_height, config.sample_width)
    text = torch.randn(1, config.max_text_seq_length, config.text_embed_dim)
    with torch.no_grad():
        outputs = [m(latents, text, torch.tensor([500])).sample for m in (model, final)]
    assert torch.equal(*outputs)
    half = _from_state(type(model), model.config, {k: v.half() for k, v in state.items()})
    assert {p.dtype for p in half.parameters()} == {torch.float32}
    assert all(torch.equal(half.state_dict()[k], v.half().float()) for k, v in state.items())


def test_p2ft_starts_from_the_tpt_model_on_the_privacy_filtered_manifest(demo, straight, tmp_path):
    from ophora.train import main

    flags = list(csv.DictReader(open(demo.world / "ophvl_raw" / "defects.csv")))
    private = {r["clip_id"] for r in flags if r["subtitles"] == "True" or r["watermark"] == "True"}
    kept = {c.clip_id for c in manifests.read_instruction_set(demo.p2ft_manifest)}
    everything = {c.clip_id for c in manifests.read_instruction_set(demo.tpt_manifest)}
    assert private and kept == everything - private
    p2ft_data = tmp_path / "prep_p2ft"
    prepare(demo.p2ft_manifest, load_preset("tiny"), p2ft_data, straight / "model")  # TPT model's frozen parts
    # One step at the warmup's learning rate of 0 leaves the weights where they started: at the TPT model.
    main(["--stage", "p2ft", "--config", "tiny", "--data", str(p2ft_data), "--out", str(tmp_path / "one"),
          "--init", str(straight), "--set", "train.p2ft.max_steps=1", "--no-progress"])
    tpt, one = load_file(straight / WEIGHTS), load_file(tmp_path / "one" / WEIGHTS)
    assert all(torch.equal(tpt[k], one[k]) for k in tpt)
    main(["--stage", "p2ft", "--config", "tiny", "--data", str(p2ft_data), "--out", str(tmp_path / "three"),
          "--init", str(straight / "model"), "--set", "train.p2ft.max_steps=8", "--no-progress"])
    three = load_file(tmp_path / "three" / WEIGHTS)
    assert not all(torch.equal(tpt[k], three[k]) for k in tpt)
    info = json.loads((tmp_path / "three" / "model" / "ophora_model.json").read_text())
    assert info["stage"] == "p2ft" and info["init"] == str((straight / "model").resolve())
    assert info["data"] == str(p2ft_data.resolve())


def test_epsilon_loss_is_an_option_and_is_recorded(data, tmp_path):
    preset = tiny(tpt__max_steps=3, tpt__loss="epsilon", tpt__timestep_sampling="uniform", tpt__checkpoint_every=1,
                  tpt__checkpoints_kept=2)
    train(TrainRun("tpt", preset, data, tmp_path / "eps", progress=False))
    assert sorted(p.name for p in (tmp_path / "eps" / "checkpoints").iterdir()) == ["step_0000002", "step_0000003"]
    assert json.loads((tmp_path / "eps" / "run.json").read_text())["loss"] == "epsilon"
    info = json.loads((tmp_path / "eps" / "model" / "ophora_model.json").read_text())
    assert (info["loss"], info["timestep_sampling"]) == ("epsilon", "uniform")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU's mixed precision")
def test_mixed_precision_records_what_really_ran(data, tmp_path):
    """bf16 autocasts on the CPU (its losses move off fp32's, the saved weights stay fp32); fp16, which CPU
    autocast lacks and accelerate then quietly skips, warns and is recorded as fp32 instead of claimed."""
    losses, records = {}, {}
    for precision in ("no", "bf16", "fp16"):
        out = tmp_path / precision
        preset = tiny(tpt__max_steps=3, tpt__mixed_precision=precision)
        if precision == "fp16":
            with pytest.warns(UserWarning, match="mixed_precision=fp16 is not available on cpu"):
                train(TrainRun("tpt", preset, data, out, progress=False))
        else:
            train(TrainRun("tpt", preset, data, out, progress=False))
        losses[precision] = [row["loss"] for row in read_log(out)]
        records[precision] = json.loads((out / "model" / "ophora_model.json").read_text())["precision"]
        assert {w.dtype for w in load_file(out / WEIGHTS).values()} == {torch.float32}
    assert records == {"no": "fp32", "bf16": "bf16 autocast", "fp16": "fp32"}
    assert losses["fp16"] == losses["no"]  # it really ran in fp32
    assert losses["bf16"] != losses["no"]
    assert losses["bf16"] == pytest.approx(losses["no"], rel=0.05)  # bf16 keeps about 3 significant digits


def test_lora_trains_adapters_and_saves_merged_weights(data, base, tmp_path):
    train(TrainRun("tpt", tiny(tpt__max_steps=3, tpt__lora_rank=4, tpt__learning_rate=1e-2), data,
                   tmp_path / "lora", progress=False))
    start = load_file(base / "transformer" / "diffusion_pytorch_model.safetensors")
    merged = load_file(tmp_path / "lora" / WEIGHTS)
    assert merged.keys() == start.keys()  # plain CogVideoX weights, LoRA folded in
    changed = {k for k in start if not torch.equal(start[k], merged[k])}
    assert changed and all(any(m in k for m in ("to_q", "to_k", "to_v", "to_out")) for k in changed)


def test_bad_runs_are_refused_with_clear_errors(data, base, straight, tmp_path):
    with pytest.raises(ValueError, match="pass --init TPT_RUN_DIR"):
        train(TrainRun("p2ft", tiny(), data, tmp_path / "p", progress=False))
    with pytest.raises(ValueError, match="P2FT starts from a TPT model.*'base'"):
        train(TrainRun("p2ft", tiny(), data, tmp_path / "p", init=base, progress=False))
    with pytest.raises(ValueError, match="pass --resume"):
        train(TrainRun("tpt", tiny(tpt__max_steps=6, tpt__checkpoint_every=3, tpt__ema_decay=0.9), data, straight,
                       progress=False))
    with pytest.raises(ValueError, match="holds another run.*loss"):
        train(TrainRun("tpt", tiny(tpt__max_steps=6, tpt__loss="epsilon", tpt__ema_decay=0.9), data, straight,
                       resume=True, progress=False))
    with pytest.raises(ValueError, match="holds a model of preset 'tiny'.*use the same --config"):
        train(TrainRun("tpt", load_preset("tiny", {"model.seed": 1}), data, straight, resume=True, progress=False))
    other = shutil.copytree(base, tmp_path / "other_vae")
    config = json.loads((other / "vae" / "config.json").read_text())
    (other / "vae" / "config.json").write_text(json.dumps({**config, "scaling_factor": 0.5}))
    with pytest.raises(PreparedDataError, match="mismatched latents.*--model"):
        train(TrainRun("tpt", tiny(), data, tmp_path / "m", init=other, progress=False))
