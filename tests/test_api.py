"""The one-call API gives the command's numbers: ``ophora.evaluate_videos`` on two folders equals
``python -m benchmarks.evaluate`` on them, ``ophora.VideoMetrics`` fed the decoded frames as tensors equals both,
and wrong inputs are refused with errors that say what was expected."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ophora
from benchmarks.detectors.clip import TINY_MODEL
from benchmarks.evaluate import EvaluationInputError, main
from ophora.data.video import read_video

from eval_sets import PROMPTS, make_folder, make_generated

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# tiny detectors: one FID frame, the tiny I3D and CLIP; few bootstrap replicates; no cache, no workers
FAST = dict(fid_frames=1, tiny_i3d=True, clip_model=TINY_MODEL, clip_frames=2, bootstrap=20, workers=0,
            no_cache=True, seed=3)
FAST_ARGS = ["--fid-frames", "1", "--tiny-i3d", "--clip-model", TINY_MODEL, "--clip-frames", "2", "--bootstrap",
             "20", "--workers", "0", "--no-cache", "--seed", "3", "--quiet"]
SURGICAL_FID = {"fid": "fid/ophsim-surgical"}  # a small shipped detector, for the tests of the tensor path's checks


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHORA_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A folder of 4 real videos (16 and 18 frames) and a generated folder of 4 with manifest.jsonl."""
    root = tmp_path_factory.mktemp("api_sets")
    make_folder(root / "real", 4, [16, 18, 16, 18], seed=0)
    make_generated(root / "fake", 4, frames=16, seed=1, tint=40.0)
    return root


@pytest.mark.slow
def test_evaluate_videos_equals_the_command(sets, tmp_path):  # both with the command's default detectors
    out = tmp_path / "cli.json"
    assert main(["--real", str(sets / "real"), "--fake", str(sets / "fake"), "--metrics", "fid,fvd,clipscore",
                 "--out", str(out), *FAST_ARGS]) == 0
    command = json.loads(out.read_text())["metrics"]
    result = ophora.evaluate_videos(sets / "real", sets / "fake", **FAST)

    assert list(result.values) == ["fid", "fvd", "clipscore"]  # prompts in the manifest: CLIPScore by default
    for name, expected in command.items():
        assert result[name] == pytest.approx(expected["value"], rel=1e-12), name
        assert result.intervals[name] == pytest.approx((expected["ci"]["low"], expected["ci"]["high"]), rel=1e-12)
        assert result.protocols[name] == expected["protocol"]["name"]
    assert result.n["fid"] == {"real": 4, "fake": 4} and result.n["clipscore"] == {"fake": 4}
    assert result.higher_is_better == {"fid": False, "fvd": False, "clipscore": True}
    assert result.comparable_with_literature is False and result.failed == ()
    assert result.payload["format"] == "ophora-eval/1" and result.path is None
    assert result.table().splitlines()[1].startswith("fid ")


@pytest.mark.slow
def test_a_plain_folder_scores_fid_and_fvd_and_prompts_add_clipscore(sets, tmp_path):
    plain = tmp_path / "plain"
    make_folder(plain, 3, 16, seed=1, tint=40.0)
    without = ophora.evaluate_videos(sets / "real", plain, **{**FAST, "bootstrap": 0})
    assert list(without.values) == ["fid", "fvd"] and without.intervals["fid"] is None
    with pytest.raises(KeyError, match="no metric 'clipscore' in this result"):
        without["clipscore"]
    with pytest.raises(EvaluationInputError, match="needs a prompt per generated video"):
        ophora.evaluate_videos(sets / "real", plain, metrics=["clipscore"], **FAST)

    prompts = {f"vid_{i:02d}": PROMPTS[i] for i in range(3)}
    out = tmp_path / "results" / "eval.json"
    with_prompts = ophora.evaluate_videos(sets / "real", plain, prompts=prompts, out=out, **{**FAST, "bootstrap": 0})
    assert list(with_prompts.values) == ["fid", "fvd", "clipscore"] and with_prompts.path == out
    assert with_prompts["fid"] == pytest.approx(without["fid"], rel=1e-12)
    written = json.loads(out.read_text())
    assert written["metrics"]["clipscore"]["value"] == pytest.approx(with_prompts["clipscore"], rel=1e-12)
    assert [v["prompt"] for v in written["per_video"]["clipscore"]] == list(PROMPTS[:3]) and written["provenance"]


def _frames(folder):
    """Every video of ``folder`` decoded (uint8 [T, H, W, 3]) with its file name, sorted by name."""
    paths = sorted(folder.glob("*.mp4"))
    return [read_video(p) for p in paths], [p.name for p in paths]


