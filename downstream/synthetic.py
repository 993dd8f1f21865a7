"""Synthetic training clips for surgical workflow recognition (Table 2): prompts per class, K clips per class
from any generator, mixing with real clips at a synthetic:real ratio, and optional confidence filtering.

A synthetic clip's label is the class it was prompted with. ``make_synthetic(..., out=OUT, task=T)`` writes::

    OUT/synthetic_<T>.csv      OphNet format: read_ophnet_csv(OUT/synthetic_<T>.csv, videos_root=OUT)
    OUT/<T>/iiiii_00.mp4       the clips (the generator's folder: manifest.jsonl, generation.json); an
                               external frame folder keeps its layout as OUT/<T>/iiiii_00/
    OUT/<T>/synthetic.json     what made them: generator, model, checkpoint hashes, prompts, K, seed, task

Each row is one clip: ``video_id`` ``syn_<generator>_<T>_<iiiii>``, ``start`` 0, ``end`` its duration in
seconds (frames / fps), ``split`` train, ``segment_path`` relative to OUT, plus an extra ``prompt`` column.

Label columns of the CSV: the task's column (``phase_id`` or ``operation_id``) holds the prompted class. The
phase task writes no ``operation_id`` column (the layout of OphNet's ``..._phase.csv``). The operation task's
``phase_id`` is the operation's phase when ``parents`` gives it (:func:`ophsim_parents`,
:func:`phase_of_operations`), else :data:`UNLABELLED`; ``surgery_id`` is :data:`UNLABELLED` unless given.
:data:`UNLABELLED` is a large non-negative id because ``read_ophnet_csv`` accepts only non-negative ids: use
it as a class index and the error is loud, never a silent wrong label.

Clip ``k`` of the class at position ``c`` among ``C`` classes is generator prompt ``k * C + c`` (file
``{k*C+c:05d}_00.mp4``, seed ``derive_seed(seed, k*C+c, 0)``) and uses that class's prompts in turn, so raising
K later keeps every finished clip. A rerun skips finished clips and refuses a folder made with another
generator, model, seed, task or prompt.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

import baselines
from ophora.data.atomic import atomic_path
from ophora.data.external import parse_spec
from ophora.data.manifests import (
    MANIFEST_NAME,
    GeneratedVideo,
    append_generated,
    read_generated,
    write_ophnet_csv,
)
from ophora.data.video import probe
from ophora.generation.prompts import Prompt, PromptFileError, read_prompts
from ophora.registry import did_you_mean, lookup
from ophora.results import write_json
from ophora.seeding import rng
from ophora.sim.captions import instrument_name, phase_label
from ophora.sim.phases import operations, phases

__all__ = ["TASKS", "UNLABELLED", "RECORD_NAME", "RELEASED_PHASE_TEMPLATE", "PROCEDURE_TEMPLATES", "ClassPrompt",
           "label_column", "class_prompts", "released_prompts", "cataract1k_phases", "read_class_names",
           "read_class_procedures", "ophsim_class_prompts", "ophsim_names", "ophsim_parents", "phase_of_operations",
           "make_synthetic", "mix", "keep_confident", "resolve_paths"]

log = logging.getLogger(__name__)

TASKS = {"phase": "phase_id", "operation": "operation_id"}
UNLABELLED = 999_999  # label of a column the synthetic clip has no label for (see the module docstring)
# Ophora's released phase prompts (ophora/sim/data/phase_prompts.csv, column "phase prompt") are this template
# with the Cataract-1K phase name as the clip id spells it; classes that are not Cataract-1K phases name their
# procedure instead of calling every phase cataract surgery. Operations (no released template) put their name
# first, so that a short text encoder (the tiny preset keeps 32 tokens) still tells them apart.
RELEASED_PHASE_TEMPLATE = "Generate a surgical video clip with the current surgical phase as {name}"
PROCEDURE_TEMPLATES = {
    "phase": "Generate a surgical video clip of {procedure} with the current surgical phase as {name}",
    "operation": "Surgical video clip of {name} during {procedure}"}
RECORD_NAME = "synthetic.json"


@dataclass(frozen=True)
class ClassPrompt:
    """One prompt for class ``label`` (a phase or operation id)."""

    label: int
    text: str


def label_column(task: str) -> str:
    """The OphNet column holding the labels of ``task`` ("phase" -> "phase_id", "operation" -> "operation_id")."""
    return lookup(TASKS, task, "task")


# ---------------------------------------------------------------------------------------------------------
# Prompts per class


def class_prompts(task: str, classes: list[int], csv: Path | None = None, template: str | None = None,
                  names: dict[int, str] | None = None) -> list[ClassPrompt]:
    """Prompts for ``classes`` from a prompt CSV (in file order) or from a template (in ``classes`` order).

    ``csv``: a file like Ophora's ``phase_prompts.csv`` (``phase prompt,clip id,caption prompt``): the text is
    the ``caption prompt`` (or ``instruction``) cell; the class name is the ``clip id`` without its ``_<n>``
    suffix ("Lens-Implantation_1" -> "Lens-Implantation"), mapped to an id through ``names`` (id -> name,
    case-insensitive). Several rows per class give several prompts; rows of classes not in ``classes`` are
    skipped; an unknown name raises naming the row. ``template``: one prompt per class,
    ``template.format(name=names[c], id=c)``. Every class gets >= 1 prompt. :func:`released_prompts` builds Table 2's
    prompts.
    """
    label_column(task)
    classes = _check_classes(classes)
    if (csv is None) == (template is None):
        raise ValueError("class_prompts needs exactly one of csv= (a prompt CSV) or template= (e.g. "
                         f"{RELEASED_PHASE_TEMPLATE!r}); got {'both' if csv is not None else 'neither'}")
    if csv is not None:
        prompts = _prompts_from_csv(Path(csv), names, classes)
    else:
        prompts = _prompts_from_template(template, names, classes)
    _check_covered(prompts, classes, names, csv or "the template")
    return prompts


def _check_classes(classes: Sequence[int]) -> list[int]:
    out = [int(c) for c in classes]
    bad = [c for c, given in zip(out, classes) if c < 0 or c != given]
    if bad or not out:
        raise ValueError(f"classes must be a non-empty list of non-negative integer ids; got {list(classes)!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"classes lists an id twice: {list(classes)!r}")
    return out


def _name_index(names: Mapping[int, str], origin: Any) -> dict[str, int]:
    """Lower-cased class name -> id; two ids with the same name would make labels ambiguous."""
    index: dict[str, int] = {}
    for label, name in names.items():
        key = str(name).strip().lower()
        if key in index:
            raise ValueError(f"names give {name!r} to classes {index[key]} and {label}; names must be unique "
                             f"(needed to read {origin})")
        index[key] = int(label)
    return index


def _class_name(clip_id: str) -> str:
    """Ophora's clip ids name the class and number its prompts: "incision_1" -> "incision"."""
    stem, _, number = clip_id.strip().rpartition("_")
    return stem if stem and number.isdigit() else clip_id.strip()


