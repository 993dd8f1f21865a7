"""Table 2's clips: the real ones (an OphSim world made on the fly, or OphNet2024's CSVs) and each row's synthetic
ones (its generator trained, then clips generated per class), every folder keyed by its inputs under ``work``."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

import baselines
from downstream import synthetic
from downstream.ophnet import OPHNET_NUM_CLASSES, ClipSource, describe_problems, load_clips, num_classes_of, scan_clips
from downstream.table2.config import RowConfig, Table2Config
from ophora.configs import ConfigError, build_config
from ophora.data import manifests
from ophora.data.bundled import resolve_path
from ophora.data.leakage import source_video
from ophora.hashing import cache_key
from ophora.sim.world import WorldConfig, build_world

__all__ = ["RowUnavailable", "world", "real_source", "real_data", "split_sizes", "synthetic_clips", "config_path",
           "clips_fingerprint", "generator_manifest", "world_sources", "world_splits"]

log = logging.getLogger("downstream.table2")


class RowUnavailable(RuntimeError):
    """A synthetic row that cannot be made here (generator not registered, assets missing)."""


def clips_fingerprint(df: pd.DataFrame) -> str:
    """Cache key of a clip table: paths, windows, labels and splits of its rows, in order."""
    columns = [c for c in ("clip_path", "window_start", "window_end", "label", "split") if c in df.columns]
    return cache_key(df[columns].astype(str).to_numpy().tolist())


def config_path(text: str | None) -> Path | None:
    """A config path: ``package:<package>/<path>`` names a file shipped in a package, e.g.
    ``package:ophora/data/ophnet2024/OphNet2024_loca_challenge.csv``; anything else is relative to the working
    directory."""
    return None if text is None else resolve_path(text)


# -- real clips ----------------------------------------------------------------------------------------------
def world(config: Table2Config, work: Path) -> Path:
    """Build (or reuse) the OphSim world of the config under ``work/world/<key>``; return its folder."""
    try:
        world_config = build_config(WorldConfig, config.dataset.ophsim)
    except ConfigError as err:
        raise ConfigError(f"dataset.ophsim.{err.key}", err.reason) from None
    folder = work / "world" / cache_key(world_config)
    if not (folder / "world.json").is_file():
        log.info("building OphSim world in %s", folder)
        build_world(world_config, folder, workers=1, progress=False)
    return folder


def real_source(config: Table2Config, task: str, world_folder: Path | None) -> ClipSource:
    """Where the real clips of ``task`` are: the world's OphNet-format CSVs, or the config's OphNet2024 CSV."""
    data = config.dataset
    if data.kind == "ophsim":
        ophnet = world_folder / "ophnet"
        name = "OphSim_loca_phase.csv" if task == "phase" else "OphSim_loca_operation.csv"
        return ClipSource(ophnet / name, task, segments_root=ophnet / "segments", videos_root=ophnet / "videos")
    if task not in data.csv:
        raise ValueError(f"dataset.csv has no CSV for task {task!r}; it names {sorted(data.csv)}")
    return ClipSource(resolve_path(data.csv[task]), task, segments_root=config_path(data.segments_root),
                      videos_root=config_path(data.videos_root), trim=data.trim)


def real_data(config: Table2Config, task: str, world_folder: Path | None) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(readable clips, unreadable clips with the reason, number of classes) of ``task``."""
    clips = load_clips(real_source(config, task, world_folder))
    readable, problems = scan_clips(clips)
    if len(problems):
        log.warning("%s: %s", task, describe_problems(problems))
    return readable, problems, _num_classes(config, task, clips)


def split_sizes(df: pd.DataFrame) -> dict:
    """Clips per split (train, val, test)."""
    return {s: int((df["split"].astype(str) == s).sum()) for s in ("train", "val", "test")}


def _num_classes(config: Table2Config, task: str, real: pd.DataFrame) -> int:
    if task in config.dataset.num_classes:
        return int(config.dataset.num_classes[task])
    if config.dataset.kind == "ophnet":
        return OPHNET_NUM_CLASSES[task]
    return num_classes_of(real)


# -- synthetic clips -----------------------------------------------------------------------------------------
TRAIN_PATIENTS_CSV = "train_patients.csv"  # beside the world's instructions.csv (its clips/ folder serves both)


def generator_manifest(row: RowConfig, world_folder: Path | None) -> Path | None:
    """The data the row's generator trains (or was trained) on: ``train_manifest``, else the OphSim world's
    instructions of its training-split patients only (the val and test patients' clips must not reach the
    generator: :func:`downstream.table2.preflight.leakage`), else None."""
    if row.train_manifest:
        return config_path(row.train_manifest)
    if world_folder is None:
        return None
    instructions = world_folder / "ophora_instructions"
    target = instructions / TRAIN_PATIENTS_CSV
    if not target.is_file():
        sources = world_sources(world_folder)
        train_sources = {sources[case] for case, split in world_splits(world_folder).items() if split == "train"}
        clips = [c for c in manifests.read_instruction_set(instructions / "instructions.csv")
                 if source_video(c.clip_id) in train_sources]
        manifests.write_instruction_set(target, clips)
    return target


