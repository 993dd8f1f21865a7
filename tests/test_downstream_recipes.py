"""The classifiers' training recipe as PySlowFast runs it (issue 17): RandAugment against timm's definitions,
windows in seconds at the recipe's frame rate (synthetic and real clips alike), random erasing, repeated
augmentation, no weight decay on BatchNorm, precise BatchNorm statistics, the cosine after the warmup."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm.data.auto_augment as timm_aa  # installed with open_clip_torch, a dependency: the reference definitions
import torch
from PIL import Image

from downstream import augment
from downstream.models import ClassifierSpec, build_classifier
from downstream.ophnet import ClipDataset, ClipSampling, StridedWindow, TimedWindow, scan_clips, window_report
from downstream.train import _collate_train, load_recipe, lr_at, parameter_groups, update_bn_stats
from ophora.data.video import write_video

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ---------------------------------------------------------------------------------------------------------
# RandAugment: timm's definitions


def test_op_lists_and_level_denominator_are_timms():
    assert augment.LEVEL_DENOM == timm_aa._LEVEL_DENOM == 10.0
    assert list(augment.RAND_TRANSFORMS) == list(timm_aa._RAND_TRANSFORMS)
    assert list(augment.RAND_INCREASING_TRANSFORMS) == list(timm_aa._RAND_INCREASING_TRANSFORMS)
    assert augment.FILL == timm_aa._FILL


@pytest.mark.parametrize("name", sorted(set(augment.RAND_TRANSFORMS) | set(augment.RAND_INCREASING_TRANSFORMS)))
@pytest.mark.parametrize("negate", [False, True])
def test_magnitude_to_argument_equals_timm(name, negate, monkeypatch):
    monkeypatch.setattr(timm_aa, "_randomly_negate", (lambda v: -v) if negate else (lambda v: v))
    hparams = dict(timm_aa._HPARAMS_DEFAULT)
    for level in [0, 1, 2.5, 5, 7, 9, 10]:
        ours = augment.op_argument(name, level, negate)
        reference = timm_aa.LEVEL_TO_ARG[name]
        theirs = () if reference is None else reference(level, hparams)
        assert ours == pytest.approx(theirs), (name, level)


def test_rand_m7_is_seven_tenths_of_each_range_three_times_torchvision():
    # rand-m7: rotate 21 degrees, shear 0.21, enhance 1 +- 0.63, posterize to 2 bits, solarize above 77
    assert augment.op_argument("Rotate", 7) == pytest.approx((21.0,))
    assert augment.op_argument("ShearX", 7, negate=True) == pytest.approx((-0.21,))
    assert augment.op_argument("TranslateXRel", 7) == pytest.approx((0.315,))
    assert augment.op_argument("ContrastIncreasing", 7, negate=True) == pytest.approx((0.37,))
    assert augment.op_argument("PosterizeIncreasing", 7) == (2,)
    assert augment.op_argument("SolarizeIncreasing", 7) == (77,)
    assert augment.op_argument("SolarizeAdd", 7) == (77,)
    # torchvision's RandAugment(magnitude=7) is bin 7 of 31 over the same ranges: 7/30
    for name, ours in [("Rotate", 21.0), ("ShearX", 0.21)]:
        assert augment.torchvision_strength(name, 7) == pytest.approx(ours / 3)


@pytest.mark.parametrize("name", sorted(augment.OPS))
def test_ops_on_images_equal_timms(name):
    g = np.random.default_rng(0)
    image = Image.fromarray(g.integers(60, 180, (24, 40, 3), dtype=np.uint8))  # low contrast: no op is a no-op
    args = augment.op_argument(name, 7, negate=True)
    ours = augment.OPS[name](image, *args, resample=Image.BICUBIC)
    theirs = timm_aa.NAME_TO_OP[name](image, *args, fillcolor=timm_aa._FILL, resample=Image.BICUBIC)
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))
    if name not in ("Posterize", "Solarize", "Color", "Contrast", "Brightness", "Sharpness"):  # M7: identity-free
        assert not np.array_equal(np.asarray(ours), np.asarray(image))


def test_parse_randaugment_reads_timms_grammar():
    assert augment.parse_randaugment("rand-m7-n4-mstd0.5-inc1") == augment.RandAugmentSpec(7.0, 4, 0.5, True)
    assert augment.parse_randaugment("rand") == augment.RandAugmentSpec(10.0, 2, 0.0, False)
    assert augment.parse_randaugment("rand-m9-inc1").ops == augment.RAND_INCREASING_TRANSFORMS
    for bad, match in [("rand-x3", "cannot read 'x3'"), ("auto-m7", "starts with 'rand-'"), ("rand-m7-w0", "weighted")]:
        with pytest.raises(ValueError, match=match):
            augment.parse_randaugment(bad)


def test_video_randaugment_applies_the_same_ops_to_every_frame():
    g = np.random.default_rng(1)
    frames = g.integers(0, 256, (5, 32, 48, 3), dtype=np.uint8)
    transform = augment.VideoRandAugment("rand-m7-n4-mstd0.5-inc1")
    transform.record = []
    torch.manual_seed(3)
    out = transform(torch.from_numpy(frames).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    (ops,) = transform.record
    assert ops, "seed 3 draws at least one op (each is kept with probability 0.5)"
    for frame, result in zip(frames, out):  # frame by frame with the recorded ops and arguments: the same pixels
        image = Image.fromarray(frame)
        for name, args in ops:
            image = timm_aa.NAME_TO_OP[name](image, *args, fillcolor=timm_aa._FILL, resample=Image.BICUBIC)
        assert np.array_equal(np.asarray(image), result)
    # ops and magnitudes over many clips: N=4 draws, each kept with probability 0.5; magnitudes ~ N(7, 0.5)
    torch.manual_seed(0)
    kept, rotations = [], []
    for _ in range(400):
        drawn = transform.draw()
        kept.append(len(drawn))
        rotations += [abs(args[0]) for name, args in drawn if name == "Rotate"]
    assert np.mean(kept) == pytest.approx(2.0, abs=0.2)
    assert np.mean(rotations) == pytest.approx(21.0, abs=1.0) and np.std(rotations) == pytest.approx(1.5, abs=0.5)


# ---------------------------------------------------------------------------------------------------------
# Random erasing and repeated augmentation


def test_random_erasing_is_one_box_through_every_frame_with_fresh_noise():
    eraser = augment.VideoRandomErasing(1.0)
    torch.manual_seed(0)
    video = torch.full((4, 3, 32, 32), 5.0)
    out = eraser(video)
    top, left, h, w = eraser.last
    assert 0.02 * 1024 * 0.5 <= h * w <= 1024 / 3 * 1.5
    inside = out[:, :, top:top + h, left:left + w]
    assert (inside != 5.0).all() and abs(float(inside.mean())) < 0.5  # standard-normal noise
    assert not torch.equal(inside[0], inside[1])  # drawn afresh for each frame
    outside = out.clone()
    outside[:, :, top:top + h, left:left + w] = 5.0
    assert torch.equal(outside, video) and float(video.unique()) == 5.0  # the input is untouched
    erased = 0
    quarter = augment.VideoRandomErasing(0.25)
    for _ in range(400):
        quarter(video)
        erased += quarter.last is not None
    assert erased / 400 == pytest.approx(0.25, abs=0.06)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> pd.DataFrame:
    """Two 6 s clips whose frames show their own time (grey level 20 per second): a real one at 30 fps and a
    synthetic one at 8 fps (49 frames, as Ophora writes)."""
    root = tmp_path_factory.mktemp("clips")
    rows = []
    for name, fps, count in [("real", 30.0, 180), ("synthetic", 8.0, 49)]:
        frames = np.stack([np.full((32, 48, 3), int(round(20 * k / fps)) + 10, np.uint8) for k in range(count)])
        path = write_video(root / f"{name}.mp4", frames, fps)
        rows.append({"video_id": name, "clip_path": str(path), "label": 0, "split": "train",
                     "window_start": np.nan, "window_end": np.nan})
    readable, problems = scan_clips(pd.DataFrame(rows))
    assert problems.empty
    return readable


def test_repeated_augmentation_gives_two_differently_augmented_samples(clips):
    sampling = ClipSampling(frames=4, stride=2, crop=24, short_side=32, randaugment="rand-m7-n4-mstd0.5-inc1",
                            rrc_scale=(0.08, 1.0), erase_prob=0.25, num_sample=2, target_fps=30)
    dataset = ClipDataset(clips, sampling, train=True, seed=0)
    item = dataset[(0, 0)]
    assert item["video"].shape == (2, 3, 4, 24, 24)
    assert not torch.equal(item["video"][0], item["video"][1])
    assert torch.equal(item["video"], dataset[(0, 0)]["video"])  # a function of (seed, epoch, clip, sample)
    batch = _collate_train([item, dataset[(1, 0)]])
    assert batch["video"].shape == (4, 3, 4, 24, 24) and batch["index"] == [0, 0, 1, 1]
    assert batch["label"].tolist() == [0, 0, 0, 0]
    one = ClipDataset(clips, ClipSampling(frames=4, stride=2, crop=24, short_side=32, target_fps=30), True)[(0, 0)]
    assert one["video"].shape == (3, 4, 24, 24)


def test_short_side_jitter_draws_in_the_range():
    sampling = ClipSampling(frames=4, stride=2, crop=224, short_side=256, jitter=(256, 320))
    dataset = ClipDataset(pd.DataFrame({"label": [0]}), sampling, train=True, seed=0)
    sides = [dataset.short_side_of(epoch, 0) for epoch in range(300)]
    assert min(sides) == 256 and max(sides) == 320 and 280 < np.mean(sides) < 296
    assert ClipDataset(pd.DataFrame({"label": [0]}), sampling, train=False).short_side_of(0, 0) == 256
    with pytest.raises(ValueError, match="jitter"):
        ClipSampling(frames=4, stride=2, crop=224, short_side=256, jitter=(200, 320))


# ---------------------------------------------------------------------------------------------------------
# Windows in seconds


@pytest.mark.parametrize("fps", [15.0, 25.0, 30.0, 60.0, 8.0])
def test_a_window_spans_the_same_seconds_at_any_source_rate(fps):
    frames, stride, target = 16, 4, 30.0  # MViTv2-S: 64 frames at 30 fps = 2.133 s
    window = TimedWindow(frames, stride, 0.0, target)
    index = window.indices(int(fps * 20), fps)
    assert len(index) == frames and index[0] == 0
    assert (index[-1] + 1) / fps == pytest.approx(frames * stride / target, abs=1 / fps)
    late = TimedWindow(frames, stride, 1.0, target).indices(int(fps * 20), fps)
    assert late[-1] == int(fps * 20) - 1  # as late as it fits
    # counted in source frames, the same window spans 61 frames: 4 s at 15 fps, 1 s at 60 fps
    strided = StridedWindow(frames, stride, 0.0).indices(int(fps * 20), fps)
    assert (strided[-1] + 1) / fps == pytest.approx(61 / fps)


def test_test_views_start_where_pyslowfast_starts_them():
    slowfast, mvit = load_recipe("slowfast_8x8_r50").sampling(), load_recipe("mvitv2_s_16x4").sampling()
    # SlowFast (DATA.USE_OFFSET_SAMPLING false): start = delta * k / views; MViTv2 (true): first to last
    assert slowfast.positions(False, 0, 0, 0) == [k / 10 for k in range(10)]
    assert mvit.positions(False, 0, 0, 0) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert ClipSampling(4, 2, 32, 32, views=1, test_offset=False).positions(False, 0, 0, 0) == [0.0]
    assert ClipSampling(4, 2, 32, 32, views=1).positions(False, 0, 0, 0) == [0.5]


def test_pyslowfast_sampling_indices():
    # get_start_end_idx + temporal_sampling: clip_size = 16 * 4 * 60 / 30 = 128 frames, start = 0.5 * (600 - 128)
    index = TimedWindow(16, 4, 0.5, 30.0).indices(600, 60.0)
    expected = np.linspace(236.0, 236.0 + 127, 16).astype(np.int64)
    assert index.tolist() == expected.tolist()
    # a clip shorter than the window: from frame 0, the last frame repeats
    short = TimedWindow(8, 2, 0.7, 8.0).indices(9, 8.0)
    assert short.tolist() == [0, 2, 4, 6, 8, 8, 8, 8]


def test_synthetic_and_real_windows_cover_the_same_time(clips):
    """A synthetic clip at 8 fps and a real one at 30 fps, sampled by the paper recipes, show the same seconds
    (each frame's grey level is its time); counted in source frames they would not."""
    for recipe in ("mvitv2_s_16x4", "slowfast_8x8_r50"):
        sampling = load_recipe(recipe, {"crop": 32, "short_side": 32, "jitter": None, "test_crop": 32}).sampling()
        seen = {}
        for row in clips.itertuples():
            frames = ClipDataset(clips, sampling, train=False)._decode(row, 0.0)
            seen[row.video_id] = (frames[:, 0, 0, 0].astype(float) - 10) / 20  # seconds
        window = sampling.window_seconds(30.0)
        assert window == pytest.approx(64 / 30)
        for times in seen.values():
            assert times[0] == pytest.approx(0.0, abs=0.1)
            assert times[-1] == pytest.approx(window, abs=0.2)  # the last frame shown, within a frame at 8 fps
        # the same instants up to the 8 fps clip's frame grid (indices are truncated: up to 1/8 s early) and the
        # window's last index (clip_size - 1 frames: 1/30 s vs 1/8 s short of the end), + the grey-level rounding
        assert np.abs(seen["real"] - seen["synthetic"]).max() <= 2 / 8 + 0.05
    report = {row.video_id: window_report(clips[clips["video_id"] == row.video_id], sampling)
              for row in clips.itertuples()}
    assert report["real"]["window_s"] == report["synthetic"]["window_s"] == [round(64 / 30, 4)] * 3
    assert report["real"]["covered_s"] == report["synthetic"]["covered_s"]
    assert report["synthetic"]["fps"] == [8.0] * 3 and report["real"]["fps"] == [30.0] * 3
    assert report["synthetic"]["shorter_than_window"] == 0 and report["real"]["sampling"] == "seconds at 30 fps"
    # the earlier rule (source frames): the 8 fps clip's window is 3.75 times longer than the real one's
    old = ClipSampling(frames=32, stride=2, crop=32, short_side=32)
    spans = {v: window_report(clips[clips["video_id"] == v], old)["window_s"][0] for v in ("real", "synthetic")}
    assert spans["synthetic"] / spans["real"] == pytest.approx(30 / 8)


# ---------------------------------------------------------------------------------------------------------
# Optimiser and BatchNorm


def test_no_weight_decay_on_batchnorm():
    recipe = load_recipe("slowfast_tiny")
    model, _ = build_classifier(ClassifierSpec("slowfast_r50", "tiny", 8, 64), 5)
    groups = {g["name"]: g for g in parameter_groups(model, recipe)}
    norm_ids = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d) for p in m.parameters()}
    assert norm_ids and {id(p) for p in groups["norm"]["params"]} == norm_ids
    assert groups["norm"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 1e-4
    assert not norm_ids & {id(p) for p in groups["decay"]["params"]}
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))
    # the earlier behaviour: BatchNorm decays like every other parameter
    earlier = parameter_groups(model, load_recipe("slowfast_tiny", {"bn_weight_decay": None}))
    assert [g["name"] for g in earlier] == ["decay"] and len(earlier[0]["params"]) == len(list(model.parameters()))
    # MViTv2: LayerNorm is not BatchNorm; its 1-D parameters take no decay through zero_wd_1d
    mvit, _ = build_classifier(ClassifierSpec("mvit_v2_s", "tiny", 8, 64), 5)
    names = [g["name"] for g in parameter_groups(mvit, load_recipe("mvitv2_tiny"))]
    assert names == ["decay", "zero_1d"]