def _prompts_from_csv(csv: Path, names: Mapping[int, str] | None, classes: list[int]) -> list[ClassPrompt]:
    if not names:
        raise ValueError(f"reading {csv} needs names= (class id -> the class name its 'clip id' column uses, "
                         "e.g. {0: 'incision', 1: 'viscoelastic'})")
    try:
        rows = read_prompts(csv)
    except PromptFileError as err:
        raise ValueError(str(err)) from err
    index, wanted = _name_index(names, csv), set(classes)
    prompts = []
    for row in rows:
        label = _row_label(csv, row, index)
        if label in wanted:
            prompts.append(ClassPrompt(label, row.text))
    return prompts


def _row_label(csv: Path, row: Prompt, index: Mapping[str, int]) -> int:
    if "clip id" not in row.source:
        raise ValueError(f"{csv}: no 'clip id' column (it names each prompt's class, e.g. 'incision_1'); found "
                         f"columns {sorted(row.source)} besides the prompt column")
    clip_id = row.source["clip id"] or ""
    name = _class_name(clip_id)
    if name.lower() not in index:
        hint = did_you_mean(name.lower(), index, n=3, cutoff=0.5)
        raise ValueError(f"{csv}, data row {row.index + 1}, column 'clip id' ({clip_id!r}): unknown class name "
                         f"{name!r}. {hint + ' ' if hint else ''}Known names: {sorted(index)}")
    return index[name.lower()]


def _prompts_from_template(template: str, names: Mapping[int, str] | None,
                           classes: list[int]) -> list[ClassPrompt]:
    names = names or {}
    prompts = []
    for label in classes:
        if "{name}" in template and label not in names:
            raise ValueError(f"template {template!r} uses {{name}} but names= has no name for class {label}")
        try:
            text = template.format(name=names.get(label, str(label)), id=label)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"template {template!r} may only use the fields {{name}} and {{id}} ({err})") from err
        prompts.append(ClassPrompt(label, text.strip()))
    return prompts


