"""Resume never unpickles: a planted malicious pickle in a checkpoint folder of every resumable stage (an Ophora
stage, a baseline on the shared loop, a downstream classifier) is refused with its name before anything is loaded,
and its code never runs; accelerate-format checkpoints of earlier versions are refused with what to do; the
suite's own format (safetensors + JSON) round-trips exactly."""
from __future__ import annotations

import builtins
import json
import pickle
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

from ophora.training import checkpoint as ckpt
from ophora.training import loop
from ophora.training.checkpoint import CheckpointError
from ophora.training.distributed import make_accelerator

pytestmark = pytest.mark.usefixtures("torch_one_thread")

PLANTED = ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scaler.pt")


class Payload:
    """Unpickling this creates ``marker`` (what an attacker's ``os.system`` would do, without a shell)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def plant(folder: Path, name: str, marker: Path) -> Path:
    (folder / name).write_bytes(pickle.dumps(Payload(marker)))
    return folder / name


def assert_every_plant_refused(folder: Path, marker: Path, resume) -> None:
    """Each planted pickle in ``folder`` makes ``resume()`` raise naming it; the marker never appears."""
    for name in PLANTED:
        planted = plant(folder, name, marker)
        with pytest.raises(CheckpointError, match=rf"holds {name}, which .* does not know \(a pickle, never loaded\)"):
            resume()
        planted.unlink()
        assert not marker.exists()


def test_the_payload_does_run_code_when_unpickled(tmp_path):
    """The plant is live: without the format check, unpickling it would create the marker."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


class Ema:
    """An exponential moving average with a plain ``state_dict`` (tensors and a float), as EMAModel's."""

    def __init__(self, params, decay: float):
        self.shadow, self.decay = [p.detach().clone() for p in params], decay

    def step(self, params) -> None:
        for s, p in zip(self.shadow, params):
            s.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.shadow = state["decay"], [t.clone() for t in state["shadow"]]