def test_precise_bn_replaces_running_stats_by_the_average_of_batch_statistics():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    model.train()
    batches = [torch.randn(6, 3, 8, 8) * (k + 1) + k for k in range(5)]
    before = model[1].running_mean.clone()
    used = update_bn_stats(model, iter(batches))
    assert used == 5
    with torch.no_grad():
        outs = [model[0](b) for b in batches]
    mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.var(dim=(0, 2, 3), unbiased=True) for o in outs]).mean(0)
    assert not torch.allclose(before, model[1].running_mean)
    assert torch.allclose(model[1].running_mean, mean, atol=1e-5)
    assert torch.allclose(model[1].running_var, var, rtol=1e-4)
    assert model[1].momentum == 0.1  # restored
    assert update_bn_stats(torch.nn.Sequential(torch.nn.Linear(2, 2)), iter([torch.zeros(1, 2)])) == 0


def test_cosine_after_the_warmup():
    recipe = load_recipe("mvitv2_s_16x4", {"epochs": 10, "warmup_epochs": 2})
    steps = 100
    assert lr_at(recipe, 0, steps) == pytest.approx(1e-6)
    assert lr_at(recipe, 20, steps) == pytest.approx(1e-4)  # the cosine starts at the end of the warmup
    assert lr_at(recipe, 60, steps) == pytest.approx(1e-6 + (1e-4 - 1e-6) * 0.5)  # halfway through [20, 100]
    assert lr_at(recipe, 100, steps) == pytest.approx(1e-6)
    plain = load_recipe("mvitv2_s_16x4", {"epochs": 10, "warmup_epochs": 2, "cosine_after_warmup": False})
    assert lr_at(plain, 50, steps) == pytest.approx(1e-6 + (1e-4 - 1e-6) * 0.5)