def _check_covered(prompts: list[ClassPrompt], classes: list[int], names: Mapping[int, str] | None,
                   origin: Any) -> None:
    found = {p.label for p in prompts}
    missing = [c for c in classes if c not in found]
    if missing:
        named = [f"{c} ({(names or {}).get(c, '?')!r})" for c in missing]
        raise ValueError(f"{origin} gives no prompt for class(es) {', '.join(named)}; every class needs one")
    empty = [p.label for p in prompts if not p.text]
    if empty:
        raise ValueError(f"{origin} gives an empty prompt for class(es) {empty}")


def read_class_names(path: Path) -> dict[int, str]:
    """Class names from a CSV with columns ``id,name`` (e.g. OphNet's phase sheet mapped to Ophora's names)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if not {"id", "name"} <= set(frame.columns):
        raise ValueError(f"{path}: expected columns 'id,name'; found {list(frame.columns)}")
    out = {}
    for row, (label, name) in enumerate(zip(frame["id"], frame["name"]), start=1):
        if not label.strip().isdigit() or not name.strip():
            raise ValueError(f"{path}, data row {row}: expected a non-negative integer id and a name, found "
                             f"{label!r}, {name!r}")
        out[int(label)] = name.strip()
    return out


def read_class_procedures(path: Path) -> dict[int, str]:
    """The optional ``procedure`` column of a class-names CSV (``id,name,procedure``; e.g. "glaucoma surgery"):
    id -> procedure for the rows that give one ({} without the column)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if "procedure" not in frame.columns:
        return {}
    return {int(i): p.strip() for i, p in zip(frame["id"], frame["procedure"]) if i.strip().isdigit() and p.strip()}


def _phase_key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


# Released spellings ("Capsule-Pulishing", "Anterio-Chamber-Flushing") and the usual names of the same phases.
_CATARACT1K_ALIASES = {"capsulepolishing": "capsulepulishing", "anteriorchamberflushing": "anteriochamberflushing",
                       "irrigationandaspiration": "irrigationaspiration", "lensimplant": "lensimplantation",
                       "iolimplantation": "lensimplantation", "phaco": "phacoemulsification"}


def cataract1k_phases() -> dict[str, str]:
    """The 12 Cataract-1K phases of Ophora's released prompts: normalised name (letters and digits, lower case)
    -> the name as the released ``clip id`` spells it (``"capsulepulishing"`` -> ``"Capsule-Pulishing"``).
    Checks that each row's ``phase prompt`` is :data:`RELEASED_PHASE_TEMPLATE` with that name."""
    from importlib import resources

    with resources.as_file(resources.files("ophora.sim").joinpath("data/phase_prompts.csv")) as csv:
        rows = read_prompts(csv)
    phases = {}
    for row in rows:
        name = _class_name(row.source.get("clip id") or "")
        released = row.source.get("phase prompt", RELEASED_PHASE_TEMPLATE.format(name=name))
        if released.strip() != RELEASED_PHASE_TEMPLATE.format(name=name):
            raise ValueError(f"phase_prompts.csv row {row.index + 1}: phase prompt {released!r} is not "
                             f"{RELEASED_PHASE_TEMPLATE!r} with {name!r}")
        phases[_phase_key(name)] = name
    return phases


def released_prompts(task: str, classes: list[int], names: Mapping[int, str],
                     procedures: Mapping[int, str] | None = None) -> list[ClassPrompt]:
    """One prompt per class, the released way: a phase that is a Cataract-1K phase (:func:`cataract1k_phases`,
    matched case-, space- and hyphen-blind, with the usual spellings of the released typos) gets Ophora's
    released phase prompt (:data:`RELEASED_PHASE_TEMPLATE` with the released spelling); any other class names its
    procedure (``procedures[c]``, e.g. "glaucoma surgery") in :data:`PROCEDURE_TEMPLATES`. A class that needs a
    procedure and has none raises, naming it: no class is called cataract surgery by default."""
    label_column(task)
    classes, procedures = _check_classes(classes), procedures or {}
    known = cataract1k_phases()
    prompts, lacking = [], []
    for label in classes:
        if label not in names:
            raise ValueError(f"no name for class {label}: give every class a name (id,name CSV)")
        key = _phase_key(names[label])
        key = _CATARACT1K_ALIASES.get(key, key)
        if task == "phase" and key in known:
            prompts.append(ClassPrompt(label, RELEASED_PHASE_TEMPLATE.format(name=known[key])))
        elif procedures.get(label):
            prompts.append(ClassPrompt(label, PROCEDURE_TEMPLATES[task].format(procedure=procedures[label],
                                                                             name=names[label])))
        else:
            lacking.append(f"{label} ({names[label]!r})")
    if lacking:
        raise ValueError(f"{len(lacking)} {task} class(es) are not Cataract-1K phases and have no procedure: "
                         f"{', '.join(lacking[:5])}{' ...' if len(lacking) > 5 else ''}; add a 'procedure' column "
                         "(e.g. 'glaucoma surgery', 'cataract surgery') to the id,name CSV")
    return prompts


