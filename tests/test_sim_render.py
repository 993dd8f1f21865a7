"""OphSim renderer: determinism, shapes, segments, smooth-but-moving clips, no trivial colour cue, eye state
accumulating over phases, and the contact sheet."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ophora.sim import anterior
from ophora.sim.contact_sheet import contact_sheet
from ophora.sim.eye import static_eye
from ophora.sim.patient import IRIS_COLORS, Patient, sample_patient
from ophora.sim.phases import phases
from ophora.sim.render import render_phase, render_surgery
from ophora.sim.state import eye_state

SMALL = (64, 64)


def content_values(frames: np.ndarray) -> np.ndarray:
    """PySceneDetect ContentDetector's default score between consecutive frames: the mean of the mean absolute
    differences of hue, saturation and value (OpenCV HSV of the BGR frame). frames: uint8 [T, H, W, 3] RGB."""
    hsv = [cv2.cvtColor(np.ascontiguousarray(f[..., ::-1]), cv2.COLOR_BGR2HSV).astype(np.int32) for f in frames]
    return np.array([np.abs(a - b).mean(axis=(0, 1)).mean() for a, b in zip(hsv[:-1], hsv[1:])])


@pytest.fixture(scope="module")
def patients() -> list[Patient]:
    return [sample_patient(0, f"sim_{i:04d}") for i in range(4)]


def test_patients_are_deterministic_and_varied():
    assert sample_patient(3, "sim_0001") == sample_patient(3, "sim_0001")
    many = [sample_patient(3, f"sim_{i:04d}") for i in range(40)]
    assert {p.iris_color for p in many} == set(IRIS_COLORS)
    assert {p.eye_side for p in many} == {"left", "right"}
    assert all(0 < p.pupil_radius < 1 and 0 <= p.lens_opacity <= 1 for p in many)
    assert len({round(p.pupil_radius, 3) for p in many}) > 30


def test_same_inputs_same_frames_regardless_of_call_order(patients):
    first, segs = render_phase(patients[0], 4, 6, SMALL, seed=1)
    render_phase(patients[1], 2, 3, (96, 160), seed=1)
    render_phase(patients[0], 5, 3, SMALL, seed=1)
    again, segs_again = render_phase(patients[0], 4, 6, SMALL, seed=1)
    assert np.array_equal(first, again) and segs == segs_again


@pytest.mark.parametrize("change", ["seed", "patient", "clip_key"])
def test_different_seed_patient_or_clip_gives_different_frames(patients, change):
    base = dict(patient=patients[0], phase_id=3, num_frames=4, size=SMALL, seed=0, clip_key=0)
    other = {**base, **{"seed": dict(seed=1), "patient": dict(patient=patients[1]),
                        "clip_key": dict(clip_key="b")}[change]}
    assert not np.array_equal(render_phase(**base)[0], render_phase(**other)[0])


@pytest.mark.parametrize("size,frames", [((64, 64), 3), ((96, 160), 3), ((128, 128), 2), ((480, 720), 2)])
def test_shapes_and_dtype(patients, size, frames):
    out, segments = render_phase(patients[2], 7, frames, size, seed=0)
    assert out.shape == (frames, *size, 3) and out.dtype == np.uint8
    assert out.std() > 20  # a real picture, not a flat fill


@pytest.mark.parametrize("num_frames", [2, 3, 8, 33])
def test_segments_cover_the_clip_in_operation_order(patients, num_frames):
    for phase in phases():
        _, segments = render_phase(patients[0], phase.phase_id, num_frames, SMALL, seed=2)
        assert [s.op_id for s in segments] == [op.op_id for op in phase.operations]
        assert segments[0].start_frame == 0 and segments[-1].end_frame == num_frames
        assert all(a.end_frame == b.start_frame for a, b in zip(segments, segments[1:]))
        n = len(phase.operations)
        assert all(s.end_frame - s.start_frame >= num_frames / (4 * n) for s in segments)


def test_segment_proportions_vary_between_clips(patients):
    lengths = {render_phase(patients[0], 0, 16, SMALL, seed=0, clip_key=k)[1][0].end_frame for k in range(8)}
    assert len(lengths) > 2


def test_too_few_frames_or_bad_phase_raise(patients):
    with pytest.raises(ValueError, match="num_frames"):
        render_phase(patients[0], 0, 1, SMALL, seed=0)
    with pytest.raises(ValueError, match="phase_id"):
        render_phase(patients[0], 12, 4, SMALL, seed=0)


def test_clips_move_but_never_cut(patients):
    """Consecutive frames differ visibly, and ContentDetector(threshold=27) would never fire inside a clip."""
    for patient in patients[:2]:
        for phase in phases():
            frames, _ = render_phase(patient, phase.phase_id, 16, SMALL, seed=5)
            diffs = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
            assert diffs.min() > 0.5, (patient.patient_id, phase.name)
            assert content_values(frames).max() < 27 / 2, (patient.patient_id, phase.name)


def test_mean_colour_does_not_give_the_phase_away(patients):
    """Nearest-class-mean on per-clip mean RGB, leave one patient out: far from a perfect phase predictor."""
    feats, labels, groups = [], [], []
    for g, patient in enumerate(patients):
        for phase in phases():
            for key in range(2):
                frames, _ = render_phase(patient, phase.phase_id, 4, (48, 48), seed=0, clip_key=key)
                feats.append(frames.reshape(-1, 3).mean(axis=0))
                labels.append(phase.phase_id)
                groups.append(g)
    x, y, groups = np.array(feats), np.array(labels), np.array(groups)
    correct = 0
    for g in range(len(patients)):
        train, test = groups != g, groups == g
        means = np.stack([x[train & (y == c)].mean(axis=0) for c in range(12)])
        pred = np.argmin(((x[test][:, None] - means[None]) ** 2).sum(-1), axis=1)
        correct += int((pred == y[test]).sum())
    assert correct / len(y) < 0.4


def test_eye_state_accumulates_over_phases():
    start = [eye_state(k) for k in range(12)]
    end = [eye_state(k, len(p.operations) - 1, 1.0) for k, p in enumerate(phases())]
    assert start[0].main_wound == 0 and all(s.main_wound == 1 and s.side_wound == 1 for s in start[1:])
    assert [s.rhexis > 0 for s in start] == [False] * 3 + [True] * 9 and end[2].rhexis == 1
    assert [s.nucleus for s in start[:5]] == [1.0] * 5 and all(s.nucleus == 0 for s in start[5:])
    assert all(s.iol == 0 for s in start[:8]) and end[7].iol == 1 and all(s.iol == 1 for s in start[8:])
    assert all(s.pupil_scale == 1 for s in start) and end[11].pupil_scale < 0.7
    assert eye_state(2, 1, 0.5).rhexis == pytest.approx(0.5, abs=0.15)  # the tear grows during the phase
    assert eye_state(4, 1, 0.5).nucleus == pytest.approx(0.5, abs=0.15)


def test_iol_is_drawn_in_the_pupil_only_once_implanted(patients):
    lay, scene = static_eye(patients[0], (128, 128))
    before, after = scene.copy(), scene.copy()
    anterior.draw_iol(before, lay, eye_state(6), 0.5 * lay.radius)
    anterior.draw_iol(after, lay, eye_state(9), 0.5 * lay.radius)
    assert np.array_equal(before, scene)
    changed = np.abs(after.astype(int) - scene).sum(-1) > 30
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 50 and np.hypot(xs - lay.cx, ys - lay.cy).max() < 1.2 * lay.radius


def test_render_surgery_gives_all_phases_in_order(patients):
    clips = render_surgery(patients[3], 2, SMALL, seed=0)
    assert len(clips) == 12
    assert [segs[0].op_id for _, segs in clips] == [p.operations[0].op_id for p in phases()]
    frames, _ = render_phase(patients[3], 6, 2, SMALL, seed=0)
    assert np.array_equal(clips[6][0], frames)


def test_contact_sheet_writes_one_row_per_label(tmp_path, patients):
    rows = [(f"{k}: {phases()[k].name}", render_phase(patients[0], k, 4, SMALL, seed=0)[0]) for k in (0, 7)]
    path = contact_sheet(rows, tmp_path / "sheet.png", frames_per_row=3, title="test sheet")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 2 * SMALL[0] and image.shape[1] > 3 * SMALL[1]
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]  # nothing half-written left behind


def _shape_features(frames: np.ndarray) -> np.ndarray:
    """Mean and std over time of a 24x24 grey clip with each frame's brightness removed: shapes and motion,
    no colour or illumination."""
    small = np.stack([cv2.resize(f, (24, 24), interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    grey = small.mean(-1) / 255
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    return np.concatenate([grey.mean(0).ravel(), grey.std(0).ravel()])


def test_phases_are_learnable_from_shapes_and_motion():
    """A ridge classifier on coarse grey shape/motion features, leaving one patient out, is far above chance
    (1/12): the phase is in the picture, even though the mean colour does not give it away."""
    features, labels, groups = [], [], []
    for p in range(6):
        patient = sample_patient(0, f"learn_{p}")
        for phase_id in range(12):
            for key in range(2):
                frames, _ = render_phase(patient, phase_id, 16, (64, 64), 0, clip_key=key)
                features.append(_shape_features(frames))
                labels.append(phase_id)
                groups.append(p)
    x, y, groups = np.array(features), np.array(labels), np.array(groups)
    correct = 0
    for held_out in range(6):
        train, test = groups != held_out, groups == held_out
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
        a = (x[train] - mu) / sd
        weights = np.linalg.solve(a.T @ a + 10 * np.eye(a.shape[1]), a.T @ np.eye(12)[y[train]])
        predicted = (((x[test] - mu) / sd) @ weights).argmax(1)
        correct += int((predicted == y[test]).sum())
    accuracy = correct / len(y)
    assert accuracy > 0.25, accuracy  # chance is 0.083