def world_sources(world_folder: Path) -> dict[str, str]:
    """OphSim case id (the OphNet ``video_id``) -> the source video id of its Ophora-160K-style clips."""
    patients = json.loads((world_folder / "world.json").read_text(encoding="utf-8"))["patients"]
    return {case: record["source_id"] for case, record in patients.items()}


def world_splits(world_folder: Path) -> dict[str, str]:
    """OphSim case id -> its split (train, val, test)."""
    patients = json.loads((world_folder / "world.json").read_text(encoding="utf-8"))["patients"]
    return {case: record["split"] for case, record in patients.items()}


def _generator_model(row: RowConfig, world_folder: Path | None, work: Path) -> Path:
    """The row's model folder: given, or trained (cached) on the world's instructions, stage by stage."""
    if row.model is not None:
        return Path(row.model)
    if row.generator not in baselines.names():
        raise RowUnavailable(f"generator {row.generator!r} is not registered (registered: {baselines.names()})")
    manifest = generator_manifest(row, world_folder)
    if manifest is None:
        raise RowUnavailable(f"row {row.label!r}: no model and no train_manifest to train {row.generator!r} on")
    generator = baselines.get(row.generator)
    folder = work / "generators" / f"{row.generator}-{cache_key([row.generator, str(manifest), row.train_overrides])}"
    model = None
    for stage in generator.stages:
        model = generator.train(manifest, folder / stage, stage=stage, init=model,
                                overrides=row.train_overrides or None)
    return Path(model)


OPHSIM_PROCEDURE = "cataract surgery"  # every OphSim case (ophora.sim.world.SURGERY_ID: phacoemulsification)


def _prompts(row: RowConfig, task: str, config: Table2Config, classes: list[int]):
    """The row's prompts: its ``prompts_csv`` or ``template`` when given, else the released ones
    (:func:`downstream.synthetic.released_prompts`: Ophora's phase prompt for a Cataract-1K phase, the class's
    procedure named otherwise) from OphSim's class names or the row's ``class_names`` CSV (``id,name[,procedure]``)."""
    names_file = row.class_names.get(task)
    if row.prompts_csv or row.template:
        names = synthetic.read_class_names(Path(names_file)) if names_file else None
        return synthetic.class_prompts(task, classes, csv=config_path(row.prompts_csv), template=row.template,
                                       names=names)
    if config.dataset.kind == "ophsim":
        names = synthetic.ophsim_names(task)
        return synthetic.released_prompts(task, classes, names, {c: OPHSIM_PROCEDURE for c in names})
    if not names_file:
        raise RowUnavailable(f"row {row.label!r}: the prompts name the classes: set rows[].class_names.{task} to a "
                             "CSV with columns id,name[,procedure]")
    path = Path(names_file)
    return synthetic.released_prompts(task, classes, synthetic.read_class_names(path),
                                      synthetic.read_class_procedures(path))


def synthetic_clips(row: RowConfig, task: str, config: Table2Config, real: pd.DataFrame, world_folder: Path | None,
                    work: Path, seed: int) -> tuple[pd.DataFrame, dict]:
    """The row's synthetic clips (a :func:`~downstream.ophnet.load_clips` frame) and a record of how they were
    made; raises :class:`RowUnavailable` when the row cannot be made here."""
    classes = sorted(int(c) for c in real.loc[real["split"].astype(str) == "train", "label"].unique())
    prompts = _prompts(row, task, config, classes)
    model = row.model.get(task) if isinstance(row.model, dict) else None
    model = Path(model) if model else _generator_model(row, world_folder, work)
    parents = None
    if task == "operation":
        parents = synthetic.ophsim_parents() if config.dataset.kind == "ophsim" else synthetic.phase_of_operations(real)
    key = cache_key([str(model), prompts, row.clips_per_class, seed, task])
    out = work / "synthetic" / f"{row.generator}-{key}"
    csv = synthetic.make_synthetic(row.generator, model, prompts, out, task=task,
                                   clips_per_class=row.clips_per_class, seed=seed, parents=parents,
                                   overrides=row.generate_overrides or None)
    clips = load_clips(ClipSource(csv, task, segments_root=csv.parent, trim="segments"))
    return clips, {"generator": row.generator, "model": str(model), "csv": str(csv), "clips": len(clips),
                   "clips_per_class": row.clips_per_class, "prompts": len(prompts)}