# ---------------------------------------------------------------------------------------------------------
# OphSim's classes


def ophsim_class_prompts(task: str, classes: list[int] | None = None) -> list[ClassPrompt]:
    """Prompts for OphSim's classes, with the ids its ophnet CSVs use (12 phases 0-11, 19 operations 0-18).

    Phases: Ophora's Cataract-1K caption prompts (``ophora/sim/data/phase_prompts.csv``). Operations: one
    instruction-style sentence per operation naming its action, instrument and phase (distinctive words
    first: the tiny preset's text encoder keeps 32 tokens).
    """
    from importlib import resources


    if label_column(task) == "phase_id":
        names = {p.phase_id: p.name for p in phases()}
        with resources.as_file(resources.files("ophora.sim").joinpath("data/phase_prompts.csv")) as csv:
            return class_prompts(task, classes if classes is not None else sorted(names), csv=csv, names=names)
    texts = _ophsim_operation_texts()
    wanted = classes if classes is not None else [op.op_id for op in operations()]
    return class_prompts(task, wanted, template="{name}", names=texts)


def _ophsim_operation_texts() -> dict[int, str]:
    texts = {}
    for phase in phases():
        for op in phase.operations:
            action = f"{op.name[0].upper()}{op.name[1:]} with the {instrument_name(op.instrument)}"
            texts[op.op_id] = f"{action} during {phase_label(phase)} in cataract surgery."
    return texts


def ophsim_names(task: str) -> dict[int, str]:
    """OphSim's class names with the ids of its ophnet CSVs: phases as Cataract-1K spells them, operations as
    OphSim names them ("main corneal incision")."""
    if label_column(task) == "phase_id":
        return {p.phase_id: p.name for p in phases()}
    return {op.op_id: op.name for p in phases() for op in p.operations}


def ophsim_parents() -> dict[int, int]:
    """OphSim's phase id of each operation id (the ``parents`` argument of :func:`make_synthetic`)."""
    return {op.op_id: p.phase_id for p in phases() for op in p.operations}


def phase_of_operations(real: pd.DataFrame) -> dict[int, int]:
    """The most frequent ``phase_id`` of each ``operation_id`` in an OphNet operation frame (ties: lowest id).

    In OphNet2024's challenge CSV 106 of 107 operations lie in one phase; "Others" spans several.
    """
    for name in ("phase_id", "operation_id"):
        if name not in real.columns:
            raise KeyError(f"phase_of_operations needs column {name!r}; found {list(real.columns)}")
    counts = real.groupby(["operation_id", "phase_id"]).size().reset_index(name="n")
    counts = counts.sort_values(["operation_id", "n", "phase_id"], ascending=[True, False, True])
    first = counts.drop_duplicates("operation_id")
    return {int(o): int(p) for o, p in zip(first["operation_id"], first["phase_id"])}


# ---------------------------------------------------------------------------------------------------------
# Generation


@dataclass(frozen=True)
class _Clip:
    """Clip ``k`` of class ``label``: generator prompt ``index`` with ``text``; ``origin``: an external video
    (an .mp4 file or a frame folder) it is taken from."""

    index: int
    label: int
    k: int
    text: str
    origin: Path | None = None

    @property
    def name(self) -> str:
        """File name in the synthetic folder (a frame folder keeps its layout, without suffix)."""
        stem = f"{self.index:05d}_00"
        return stem if self.origin is not None and self.origin.is_dir() else f"{stem}.mp4"

    def prompt(self, task: str) -> Prompt:
        return Prompt(self.index, self.text, {"label": self.label, "task": task, "k": self.k})


