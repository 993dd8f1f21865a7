"""Two CPU processes (torchrun, gloo): sharded prepare, data-parallel training with exact resume, sharded generation.

One ``torchrun --nproc_per_node 2`` run executes the three command-line tools in turn (a driver script calls
their ``main``), so the libraries load once per process. The results are then checked against single-process
runs of the same commands in this test process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ophora.configs import load_preset
from ophora.data.manifests import read_generated
from ophora.data.video import read_video
from ophora.generation import generate, read_prompts
from ophora.training.demo import demo_data
from ophora.training.prepare import prepare

DRIVER = textwrap.dedent("""
    import sys
    from ophora import generate, prepare, train
    manifest, out, prompts = sys.argv[1:4]
    prepare.main(["--config", "tiny", "--manifest", manifest, "--out", f"{out}/prep", "--no-progress",
                  "--model", f"{out}/base", "--set", "prepare.shard_size=2"])
    steps = ["--set", "train.tpt.max_steps=4", "--set", "train.tpt.checkpoint_every=2", "--no-progress"]
    common = ["--stage", "tpt", "--config", "tiny", "--data", f"{out}/prep"] + steps
    train.main(common + ["--out", f"{out}/straight"])
    train.main(common + ["--out", f"{out}/resumed", "--stop-after", "3"])
    train.main(common + ["--out", f"{out}/resumed", "--resume"])
    generate.main(["--model", f"{out}/straight/model", "--prompts", prompts, "--out", f"{out}/videos",
                   "--videos-per-prompt", "2", "--seed", "3", "--batch-size", "1", "--no-progress"])
""")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    import shutil

    demo = demo_data(tmp_path_factory.getbasetemp() / "tiny_demo")
    out = tmp_path_factory.mktemp("ddp")
    shutil.copytree(demo.base, out / "base")
    (out / "driver.py").write_text(DRIVER)
    (out / "prompts.txt").write_text("Capsulorhexis with forceps.\nLens implantation.\nIrrigation and aspiration.\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(out / "driver.py"), str(demo.tpt_manifest), str(out), str(out / "prompts.txt")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return demo, out


@pytest.mark.slow
def test_two_processes_prepare_the_same_shards_as_one(two_processes, tmp_path):
    demo, out = two_processes
    prepare(demo.tpt_manifest, load_preset("tiny", {"prepare.shard_size": 2}), tmp_path / "one", out / "base")
    for shard in sorted((tmp_path / "one" / "shards").glob("*.safetensors")):
        a, b = load_file(shard), load_file(out / "prep" / "shards" / shard.name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_process_training_resumes_bit_for_bit(two_processes):
    _, out = two_processes
    weights = "model/transformer/diffusion_pytorch_model.safetensors"
    a, b = load_file(out / "straight" / weights), load_file(out / "resumed" / weights)
    assert all(torch.equal(a[k], b[k]) for k in a)
    files = {p.name for p in (out / "straight" / "checkpoints" / "step_0000002").iterdir()}
    assert {"rng_0.json", "rng_0.safetensors", "rng_1.json", "rng_1.safetensors"} <= files  # RNG states per process
    assert not [name for name in files if name.endswith((".pkl", ".bin", ".pt"))]
    rows = (out / "straight" / "log.csv").read_text().splitlines()
    assert len(rows) == 5  # header + 4 steps, written once (by the main process)


@pytest.mark.slow
def test_two_process_generation_equals_one_process(two_processes, tmp_path):
    _, out = two_processes
    records = read_generated(out / "videos")
    assert sorted(r.path.name for r in records) == [f"{i:05d}_{k:02d}.mp4" for i in range(3) for k in range(2)]
    preset = load_preset("tiny", {"sampling.batch_size": 1})  # one video per batch in both runs: exact equality
    generate(out / "straight" / "model", read_prompts(out / "prompts.txt"), preset, tmp_path / "one",
             videos_per_prompt=2, seed=3)
    for record in records:
        assert np.array_equal(read_video(record.path), read_video(tmp_path / "one" / record.path.name))
