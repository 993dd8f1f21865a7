"""Write an OphSim world: simulated cataract surgeries as three datasets in the real datasets' formats.

Layout under ``out``::

    world.json                           settings, seed, commit, patients, splits, counts
    ophvl_raw/raw.csv + clips/           OphVL-like narrated clips (noisy narration captions, planted defects)
    ophvl_raw/defects.csv                ground truth of the planted defects, one row per clip
    ophora_instructions/instructions.csv + clips/
                                         Ophora-160K layout (``clip id,instruction``): the same clips, clean,
                                         with the instruction a perfect rewrite would give
    ophnet/videos/<case>.mp4             OphNet-like untrimmed surgeries (all 12 phases)
    ophnet/segments/<case>/<case>_<k>.mp4 trimmed phase and operation segments
    ophnet/OphSim_loca_operation.csv     ``video_id,start,end,split,surgery_id,phase_id,operation_id,segment_path``
    ophnet/OphSim_loca_phase.csv         ``video_id,start,end,split,surgery_id,phase_id,segment_path``
    contact_sheet.png                    one row of frames per phase

Each simulated patient is one surgery. Patients are written one at a time and recorded in
``.progress/<patient>.json``; a run that is stopped and started again with the same settings skips the
finished patients, so nothing is lost and nothing is duplicated. Every file is written atomically.
"""
from __future__ import annotations

import base64
import dataclasses
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ophora.data import manifests
from ophora.data.atomic import atomic_write_text
from ophora.data.video import write_video
from ophora.results import write_json
from ophora.seeding import derive_seed, rng
from ophora.sim import captions, defects
from ophora.sim.contact_sheet import contact_sheet
from ophora.sim.patient import Patient, sample_patient
from ophora.sim.phases import phases
from ophora.sim.render import Segment, render_phase

MIN_CUT_SCORE = 35.0  # a planted cut must be a clear cut: ContentDetector's threshold is 27
SURGERY_ID = 0  # OphNet surgery type of every simulated case: phacoemulsification cataract surgery
SPLIT_FRACTIONS = (("train", 0.6), ("val", 0.2), ("test", 0.2))


@dataclass(frozen=True)
class WorldConfig:
    """Settings of one OphSim world. ``size`` is (height, width) in pixels; ``fps`` in frames per second."""

    videos: int = 6
    seed: int = 0
    frames: int = 33
    size: tuple[int, int] = (128, 128)
    fps: float = 8.0
    defects: float = 0.0
    crf: int = 18

    def __post_init__(self):
        if self.videos < 1:
            raise ValueError(f"videos must be at least 1, got {self.videos}")
        if self.frames < 8:
            raise ValueError(f"frames must be at least 8 per phase clip, got {self.frames}")
        height, width = self.size
        if height < 64 or width < 64 or height % 2 or width % 2:
            raise ValueError(f"size must be even and at least 64x64 (HxW), got {height}x{width}")
        if not 0.0 <= self.defects <= 1.0:
            raise ValueError(f"defects is a rate per clip in [0, 1], got {self.defects}")


@dataclass(frozen=True)
class Case:
    """One simulated surgery: the patient, its OphNet case id, its YouTube-like source id and its split."""

    index: int
    patient: Patient
    case_id: str
    source_id: str
    split: str


def assign_splits(count: int, seed: int) -> list[str]:
    """Split labels for ``count`` patients (train/val/test by patient, 60/20/20, each non-empty from 3 on)."""
    order = rng(seed, "splits").permutation(count)
    n_val = max(1, round(count * 0.2)) if count >= 3 else 0
    n_test = max(1, round(count * 0.2)) if count >= 3 else 0
    labels = ["train"] * count
    for rank, index in enumerate(order):
        if rank < n_val:
            labels[index] = "val"
        elif rank < n_val + n_test:
            labels[index] = "test"
    return labels


def source_id(seed: int, index: int) -> str:
    """An 11-character YouTube-like video id, stable for (seed, index)."""
    raw = derive_seed(seed, "source", index).to_bytes(8, "little") + index.to_bytes(4, "little")
    return base64.urlsafe_b64encode(raw).decode()[:11]


def plan_cases(config: WorldConfig) -> list[Case]:
    """Patients, ids and splits of a world."""
    splits = assign_splits(config.videos, config.seed)
    cases = []
    for index in range(config.videos):
        patient = sample_patient(config.seed, f"sim_{index:04d}")
        cases.append(Case(index, patient, f"case_{index + 1:04d}", source_id(config.seed, index), splits[index]))
    return cases


# ---------------------------------------------------------------------------------------------------------
# One surgery


def _patient_attrs(patient: Patient) -> dict:
    return dataclasses.asdict(patient)