def plan_clips(prompts: Sequence[ClassPrompt], clips_per_class: int) -> list[_Clip]:
    """Every clip to make, by generator prompt index (see the module docstring for the numbering)."""
    if not prompts:
        raise ValueError("no prompts: give at least one ClassPrompt")
    if isinstance(clips_per_class, bool) or not isinstance(clips_per_class, int) or clips_per_class < 1:
        raise ValueError(f"clips_per_class must be a positive integer, got {clips_per_class!r}")
    labels = sorted({p.label for p in prompts})
    texts = {c: [p.text for p in prompts if p.label == c] for c in labels}
    return [_Clip(k * len(labels) + c, label, k, texts[label][k % len(texts[label])])
            for k in range(clips_per_class) for c, label in enumerate(labels)]


def make_synthetic(generator: str, model: Path | None, prompts: list[ClassPrompt], out: Path, *, task: str,
                   clips_per_class: int, seed: int = 0, progress: bool = False,
                   parents: Mapping[int, int] | None = None, surgery_id: int = UNLABELLED,
                   overrides: Mapping[str, Any] | None = None) -> Path:
    """Make ``clips_per_class`` clips per class and return ``out/synthetic_<task>.csv`` (see module docstring).

    ``generator``: a name of ``baselines.names()`` (``model`` is the folder its ``train`` returned), or
    ``"external"``: ``model`` is either a generated-video folder (``manifest.jsonl``) or a folder of official-code
    videos with its prompt mapping, ``"external:DIR?prompts=FILE"`` (:mod:`ophora.data.external`). A video whose
    prompt equals a class's prompt text (whitespace-normalised) belongs to that class; clip k of a class is its
    k-th video in the folder's order, hard-linked (else copied) into ``out/<task>/``; videos of no class are
    left out with a warning. ``overrides``: generation settings passed to a registered generator.
    """
    column, out = label_column(task), Path(os.path.abspath(out))
    if model is None:
        raise ValueError(f"make_synthetic needs model=: the model folder of generator {generator!r} (or, for "
                         "'external', the folder of videos)")
    plan, folder = plan_clips(prompts, clips_per_class), out / task
    run = {"generator": generator, "model": _model_id(model), "task": task, "seed": seed}
    _check_previous_run(folder, run)
    if generator == "external":
        sources = _external_sources(model)
        plan = _external_plan(str(model), sources, plan, prompts)
        _check_videos(folder, plan, complete=False)
        _link_external(folder, plan, {s.path: s for s in sources}, task)
    else:
        _generate(generator, Path(model), plan, folder, task, seed, overrides, progress)
    videos = _check_videos(folder, plan, complete=True, check_text=generator == "external" or
                           _is_conditional(generator))
    frame = _synthetic_frame(plan, folder, generator, column, parents, surgery_id)
    csv = write_ophnet_csv(out / f"synthetic_{task}.csv", frame)
    _write_record(folder, run, prompts, clips_per_class, videos, csv, parents, surgery_id)
    return csv


def _model_id(model: Path | str) -> str:
    text = os.fspath(model)
    return text if text.startswith("external:") else str(Path(text).resolve())


def _check_previous_run(folder: Path, run: Mapping[str, Any]) -> None:
    path = folder / RECORD_NAME
    if not path.is_file():
        return
    found = json.loads(path.read_text(encoding="utf-8"))
    changed = {k: (found.get(k), v) for k, v in run.items() if found.get(k) != v}
    if changed:
        raise ValueError(f"{folder} holds synthetic clips made otherwise ({changed}: found vs requested); "
                         "choose another out folder")


def _is_conditional(generator: str) -> bool:
    return bool(getattr(baselines.get(generator), "conditional", True))


def _generate(generator: str, model: Path, plan: list[_Clip], folder: Path, task: str, seed: int,
              overrides: Mapping[str, Any] | None, progress: bool) -> None:
    """Run a registered generator on every clip's prompt (it skips the clips its manifest lists)."""
    _check_videos(folder, plan, complete=False, check_text=_is_conditional(generator))
    baselines.get(generator).generate(model, [clip.prompt(task) for clip in plan], folder, videos_per_prompt=1,
                                      seed=seed, overrides=overrides, progress=progress)


def _check_videos(folder: Path, plan: list[_Clip], complete: bool, check_text: bool = True
                  ) -> dict[int, GeneratedVideo]:
    """The manifest records of the planned clips; a record with another prompt or origin raises, and with
    ``complete`` so does a planned clip without a record or without its file."""
    listed = read_generated(folder, check_files=False) if (folder / MANIFEST_NAME).is_file() else []
    records = {r.path.name: r for r in listed}
    found = {}
    for clip in plan:
        record = records.get(clip.name)
        if record is None or (complete and not record.path.exists()):
            if complete:
                why = f"its {MANIFEST_NAME} does not list it" if record is None else "the file is missing"
                raise RuntimeError(f"{folder}: the generator did not write {clip.name} (class {clip.label}, clip "
                                   f"{clip.k}); {why}")
            continue
        origin = record.extra.get("external_path")
        if (check_text and record.prompt != clip.text) or (clip.origin is not None and origin != str(clip.origin)):
            raise ValueError(f"{folder / clip.name} was made from prompt {record.prompt!r}"
                             f"{f' ({origin})' if origin else ''}, but this run plans {clip.text!r} for it (class "
                             f"{clip.label}, clip {clip.k}); the classes or prompts changed: choose another out")
        found[clip.index] = record
    return found