@pytest.mark.slow
def test_tensor_path_equals_folder_path_on_the_same_frames(sets):
    folder = ophora.evaluate_videos(sets / "real", sets / "fake", **FAST)
    real, real_keys = _frames(sets / "real")
    fake, fake_keys = _frames(sets / "fake")
    scorer = ophora.VideoMetrics(["fid", "fvd", "clipscore"], device="cpu", **FAST)
    scorer.update(real[:2], real=True, keys=real_keys[:2])  # two real batches: [16, 18] frames, then [16, 18]
    scorer.update(real[2:], real=True, keys=real_keys[2:])
    # the fake videos as one float batch [B, T, 3, H, W] in [-1, 1]: converted back to the same uint8 frames
    as_float = torch.from_numpy(np.stack(fake)).permute(0, 1, 4, 2, 3).double() / 127.5 - 1.0
    scorer.value_range = (-1.0, 1.0)
    scorer.update(as_float, prompts=list(PROMPTS[:4]), keys=fake_keys)
    tensors = scorer.compute()

    assert scorer.videos("real") == 4 and scorer.videos("fake") == 4
    for name in ("fid", "fvd", "clipscore"):
        # float32 detectors: the last bits depend on which videos share a batch
        assert tensors[name] == pytest.approx(folder[name], rel=1e-5), name
        assert tensors.intervals[name] == pytest.approx(folder.intervals[name], rel=1e-4), name
        assert tensors.n[name] == folder.n[name], name
    assert tensors.protocols == folder.protocols
    assert tensors.payload["inputs"]["fake"]["kind"] == "tensors"

    scorer.reset(real=False)  # keep the real side; the same fakes again give the same numbers
    scorer.update(np.stack(fake), prompts=list(PROMPTS[:4]), keys=fake_keys)
    assert scorer.compute()["fid"] == pytest.approx(tensors["fid"], rel=1e-9)


def test_a_video_too_short_for_fvd_is_left_out_of_fvd_only():
    scorer = ophora.VideoMetrics(["fid", "fvd"], device="cpu", **{**FAST, "bootstrap": 0}, protocols=SURGICAL_FID)
    rng = np.random.default_rng(0)
    scorer.update(rng.integers(0, 256, (3, 16, 32, 32, 3), dtype=np.uint8), real=True)
    scorer.update([rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8) for _ in range(2)]
                  + [rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)])
    result = scorer.compute()
    assert result.n["fid"]["fake"] == 3 and result.n["fvd"]["fake"] == 2
    assert [(f["key"], f["metrics"]) for f in result.failed] == [("fake/000002", ["fvd"])]


@pytest.fixture(scope="module")
def scorer():
    return ophora.VideoMetrics(["fid", "clipscore"], device="cpu", **{**FAST, "bootstrap": 0}, protocols=SURGICAL_FID)


@pytest.mark.parametrize("videos,message", [
    (torch.zeros(16, 32, 32, 3, dtype=torch.uint8), r"5-D batch .* got shape \(16, 32, 32, 3\) \(one video\?"),
    (torch.zeros(2, 16, 32, 32, 4, dtype=torch.uint8), r"videos\[0\]: expected \[T, H, W, 3\] or \[T, 3, H, W\]"),
    (torch.zeros(1, 0, 32, 32, 3, dtype=torch.uint8), r"videos\[0\]: has no frames"),
])
def test_bad_shapes_are_refused_naming_the_expected_layout(scorer, videos, message):
    with pytest.raises(ValueError, match=message):
        scorer.update(videos, prompts=["a"] * len(videos))
    assert scorer.videos("fake") == 0


def test_wrong_inputs_say_what_was_expected(scorer):
    with pytest.raises(TypeError, match="expected uint8 or a float dtype"):
        scorer.update(torch.zeros(1, 4, 8, 8, 3, dtype=torch.int32), prompts=["a"])
    with pytest.raises(ValueError, match=r"clipscore need one prompt per generated video"):
        scorer.update(torch.zeros(2, 4, 8, 8, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="prompts: 1 given for 2 videos"):
        scorer.update(torch.zeros(2, 4, 8, 8, 3, dtype=torch.uint8), prompts=["a"])
    with pytest.raises(ValueError, match=r"no generated videos yet"):
        scorer.compute()
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['bootstrp'\]; did you mean 'bootstrap'"):
        ophora.VideoMetrics(["fid"], bootstrp=10)
    with pytest.raises(TypeError, match=r"option\(s\) \['geometry'\] apply to folders"):
        ophora.VideoMetrics(["fid"], geometry="square-256")
    with pytest.raises(EvaluationInputError, match=r"unknown metric\(s\) \['fdi'\]"):
        ophora.VideoMetrics(["fdi"])