def _tiny_run(seed: int = 0):
    """A small model with dropout, AdamW, a warmup schedule and an EMA, prepared by a CPU accelerator."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 3))
    ema = Ema(model.parameters(), decay=0.9)
    accelerator = make_accelerator()
    model, optimizer = loop.prepare(accelerator, model, optimizer)
    return accelerator, loop.checkpointed(model, optimizer, schedule, ema)


def _steps(accelerator, parts, n: int) -> None:
    """``n`` steps drawing from every global RNG (torch via dropout and data, numpy, python)."""
    for _ in range(n):
        x = torch.randn(4, 3) + float(np.random.rand()) + random.random()
        loss = parts.model(x).pow(2).mean()
        accelerator.backward(loss)
        parts.optimizer.step()
        parts.optimizer.zero_grad()
        parts.objects["lr_schedule"].step()
        parts.objects["ema"].step(parts.model.parameters())


def _snapshot(parts) -> list[torch.Tensor]:
    ema, schedule = parts.objects["ema"], parts.objects["lr_schedule"]
    return ([p.detach().clone() for p in parts.model.parameters()] + [s.clone() for s in ema.shadow]
            + [torch.tensor(schedule.get_last_lr())])


def test_save_and_resume_round_trip_exactly(tmp_path):
    accelerator, parts = _tiny_run()
    _steps(accelerator, parts, 3)
    path = ckpt.save_checkpoint(accelerator, tmp_path, 3, {"note": "x"}, parts)
    _steps(accelerator, parts, 4)
    straight = _snapshot(parts)
    _, fresh = _tiny_run(seed=1)  # other initial weights: everything must come from the checkpoint
    assert ckpt.load_checkpoint(accelerator, path, fresh) == {"step": 3, "note": "x"}
    _steps(accelerator, fresh, 4)
    assert all(torch.equal(a, b) for a, b in zip(straight, _snapshot(fresh)))
    names = {p.name for p in path.iterdir()}
    assert not [n for n in names if not n.endswith((".json", ".safetensors"))]
    assert json.loads((path / "checkpoint.json").read_text())["objects"] == ["ema", "lr_schedule"]


def test_a_half_written_checkpoint_of_a_killed_run_is_ignored_and_swept(tmp_path):
    accelerator, parts = _tiny_run()
    ckpt.save_checkpoint(accelerator, tmp_path, 1, {}, parts)
    partial = tmp_path / ckpt.CHECKPOINTS / ".tmp-step_0000002"  # a run killed while writing step 2
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    assert ckpt.latest_checkpoint(tmp_path) == ckpt.checkpoint_path(tmp_path, 1)
    ckpt.save_checkpoint(accelerator, tmp_path, 3, {}, parts)
    ckpt.prune_checkpoints(tmp_path, None)  # what the loop does after each save
    assert sorted(p.name for p in (tmp_path / ckpt.CHECKPOINTS).iterdir()) == ["step_0000001", "step_0000003"]


def test_a_checkpoint_lacking_a_file_is_refused_naming_it(tmp_path):
    accelerator, parts = _tiny_run()
    path = ckpt.save_checkpoint(accelerator, tmp_path, 1, {}, parts)
    (path / "rng_0.json").unlink()
    with pytest.raises(CheckpointError, match=r"lacks rng_0\.json \(process 0's RNG states \(structure\)\)"):
        ckpt.load_checkpoint(accelerator, path, parts)


def test_a_pickle_in_place_of_a_format_file_is_never_unpickled(tmp_path):
    accelerator, parts = _tiny_run()
    path = ckpt.save_checkpoint(accelerator, tmp_path, 1, {}, parts)
    marker = tmp_path / "pwned"
    for name in ("optimizer.safetensors", "model.safetensors"):
        shutil.copy(path / name, tmp_path / name)
        plant(path, name, marker)
        with pytest.raises((SafetensorError, json.JSONDecodeError, UnicodeDecodeError)):  # never unpickled
            ckpt.load_checkpoint(accelerator, path, parts)
        shutil.copy(tmp_path / name, path / name)
    assert not marker.exists()


def test_accelerate_format_checkpoints_of_earlier_versions_are_refused_with_what_to_do(tmp_path):
    accelerator, parts = _tiny_run()
    old = ckpt.checkpoint_path(tmp_path, 2)
    old.mkdir(parents=True)
    marker = tmp_path / "pwned"
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"):
        plant(old, name, marker)
    (old / "model.safetensors").write_bytes(b"")
    (old / "trainer_state.json").write_text('{"step": 2}')
    assert ckpt.latest_checkpoint(tmp_path) == old
    with pytest.raises(CheckpointError, match=r"accelerate-format checkpoint of an earlier version .*"
                                              r"custom_checkpoint_0\.pkl.*delete .*checkpoints"):
        loop.restore(accelerator, tmp_path, parts)
    assert not marker.exists()


def test_objects_that_are_not_tensors_numbers_or_containers_are_not_saved(tmp_path):
    accelerator, parts = _tiny_run()
    bad = SimpleNamespace(state_dict=lambda: {"fn": print}, load_state_dict=None)
    with pytest.raises(TypeError, match=r"sampler\['fn'\]: a builtin_function_or_method cannot go into a "
                                        r"checkpoint"):
        ckpt.save_checkpoint(accelerator, tmp_path, 1, {}, ckpt.Checkpointed(parts.model, parts.optimizer,
                                                                             {"sampler": bad}))


def test_resume_under_deepspeed_or_fsdp_is_refused_with_a_message(tmp_path):
    from accelerate.utils import DistributedType

    accelerator, parts = _tiny_run()
    path = ckpt.save_checkpoint(accelerator, tmp_path, 1, {}, parts)
    sharded = SimpleNamespace(distributed_type=DistributedType.FSDP, num_processes=1, scaler=None)
    with pytest.raises(CheckpointError, match="resuming under FSDP is not supported"):
        ckpt.load_checkpoint(sharded, path, parts)
    info = json.loads((path / "checkpoint.json").read_text())
    kept = {"checkpoint.json", "trainer_state.json", "model.safetensors"}
    for extra in [p for p in path.iterdir() if p.name not in kept]:
        extra.unlink()  # what DeepSpeed/FSDP runs write: the gathered weights only
    (path / "checkpoint.json").write_text(json.dumps({**info, "resumable": False, "distributed_type": "DEEPSPEED"}))
    with pytest.raises(CheckpointError, match="written under DEEPSPEED .* cannot be resumed"):
        ckpt.load_checkpoint(accelerator, path, parts)


@pytest.mark.slow
def test_ophora_stage_resume_refuses_a_planted_pickle(tmp_path_factory, tmp_path):
    from ophora.configs import load_preset
    from ophora.training.demo import demo_data
    from ophora.training.trainer import TrainRun, train

    demo = demo_data(tmp_path_factory.getbasetemp() / "tiny_demo")
    preset = load_preset("tiny", {"train.tpt.max_steps": 2, "train.tpt.checkpoint_every": 1})
    stopped = train(TrainRun("tpt", preset, demo.tpt_data, tmp_path / "run", stop_after=1, progress=False))
    assert stopped.name == "step_0000001"
    resume = lambda: train(TrainRun("tpt", preset, demo.tpt_data, tmp_path / "run", resume=True, progress=False))  # noqa: E731
    assert_every_plant_refused(stopped, tmp_path / "pwned", resume)
    resume()  # the untouched checkpoint still resumes
    assert (tmp_path / "run" / "model" / "model_index.json").is_file()


@pytest.mark.slow
def test_baseline_resume_refuses_a_planted_pickle(four_clip_world, tmp_path):
    from baselines.endora import EndoraGenerator

    settings = {"vae.fit_steps": 2, "vae.fit_batch_size": 4, "train.batch_size": 2, "train.max_steps": 2,
                "train.checkpoint_every": 1}
    stopped = EndoraGenerator().train(four_clip_world[1], tmp_path / "run", overrides=settings, stop_after=1)
    assert stopped.name == "step_0000001"
    resume = lambda: EndoraGenerator().train(four_clip_world[1], tmp_path / "run", overrides=settings)  # noqa: E731
    assert_every_plant_refused(stopped, tmp_path / "pwned", resume)


@pytest.mark.slow
def test_downstream_resume_refuses_a_planted_pickle(four_clip_world, tmp_path):
    from downstream.ophnet import ClipSource, load_clips
    from downstream.train import TrainingStopped, load_recipe, train_classifier

    world = four_clip_world[0]
    clips = load_clips(ClipSource(world / "ophnet" / "OphSim_loca_phase.csv", "phase",
                                  segments_root=world / "ophnet" / "segments")).iloc[:4]
    recipe = load_recipe("mvitv2_tiny", {"max_steps": 2, "checkpoint_every": 1, "batch_size": 2, "crop": 32,
                                         "short_side": 32, "frames": 4})
    run = lambda **kw: train_classifier(recipe, clips, {}, 12, tmp_path / "run", **kw)  # noqa: E731
    with pytest.raises(TrainingStopped):
        run(stop_after=1)
    assert_every_plant_refused(ckpt.checkpoint_path(tmp_path / "run", 1), tmp_path / "pwned", run)