def _external_sources(model: Path | str) -> list[GeneratedVideo]:
    """The videos of an external folder in its order, as manifest records (official-code videos have no seed,
    recorded as -1, nor checkpoint hash, recorded as "unknown")."""
    text = os.fspath(model)
    if not text.startswith("external:") and (Path(text) / MANIFEST_NAME).is_file():
        return read_generated(text)
    videos = parse_spec(text)
    if not videos.conditional:
        raise ValueError(f"{text}: external videos need their prompts to be labelled; pass "
                         f"'external:{videos.folder}?prompts=<video,prompt CSV>' (or a folder with {MANIFEST_NAME})")
    return [GeneratedVideo(v.path, v.prompt, -1, videos.generator, "unknown", {"layout": v.layout})
            for v in videos.videos]


def _external_plan(source: str, videos: list[GeneratedVideo], plan: list[_Clip],
                   prompts: Sequence[ClassPrompt]) -> list[_Clip]:
    """Assign the external videos to the planned clips: clip k of a class <- its k-th video."""
    by_text = _labels_by_text(prompts)
    per_class: dict[int, list[GeneratedVideo]] = {}
    unmatched = []
    for record in videos:
        label = by_text.get(_normal(record.prompt))
        (per_class.setdefault(label, []) if label is not None else unmatched).append(record)
    if unmatched:
        warnings.warn(f"{source}: {len(unmatched)} video(s) have a prompt of no class and are not used, e.g. "
                      f"{unmatched[0].path.name}: {unmatched[0].prompt!r}", stacklevel=3)
    out = []
    for clip in plan:
        found = per_class.get(clip.label, [])
        if clip.k >= len(found):
            wanted = max(c.k for c in plan) + 1
            raise ValueError(f"{source} holds {len(found)} video(s) prompted with class {clip.label}'s prompts; "
                             f"{wanted} are needed (clips_per_class)")
        video = found[clip.k]
        out.append(dataclasses.replace(clip, text=video.prompt, origin=video.path))
    return out


def _normal(text: str) -> str:
    return " ".join(text.split())