def _donor_clip(config: WorldConfig, case: Case, phase_id: int, attempt: int) -> np.ndarray:
    """Frames of a different patient and phase, spliced in by a planted scene cut."""
    g = rng(config.seed, "donor", case.index, phase_id, attempt)
    other = sample_patient(config.seed, f"donor_{case.index:04d}_{phase_id:02d}_{attempt}")
    other_phase = int((phase_id + g.integers(1, len(phases()))) % len(phases()))
    frames, _ = render_phase(other, other_phase, config.frames, config.size, config.seed, clip_key="donor")
    return frames


def _plant_clear_cut(config, case, phase_id, frames, g, attempts: int = 8):
    """Plant a cut whose ContentDetector score is at least MIN_CUT_SCORE (trying other donors if needed).

    Two random OphSim clips look alike now and then (about 1 pair in 150 scores under 27); such a splice
    would be a cut in the ground truth that no detector could see.
    """
    for attempt in range(attempts):
        cut, record = defects.plant_defect("cut", frames, g, donor=_donor_clip(config, case, phase_id, attempt),
                                           fps=config.fps)
        at = record.params["cut_frame"]
        if defects.content_score(cut[at - 1], cut[at]) >= MIN_CUT_SCORE:
            return cut, record
    raise RuntimeError(f"no donor clip gave a clear cut for {case.case_id} phase {phase_id} in {attempts} tries")


def _raw_clip(config, case, phase, frames, root: Path) -> tuple[dict, dict]:
    """Write one OphVL-like clip (with planted defects) and return its raw.csv and defects.csv rows."""
    clip_id = f"{case.source_id}_{phase.phase_id}"
    g = rng(config.seed, "raw", case.index, phase.phase_id)
    start = phase.phase_id * config.frames / config.fps
    planted = []
    for kind in defects.choose_defects(config.defects, g):
        if kind == "cut":
            frames, record = _plant_clear_cut(config, case, phase.phase_id, frames, g)
        else:
            frames, record = defects.plant_defect(kind, frames, g, fps=config.fps)
        planted.append(record)
    path = write_video(root / "clips" / f"{clip_id}.mp4", frames, config.fps, crf=config.crf)
    caption = captions.narration_caption(phase, phase.operations, _patient_attrs(case.patient), g, start)
    raw = {"clip_id": clip_id, "caption": caption, "source_video": case.source_id, "start": round(start, 3),
           "end": round(start + config.frames / config.fps, 3), "path": f"clips/{path.name}"}
    flags = {"clip_id": clip_id, **defects.defect_flags(planted),
             "params": json.dumps({d.kind: d.params for d in planted}, default=str)}
    return raw, flags


def _instruction_clip(config, case, phase, frames, root: Path) -> dict:
    clip_id = f"{case.source_id}_{phase.phase_id}"
    write_video(root / "clips" / f"{clip_id}.mp4", frames, config.fps, crf=config.crf)
    g = rng(config.seed, "instruction", case.index, phase.phase_id)
    text = captions.instruction(phase, phase.operations, _patient_attrs(case.patient), g)
    return {"clip_id": clip_id, "instruction": text}


def _ophnet_rows(config, case, phase, frames, segments: list[Segment], root: Path, counter: list[int]):
    """Write the phase segment and its operation segments; return (phase row, operation rows)."""
    offset = phase.phase_id * config.frames / config.fps

    def segment_file(clip: np.ndarray) -> str:
        counter[0] += 1
        rel = f"{case.case_id}/{case.case_id}_{counter[0]}.mp4"
        write_video(root / "segments" / rel, clip, config.fps, crf=config.crf)
        return rel

    base = {"video_id": case.case_id, "split": case.split, "surgery_id": SURGERY_ID, "phase_id": phase.phase_id}
    phase_row = {**base, "start": round(offset, 3), "end": round(offset + len(frames) / config.fps, 3),
                 "segment_path": segment_file(frames)}
    op_rows = []
    for seg in segments:
        op_rows.append({**base, "start": round(offset + seg.start_frame / config.fps, 3),
                        "end": round(offset + seg.end_frame / config.fps, 3), "operation_id": seg.op_id,
                        "segment_path": segment_file(frames[seg.start_frame:seg.end_frame])})
    return phase_row, op_rows


def write_case(config: WorldConfig, case: Case, out: Path) -> dict:
    """Render one surgery and write its clips into all three datasets; return its manifest rows."""
    rows = {"raw": [], "defects": [], "instructions": [], "phase": [], "operation": []}
    counter = [0]
    surgery = []
    for phase in phases():
        frames, segments = render_phase(case.patient, phase.phase_id, config.frames, config.size, config.seed)
        surgery.append(frames)
        raw, flags = _raw_clip(config, case, phase, frames, out / "ophvl_raw")
        rows["raw"].append(raw)
        rows["defects"].append(flags)
        rows["instructions"].append(_instruction_clip(config, case, phase, frames, out / "ophora_instructions"))
        phase_row, op_rows = _ophnet_rows(config, case, phase, frames, segments, out / "ophnet", counter)
        rows["phase"].append(phase_row)
        rows["operation"].extend(op_rows)
    write_video(out / "ophnet" / "videos" / f"{case.case_id}.mp4", np.concatenate(surgery), config.fps, crf=config.crf)
    atomic_write_text(out / ".progress" / f"{case.case_id}.json", json.dumps(rows))
    return rows


