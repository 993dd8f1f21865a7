"""Planted defects: each is where its ground truth says, and a cut is found by PySceneDetect."""
import cv2
import numpy as np
import pytest
from scenedetect import ContentDetector, detect

from ophora.data.video import write_video
from ophora.seeding import rng
from ophora.sim.defects import DEFECT_KINDS, PlantedDefect, choose_defects, defect_flags, plant_defect, plant_defects

T, SIZE, FPS = 32, 128, 8.0


def _texture(seed: int, size: int, tint) -> np.ndarray:
    """A smooth random texture with a bright disk: uint8 [size, size, 3]."""
    noise = rng(seed, "texture").random((size // 8, size // 8, 3)).astype(np.float32)
    img = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) * 120 + np.asarray(tint, np.float32)
    cv2.circle(img, (size // 2, size // 2), size // 4, (230, 200, 170), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _clip(seed: int, tint, size: int = SIZE, t: int = T) -> np.ndarray:
    """A textured disk slowly translated and zoomed: uint8 [t, size, size, 3]."""
    base = _texture(seed, size, tint)
    frames = []
    for i in range(t):
        m = cv2.getRotationMatrix2D((size / 2, size / 2), 0.5 * i, 1.0 + 0.004 * i)
        m[:, 2] += (1.0 * i, 0.5 * i)
        frames.append(cv2.warpAffine(base, m, (size, size), borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


@pytest.fixture(scope="module")
def clean():
    return _clip(0, (40, 60, 90))


@pytest.fixture(scope="module")
def donor():
    return _clip(1, (120, 30, 20))


def _mean_abs_diff(frames: np.ndarray) -> float:
    """Largest mean absolute grey-level difference between consecutive frames."""
    grey = frames.astype(np.float32).mean(axis=-1)
    return float(np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2)).max())


def _cuts(path) -> list[int]:
    scenes = detect(str(path), ContentDetector(threshold=27))
    return [start.frame_num for start, _ in scenes[1:]]


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_input_is_never_modified_and_output_is_uint8(kind, clean, donor):
    before, donor_before = clean.copy(), donor.copy()
    out, defect = plant_defect(kind, clean, rng(0, kind), donor=donor, fps=FPS)
    assert np.array_equal(clean, before) and np.array_equal(donor, donor_before)
    assert out.dtype == np.uint8 and out.ndim == 4 and len(out) == T
    assert isinstance(defect, PlantedDefect) and defect.kind == kind


def test_cut_is_found_by_scenedetect_at_the_planted_frame(tmp_path, clean, donor):
    write_video(tmp_path / "clean.mp4", clean, FPS)
    assert _cuts(tmp_path / "clean.mp4") == []
    for seed in range(3):
        out, defect = plant_defect("cut", clean, rng(seed, "cut"), donor=donor, fps=FPS)
        k = defect.params["cut_frame"]
        assert 0.3 * T <= k <= 0.7 * T
        assert np.array_equal(out[:k], clean[:k]) and not np.array_equal(out[k], clean[k])
        path = write_video(tmp_path / f"cut{seed}.mp4", out, FPS)
        cuts = _cuts(path)
        assert len(cuts) == 1 and abs(cuts[0] - k) <= 1, (cuts, k)


def test_cut_needs_a_donor_and_resizes_it(clean):
    with pytest.raises(ValueError, match="donor"):
        plant_defect("cut", clean, rng(0))
    small = _clip(2, (10, 90, 10), size=64, t=5)
    out, defect = plant_defect("cut", clean, rng(0), donor=small)
    assert out.shape == clean.shape


def test_frozen_clip_is_still(clean):
    out, defect = plant_defect("frozen", clean, rng(0, "frozen"))
    assert _mean_abs_diff(out) < 0.5
    assert _mean_abs_diff(clean) > 2.0 and _mean_abs_diff(clean) > 4 * _mean_abs_diff(out)
    source = clean[defect.params["source_frame"]].astype(np.int16)
    assert np.abs(out.astype(np.int16) - source).max() <= 1


@pytest.mark.parametrize("shape", [(8, 64, 64), (8, 480, 720), (8, 128, 96)])
def test_lowres_is_reduced_by_the_factor(shape):
    frames = np.zeros(shape + (3,), np.uint8)
    out, defect = plant_defect("lowres", frames, rng(0, "lowres", *shape))
    f = defect.params["factor"]
    assert f >= 2
    assert out.shape[1] in (shape[1] // f, shape[1] // f - 1) and out.shape[2] in (shape[2] // f, shape[2] // f - 1)
    assert out.shape[1] % 2 == 0 and out.shape[2] % 2 == 0
    assert (defect.params["height"], defect.params["width"]) == out.shape[1:3]


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool [T, H, W]: pixels that differ."""
    return np.any(a != b, axis=-1)


@pytest.mark.parametrize("size", [64, 128, (480, 720)])
def test_subtitles_sit_in_the_bottom_band_and_change(size):
    h, w = (size, size) if isinstance(size, int) else size
    clip = _clip(3, (40, 60, 90), size=max(h, w), t=T)[:, :h, :w]
    out, defect = plant_defect("subtitles", clip, rng(0, "subtitles", h), fps=FPS)
    changed = _changed(out, clip)
    band_top = defect.params["band_top"]
    assert band_top >= 0.75 * h
    assert not changed[:, :band_top].any()
    assert changed.any(axis=(1, 2)).all()  # every frame has text
    cols = np.nonzero(changed.any(axis=(0, 1)))[0]
    assert abs((cols.min() + cols.max()) / 2 - w / 2) < 0.1 * w  # centred
    starts, texts = defect.params["change_frames"], defect.params["texts"]
    assert len(starts) >= 2 and all(a != b for a, b in zip(texts, texts[1:]))
    assert all(FPS <= b - a <= 2 * FPS for a, b in zip(starts, starts[1:]))
    assert not np.array_equal(changed[starts[0]], changed[starts[1]])  # the text changes over time
    brightest = out[changed].max(axis=-1)
    assert (out[changed].min(axis=-1) >= 235).any() and (brightest <= 15).any()  # white text, black outline


@pytest.mark.parametrize("size", [64, 128, (480, 720)])
def test_watermark_is_static_in_one_corner(size):
    h, w = (size, size) if isinstance(size, int) else size
    clip = _clip(4, (40, 60, 90), size=max(h, w), t=T)[:, :h, :w]
    out, defect = plant_defect("watermark", clip, rng(1, "watermark", h), fps=FPS)
    y0, y1, x0, x1 = defect.params["box"]
    corner = defect.params["corner"]
    assert (y1 <= h / 2) if corner.startswith("top") else (y0 >= h / 2)
    assert (x1 <= w * 0.55) if corner.endswith("left") else (x0 >= w * 0.45)
    changed = _changed(out, clip)
    outside = changed.copy()
    outside[:, y0:y1, x0:x1] = False
    assert changed.any() and not outside.any()
    # The blended text is the same mask in every frame while the scene underneath moves.
    first, last = changed[0], changed[-1]
    assert (first & last).sum() / (first | last).sum() > 0.9
    assert not np.array_equal(clip[0, y0:y1, x0:x1], clip[-1, y0:y1, x0:x1])
    assert 0.35 <= defect.params["alpha"] <= 0.6 and defect.params["text"]


def test_plant_defects_applies_lowres_last(clean, donor):
    out, planted = plant_defects(["lowres", "watermark"], clean, rng(5), donor=donor)
    assert [d.kind for d in planted] == ["watermark", "lowres"]
    assert out.shape[1] < clean.shape[1]


def test_unknown_kind_and_bad_frames_are_rejected(clean):
    with pytest.raises(ValueError, match="known kinds"):
        plant_defect("blur", clean, rng(0))
    with pytest.raises(ValueError, match="uint8"):
        plant_defect("frozen", clean.astype(np.float32), rng(0))


def test_planting_is_deterministic(clean, donor):
    for kind in DEFECT_KINDS:
        a, da = plant_defect(kind, clean, rng(9, kind), donor=donor)
        b, db = plant_defect(kind, clean, rng(9, kind), donor=donor)
        assert np.array_equal(a, b) and da == db


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 1.0])
def test_choose_defects_rate(rate):
    gen = rng(0, "choose", str(rate))
    draws = [choose_defects(rate, gen) for _ in range(2000)]
    assert all(len(d) <= 1 and set(d) <= set(DEFECT_KINDS) for d in draws)
    share = np.mean([bool(d) for d in draws])
    assert abs(share - rate) < 0.03
    if rate >= 0.3:
        assert {d[0] for d in draws if d} == set(DEFECT_KINDS)


def test_defect_flags_cover_every_kind():
    flags = defect_flags([PlantedDefect("frozen", {}), PlantedDefect("watermark", {"text": "x"})])
    assert flags == {"cut": False, "frozen": True, "lowres": False, "subtitles": False, "watermark": True}
    assert defect_flags([]) == dict.fromkeys(DEFECT_KINDS, False)