def _labels_by_text(prompts: Sequence[ClassPrompt]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in prompts:
        key = _normal(p.text)
        if out.get(key, p.label) != p.label:
            raise ValueError(f"prompt {p.text!r} belongs to classes {out[key]} and {p.label}: an external video "
                             "with it could not be labelled")
        out[key] = p.label
    return out


def _link_external(folder: Path, plan: list[_Clip], sources: Mapping[Path, GeneratedVideo], task: str) -> None:
    """Hard-link (else copy) each external video into ``folder`` and list it in the folder's manifest."""
    listed = read_generated(folder, check_files=False) if (folder / MANIFEST_NAME).is_file() else []
    done = {r.path.name for r in listed}
    for clip in plan:
        if clip.name in done:
            continue
        target, src = folder / clip.name, sources[clip.origin]
        _link_or_copy(clip.origin, target)
        append_generated(folder, GeneratedVideo(
            target, src.prompt, src.seed, src.generator, src.checkpoint_hash, src.settings,
            {"source": clip.prompt(task).source, "external_path": str(clip.origin)}), check_file=False)


def _link_file(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` appears whole or not at all: an .mp4 file, or a frame folder (its images linked one by one)."""
    if source.is_dir():
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp, copy_function=_link_file)
        shutil.rmtree(target, ignore_errors=True)  # unlisted leftover of an interrupted run
        os.replace(tmp, target)
        return
    with atomic_path(target) as tmp:
        tmp.unlink()
        _link_file(os.fspath(source), os.fspath(tmp))


def _duration(path: Path) -> float:
    """Seconds of video: frame count / frame rate (container metadata, no decoding)."""
    info = probe(path)
    return info.num_frames / info.fps


def _synthetic_frame(plan: list[_Clip], folder: Path, generator: str, column: str,
                     parents: Mapping[int, int] | None, surgery_id: int) -> pd.DataFrame:
    """One OphNet row per clip, sorted by class then clip number."""
    rows = []
    for clip in sorted(plan, key=lambda c: (c.label, c.k)):
        row = {"video_id": f"syn_{generator}_{folder.name}_{clip.index:05d}", "start": 0.0,
               "end": _duration(folder / clip.name), "split": "train", "surgery_id": int(surgery_id)}
        if column == "phase_id":
            row["phase_id"] = clip.label
        else:
            row["phase_id"], row["operation_id"] = _parent(parents, clip.label), clip.label
        row.update(segment_path=f"{folder.name}/{clip.name}", prompt=clip.text)
        rows.append(row)
    return pd.DataFrame(rows)


def _parent(parents: Mapping[int, int] | None, label: int) -> int:
    if parents is None:
        return UNLABELLED
    if label not in parents:
        raise KeyError(f"parents has no phase for operation {label}; give every prompted operation's phase")
    return int(parents[label])


def _write_record(folder: Path, run: Mapping[str, Any], prompts: Sequence[ClassPrompt], clips_per_class: int,
                  videos: Mapping[int, GeneratedVideo], csv: Path, parents, surgery_id: int) -> None:
    payload = {**run, "label_column": label_column(run["task"]), "clips_per_class": clips_per_class,
               "classes": sorted({p.label for p in prompts}), "clips": len(videos), "csv": str(csv),
               "checkpoint_hashes": sorted({v.checkpoint_hash for v in videos.values()}),
               "prompts": [{"label": p.label, "text": p.text} for p in prompts],
               "parents": {str(k): v for k, v in (parents or {}).items()} or None, "surgery_id": surgery_id,
               "unlabelled_id": UNLABELLED}
    write_json(folder / RECORD_NAME, payload, seed=run["seed"])


# ---------------------------------------------------------------------------------------------------------
# Mixing and filtering


def mix(real: pd.DataFrame, synthetic: pd.DataFrame, ratio: float, seed: int, *,
        task: str | None = None) -> pd.DataFrame:
    """All real rows plus ``round(ratio * n_real_train)`` (half up) synthetic train rows, with a ``source``
    column ("real" / "synthetic").

    Synthetic rows are spread over classes as evenly as possible (a class with too few clips gives all it has
    and the others share the rest; which classes get one more is drawn with ``seed``), then drawn per class with
    ``seed``. ``task`` defaults to "operation" when ``synthetic`` has an ``operation_id`` column, else "phase".
    Asking for more synthetic rows than exist raises. Label columns absent from one side get :data:`UNLABELLED`.
    """
    task = task or ("operation" if "operation_id" in synthetic.columns else "phase")
    column = label_column(task)
    _check_mixable(real, synthetic, column, ratio)
    n_real_train = int((real["split"].astype(str) == "train").sum())
    wanted = math.floor(ratio * n_real_train + 0.5)
    pool = synthetic[synthetic["split"].astype(str) == "train"]
    picked = _sample_even(pool, column, wanted, rng(seed, "mix", task))
    return _concat(real, pool.iloc[picked], task, ratio)


def _check_mixable(real: pd.DataFrame, synthetic: pd.DataFrame, column: str, ratio: float) -> None:
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 0):
        raise ValueError(f"ratio must be a finite number >= 0 (synthetic rows per real training row), got {ratio!r}")
    for name, frame in (("real", real), ("synthetic", synthetic)):
        missing = [c for c in ("video_id", "split", column) if c not in frame.columns]
        if missing:
            raise KeyError(f"{name} clips lack column(s) {missing}; found {list(frame.columns)}")
    shared = sorted(set(real["video_id"]) & set(synthetic["video_id"]))
    if shared:
        raise ValueError(f"real and synthetic clips share video ids {shared[:5]}; synthetic ids must be distinct")
    unknown = sorted(set(synthetic[column]) - set(real[column]))
    if unknown:
        raise ValueError(f"synthetic clips have {column} {unknown}, which no real clip has: check the class "
                         "ids the prompts were mapped to")


def _even_quotas(available: Mapping[int, int], wanted: int, generator: np.random.Generator) -> dict[int, int]:
    """Rows per class summing to ``wanted``, as even as ``available`` allows (ties broken by ``generator``)."""
    total = sum(available.values())
    if wanted > total:
        raise ValueError(f"{wanted} synthetic clips requested but only {total} exist ({dict(available)} per "
                         "class): generate more clips per class or lower the ratio")
    quota = {c: 0 for c in available}
    open_classes, left = sorted(c for c, n in available.items() if n > 0), wanted
    while left > 0:
        share, extra = divmod(left, len(open_classes))
        full = [c for c in open_classes if available[c] - quota[c] <= share]
        if full:
            for c in full:
                left -= available[c] - quota[c]
                quota[c] = available[c]
            open_classes = [c for c in open_classes if c not in full]
            continue
        lucky = set(generator.choice(open_classes, size=extra, replace=False).tolist()) if extra else set()
        for c in open_classes:
            quota[c] += share + (c in lucky)
        left = 0
    return quota


def _sample_even(pool: pd.DataFrame, column: str, wanted: int, generator: np.random.Generator) -> list[int]:
    """Positions of ``wanted`` rows of ``pool`` spread evenly over its classes (in ``pool``'s order per class)."""
    labels = pool[column].to_numpy(dtype=np.int64)
    groups = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    quotas = _even_quotas({c: len(rows) for c, rows in groups.items()}, wanted, generator)
    picked: list[int] = []
    for c, rows in groups.items():
        chosen = generator.choice(len(rows), size=quotas[c], replace=False)
        picked += rows[np.sort(chosen)].tolist()
    return picked


def _concat(real: pd.DataFrame, chosen: pd.DataFrame, task: str, ratio: float) -> pd.DataFrame:
    real, chosen = real.assign(source="real"), chosen.assign(source="synthetic")
    for name in ("phase_id", "operation_id"):
        for frame, other in ((real, chosen), (chosen, real)):
            if name in other.columns and name not in frame.columns:
                frame[name] = np.int64(UNLABELLED)
    mixed = pd.concat([real, chosen], ignore_index=True)
    for name in mixed.columns:
        if pd.api.types.is_string_dtype(mixed[name]):  # text only one side has (e.g. prompt): "" on the other
            mixed[name] = mixed[name].fillna("")
    mixed.attrs["mix"] = {"task": task, "ratio": ratio, "real": len(real), "synthetic": len(chosen)}
    return mixed


def keep_confident(synthetic: pd.DataFrame, predict: Callable[[pd.DataFrame], np.ndarray], task: str,
                   min_prob: float = 0.0) -> pd.DataFrame:
    """The synthetic rows a classifier assigns to their prompted class.

    ``predict(synthetic)`` returns probabilities float [N, C] in row order. A row is kept when its own class
    has the highest probability (ties keep it) and at least ``min_prob``. Clips, kept and dropped per class are
    logged and stored in ``result.attrs["keep_confident"]``.
    """
    column = label_column(task)
    labels = synthetic[column].to_numpy(dtype=np.int64)
    probs = _check_probs(predict(synthetic), len(synthetic), labels)
    own = probs[np.arange(len(labels)), labels]
    keep = (own >= probs.max(axis=1)) & (own >= min_prob)
    report = {int(c): {"clips": int((labels == c).sum()), "kept": int((keep & (labels == c)).sum()),
                       "dropped": int((~keep & (labels == c)).sum())} for c in np.unique(labels)}
    for c, counts in report.items():
        log.info("keep_confident %s %d: kept %d of %d, dropped %d", column, c, counts["kept"], counts["clips"],
                 counts["dropped"])
    kept = synthetic[keep].copy()
    kept.attrs["keep_confident"] = {"task": task, "min_prob": min_prob, "per_class": report,
                                    "dropped": int((~keep).sum()), "kept": int(keep.sum())}
    return kept


def _check_probs(probs: Any, rows: int, labels: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != rows:
        raise ValueError(f"predict must return probabilities of shape [N={rows}, C]; got shape {probs.shape}")
    if not np.isfinite(probs).all():
        raise ValueError("predict returned non-finite probabilities")
    if rows and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels run from {labels.min()} to {labels.max()} but predict gives {probs.shape[1]} "
                         "classes")
    return probs


def resolve_paths(frame: pd.DataFrame, roots: Mapping[str, Path]) -> pd.Series:
    """Absolute clip paths of a :func:`mix` result: ``roots[source] / segment_path`` per row (e.g.
    ``{"real": <OphNet segments folder>, "synthetic": <make_synthetic's out>}``)."""
    missing = sorted(set(frame["source"]) - set(roots))
    if missing:
        raise KeyError(f"no root for source(s) {missing}; roots given for {sorted(roots)}")
    return pd.Series([Path(roots[s]) / p for s, p in zip(frame["source"], frame["segment_path"])],
                     index=frame.index, name="path")
