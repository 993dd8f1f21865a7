"""Protocols: registry, recorded fields, frame selection rules, and the TF1 bilinear resize of fvd/tf."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from benchmarks.metrics import get_protocol, protocol_for, protocol_names
from benchmarks.metrics.base import ShortVideoError, describe
from benchmarks.metrics.fid import FIDProtocol
from benchmarks.metrics.fvd import FVDProtocol, real_clip_offset, tf1_resize_bilinear


def test_registry_names_and_did_you_mean():
    assert set(protocol_names()) == {"fid/pytorch-fid", "fvd/stylegan-v", "fvd/tf", "clipscore/open_clip", "kid",
                                     "fid/ophsim-surgical", "fvd/ophsim-surgical", "clipscore/ophsim-surgical",
                                     "fid/stylegan-v",
                                     "recall/ophsim-surgical", "fvmd/opencv-lk", "fvmd/raft", "fvmd/raft-small",
                                     "kvd", "kvd/jedi", "fvd/videomae",
                                     "jedi/v-jepa2", "kvmd"}
    with pytest.raises(KeyError, match="Did you mean 'fvd/stylegan-v'"):
        get_protocol("fvd/stylegan")
    with pytest.raises(KeyError, match="Did you mean 'clipscore'"):
        protocol_for("clipscor")
    with pytest.raises(ValueError, match="not one for 'fid'"):
        protocol_for("fid", "fvd/tf")
    with pytest.raises(TypeError, match="no field"):
        protocol_for("fid", frames_per_vid=3)
    with pytest.raises(ValueError, match="at least 1"):
        protocol_for("fid", frames_per_video=0)
    with pytest.raises(ValueError, match="at least 1"):
        protocol_for("clipscore", frames_per_video=0)


def test_every_field_is_recorded_and_versioned():
    for protocol in map(get_protocol, protocol_names()):
        record = describe(protocol)
        assert record == dataclasses.asdict(protocol) and json.loads(json.dumps(record)) == record
        assert record["name"] == protocol.name and record["version"] and record["metric"] in protocol.name
    stylegan, tf = describe(get_protocol("fvd/stylegan-v")), describe(get_protocol("fvd/tf"))
    assert (stylegan["divisor"], tf["divisor"]) == ("N", "N-1")
    assert stylegan["rescale"] and stylegan["resize"] and not tf["rescale"] and not tf["resize"]
    assert "not TF-hub's weights" in tf["preprocess"]
    assert describe(get_protocol("fid/pytorch-fid"))["divisor"] == "N-1"
    assert describe(get_protocol("kid"))["subsets"] == 100 and describe(get_protocol("kid"))["subset_size"] == 1000
    assert "after averaging" in describe(get_protocol("clipscore/open_clip"))["aggregate"]


def test_overrides_are_recorded():
    fid = protocol_for("fid", frames_per_video=3)
    assert describe(fid)["frames_per_video"] == 3 and get_protocol("fid/pytorch-fid").frames_per_video == 8
    every = protocol_for("fid", frames="all", frames_per_video=None)
    assert list(every.frame_indices(5, "real", 0, "a.mp4")) == [0, 1, 2, 3, 4]
    assert list(fid.frame_indices(9, "fake", 0, "a.mp4")) == [0, 4, 8]


def test_fvd_clips_fake_first_real_seeded_offset():
    fvd = FVDProtocol()
    assert list(fvd.frame_indices(40, "fake", 0, "v.mp4")) == list(range(16))
    keys = [f"clips/v{i}.mp4" for i in range(20)]
    offsets = [int(fvd.frame_indices(40, "real", 7, k)[0]) for k in keys]
    assert all(0 <= o <= 24 for o in offsets) and len(set(offsets)) > 5  # random, in range
    assert offsets == [real_clip_offset(7, k, 40, 16) for k in reversed(keys)][::-1]  # order-free
    assert offsets != [int(fvd.frame_indices(40, "real", 8, k)[0]) for k in keys]  # seeded
    assert list(fvd.frame_indices(16, "real", 7, keys[0])) == list(range(16))
    clip = fvd.frame_indices(40, "real", 7, keys[3])
    assert list(clip) == list(range(offsets[3], offsets[3] + 16))


def test_short_videos_name_the_frame_count():
    with pytest.raises(ShortVideoError, match="has 10 frames; fvd/stylegan-v needs 16"):
        FVDProtocol().frame_indices(10, "real", 0, "v.mp4")
    with pytest.raises(ShortVideoError, match="has 15 frames"):
        FVDProtocol().frame_indices(15, "fake", 0, "v.mp4")
    with pytest.raises(ShortVideoError):
        FIDProtocol().frame_indices(0, "fake", 0, "v.mp4")


def _tf1_resize_loops(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 resize_bilinear (align_corners=False, half_pixel_centers=False) pixel by pixel, [H, W] float."""
    in_h, in_w = image.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        y = i * in_h / out_h
        y0, fy = int(np.floor(y)), y - np.floor(y)
        y1 = min(y0 + 1, in_h - 1)
        for j in range(out_w):
            x = j * in_w / out_w
            x0, fx = int(np.floor(x)), x - np.floor(x)
            x1 = min(x0 + 1, in_w - 1)
            top = image[y0, x0] + (image[y0, x1] - image[y0, x0]) * fx
            bottom = image[y1, x0] + (image[y1, x1] - image[y1, x0]) * fx
            out[i, j] = top + (bottom - top) * fy
    return out


@pytest.mark.parametrize("shape,size", [((5, 7), (3, 4)), ((3, 3), (7, 7)), ((6, 4), (6, 4)), ((9, 13), (224, 224))])
def test_tf1_resize_matches_the_legacy_rule(shape, size):
    image = np.random.default_rng(0).uniform(0, 255, shape)
    ours = tf1_resize_bilinear(torch.tensor(image, dtype=torch.float32)[None, None], size)[0, 0].double().numpy()
    np.testing.assert_allclose(ours, _tf1_resize_loops(image, *size), rtol=0, atol=1e-3)


def test_tf1_resize_is_not_half_pixel():
    row = torch.tensor([[[[0.0, 10.0]]]])
    assert tf1_resize_bilinear(row, (1, 4)).flatten().tolist() == [0.0, 5.0, 10.0, 10.0]
    half_pixel = torch.nn.functional.interpolate(row, size=(1, 4), mode="bilinear", align_corners=False)
    assert half_pixel.flatten().tolist() != [0.0, 5.0, 10.0, 10.0]


def test_prepare_outputs():
    frames = np.random.default_rng(1).integers(0, 256, (16, 20, 30, 3), dtype=np.uint8)
    sgv = FVDProtocol().prepare(frames)
    assert sgv.dtype == torch.uint8 and sgv.shape == (3, 16, 20, 30)
    assert torch.equal(sgv[:, 3], torch.from_numpy(frames[3]).permute(2, 0, 1))
    tf = get_protocol("fvd/tf").prepare(frames)
    assert tf.dtype == torch.float32 and tf.shape == (3, 16, 224, 224) and -1 <= tf.min() and tf.max() <= 1
    corner = 2 * float(frames[0, 0, 0, 0]) / 255 - 1
    assert tf[0, 0, 0, 0].item() == pytest.approx(corner, abs=1e-6)  # TF1 keeps pixel (0, 0)
    fid = FIDProtocol().prepare(frames[:2])
    assert fid.shape == (2, 3, 299, 299) and 0 <= fid.min() and fid.max() <= 1