def _write_case_job(args) -> dict:
    return write_case(*args)


# ---------------------------------------------------------------------------------------------------------
# The world


def _check_settings(out: Path, config: WorldConfig) -> None:
    """Refuse to mix two worlds in one folder: a resumed run must use the settings of the first."""
    settings = out / ".progress" / "config.json"
    wanted = json.dumps(dataclasses.asdict(config), sort_keys=True)
    if settings.exists() and settings.read_text() != wanted:
        raise ValueError(f"{out} holds an OphSim world made with other settings ({settings.read_text()}); "
                         f"choose a new --out folder or delete {out}")
    atomic_write_text(settings, wanted)


def _finished(out: Path, case: Case) -> dict | None:
    path = out / ".progress" / f"{case.case_id}.json"
    return json.loads(path.read_text()) if path.exists() else None


def build_world(config: WorldConfig, out: str | Path, workers: int = 1, progress: bool = True) -> dict:
    """Write (or finish writing) a world under ``out`` and return its summary (also in ``world.json``)."""
    out = Path(out).absolute()
    _check_settings(out, config)
    cases = plan_cases(config)
    rows = {case.case_id: _finished(out, case) for case in cases}
    todo = [case for case in cases if rows[case.case_id] is None]
    bar = tqdm(total=len(cases), initial=len(cases) - len(todo), desc="OphSim surgeries", unit="surgery",
               disable=not progress)
    jobs = [(config, case, out) for case in todo]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for case, result in zip(todo, pool.map(_write_case_job, jobs)):
                rows[case.case_id] = result
                bar.update()
    else:
        for case, job in zip(todo, jobs):
            rows[case.case_id] = _write_case_job(job)
            bar.update()
    bar.close()
    summary = _write_manifests(config, cases, rows, out)
    write_contact_sheet(config, out / "contact_sheet.png")
    write_json(out / "world.json", summary, config=config, seed=config.seed)
    return summary


def _collect(rows: dict, kind: str) -> list[dict]:
    return [row for case_rows in rows.values() for row in case_rows[kind]]


def _write_manifests(config: WorldConfig, cases: list[Case], rows: dict, out: Path) -> dict:
    raw_root, instr_root, ophnet = out / "ophvl_raw", out / "ophora_instructions", out / "ophnet"
    raw = [manifests.RawClip(r["clip_id"], r["caption"], r["source_video"], r["start"], r["end"],
                             raw_root / r["path"]) for r in _collect(rows, "raw")]
    manifests.write_raw_set(raw_root / "raw.csv", raw)
    flags = pd.DataFrame(_collect(rows, "defects"))
    _atomic_csv(flags, raw_root / "defects.csv")
    instructions = [manifests.InstructionClip(r["clip_id"], r["instruction"],
                                              instr_root / "clips" / f"{r['clip_id']}.mp4")
                    for r in _collect(rows, "instructions")]
    manifests.write_instruction_set(instr_root / "instructions.csv", instructions)
    op_cols = ["video_id", "start", "end", "split", "surgery_id", "phase_id", "operation_id", "segment_path"]
    manifests.write_ophnet_csv(ophnet / "OphSim_loca_operation.csv", pd.DataFrame(_collect(rows, "operation"))[op_cols])
    phase_cols = [c for c in op_cols if c != "operation_id"]
    manifests.write_ophnet_csv(ophnet / "OphSim_loca_phase.csv", pd.DataFrame(_collect(rows, "phase"))[phase_cols])
    return {
        "patients": {c.case_id: {"source_id": c.source_id, "split": c.split, **_patient_attrs(c.patient)}
                     for c in cases},
        "counts": {"surgeries": len(cases), "raw_clips": len(raw), "instruction_clips": len(instructions),
                   "phase_segments": len(_collect(rows, "phase")),
                   "operation_segments": len(_collect(rows, "operation")),
                   "defects": {k: int(flags[k].sum()) for k in defects.DEFECT_KINDS}},
    }


def _atomic_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def write_contact_sheet(config: WorldConfig, path: str | Path) -> Path:
    """One row per phase: frames of the first patient's clean phase clips (PNG or JPEG by suffix)."""
    case = plan_cases(config)[0]
    rows = []
    for phase in phases():
        frames, _ = render_phase(case.patient, phase.phase_id, config.frames, config.size, config.seed)
        rows.append((f"{phase.phase_id}: {phase.name}", frames))
    title = f"OphSim, patient {case.patient.patient_id} ({case.patient.iris_color} iris), seed {config.seed}"
    return contact_sheet(rows, path, title=title)
