"""The stages of Table 1, each cached by its inputs.

Every stage works in ``<cache>/<stage>/<label>-<key>/``, where ``key`` hashes everything the stage's output
depends on (its settings and the keys of the stages it reads). A finished stage leaves ``done.json`` there
(written last, atomically); a rerun with the same inputs reuses the folder at once, and a run killed part way
continues in the same folder: worlds, curation, training and generation resume where they stopped, and
evaluation is redone from the cached reference statistics. Code changes are not part of the key, except the
curation stages' algorithm versions; delete the cache folder after changing the code of another stage. Records
write paths inside the cache relative to it (``<cache>/...``), so a finished cache can be moved or copied.
A ``done.json`` that cannot be read is named in the log, set aside (``done.json.corrupt-<UTC time>``) and the
stage run again.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from baselines import get
from benchmarks.cache import set_aside
from benchmarks.evaluate import EvalConfig, evaluate
from benchmarks.table1 import beyond
from benchmarks.table1.config import SURGICAL_PREFIX, PromptConfig, Row, Table1Config
from ophora.configs import ConfigError, build_config
from ophora.curation.config import CurationConfig
from ophora.curation.outputs import link_clip
from ophora.curation.pipeline import build_stages
from ophora.curation.run import curate
from ophora.data import manifests
from ophora.data.atomic import atomic_write_text
from ophora.data.external import ExternalVideos
from ophora.data.geometry import GeometryMismatchError
from ophora.generation import read_prompts
from ophora.hashing import cache_key, sha256_file
from ophora.results import plain, write_json
from ophora.sim.world import WorldConfig, build_world
from ophora.weights import shipped_digests

__all__ = ["Stage", "Table1Run", "RowResult"]

DONE = "done.json"


CACHE_MARK = "<cache>/"


def portable(value: Any, cache: Path) -> Any:
    """``value`` with every absolute path inside ``cache`` written as ``<cache>/relative/path``, so that a
    stage record stays valid when the cache folder is moved or copied (:func:`localised` reads it back)."""
    if isinstance(value, dict):
        return {k: portable(v, cache) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, cache) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        try:
            return CACHE_MARK + Path(value).relative_to(cache).as_posix()
        except ValueError:
            return value
    return value


def localised(value: Any, cache: Path) -> Any:
    """The inverse of :func:`portable` for the cache folder where the record is read."""
    if isinstance(value, dict):
        return {k: localised(v, cache) for k, v in value.items()}
    if isinstance(value, list):
        return [localised(v, cache) for v in value]
    if isinstance(value, str) and value.startswith(CACHE_MARK):
        return str(cache / value[len(CACHE_MARK):])
    return value


@dataclass(frozen=True)
class Stage:
    """A finished stage: its folder, key, whether this run reused it, and what it recorded."""

    folder: Path
    key: str
    cached: bool
    record: dict


@dataclass
class RowResult:
    row: Row
    videos: str  # the fake set's spec for the harness
    conditional: bool
    stages: list[Stage] = field(default_factory=list)
    evaluation: dict | None = None
    beyond: dict | None = None  # the "Beyond the paper" columns (metrics.beyond): metrics, detectors, failed


class Table1Run:
    """Runs the stages of one config under ``cache``; ``log`` receives one line per stage."""

    def __init__(self, config: Table1Config, cache: Path, log: Callable[[str], None] = print,
                 progress: bool = True):
        self.config, self.cache, self.log, self.progress = config, Path(cache).absolute(), log, progress
        self.timings: dict[str, float] = {}
        self.cache_hits: dict[str, bool] = {}
        self.data_records: dict[str, Any] = {}
        import torch
        from accelerate import PartialState

        self.state = PartialState(cpu=not torch.cuda.is_available())
        self.is_main, self.barrier = self.state.is_main_process, self.state.wait_for_everyone

    # -- the cache -------------------------------------------------------------------------------------
    def stage(self, kind: str, label: str, inputs: Any, work: Callable[[Path], dict], everyone: bool = False) -> Stage:
        """Run ``work(folder)`` unless ``folder`` is done; ``work`` returns the record kept in done.json.

        Under ``accelerate launch`` / ``torchrun`` the main process alone runs a stage unless ``everyone`` (stages
        that shard their own work: training, sharded generation, evaluation); the main process's record is kept.
        """
        key = cache_key({"stage": kind, "inputs": inputs})
        folder = self.cache / kind / f"{label}-{key}"
        name = f"{kind}/{label}"
        done = folder / DONE
        if self._readable(done, name):
            self._log(f"[cached] {name}")
            self.cache_hits[name] = True
            return Stage(folder, key, True, self._read_record(done))
        folder.mkdir(parents=True, exist_ok=True)
        self._log(f"[run]    {name}")
        start = time.perf_counter()
        record = work(folder) if everyone or self.is_main else None
        self.barrier()
        self.timings[name] = round(time.perf_counter() - start, 2)
        if self.is_main:
            document = {"key": key, "inputs": plain(inputs), "record": portable(plain(record), self.cache)}
            atomic_write_text(done, json.dumps(document, indent=2, default=str) + "\n")
        self.barrier()
        self.cache_hits[name] = False
        return Stage(folder, key, False, self._read_record(done))

    def _read_record(self, done: Path) -> dict:
        return localised(json.loads(done.read_text())["record"], self.cache)

    def _readable(self, done: Path, name: str) -> bool:
        """Whether the stage is finished: ``done.json`` exists and reads (one that does not is set aside)."""
        if not done.is_file():
            return False
        try:
            self._read_record(done)
            return True
        except Exception as err:  # whatever is wrong with the record, running the stage again is the remedy
            moved = set_aside(done)
            self._log(f"[corrupt] {name}: {done} is unreadable ({type(err).__name__}: {err}); "
                      f"{'set aside as ' + moved.name if moved else 'left in place'}, running the stage again")
            return False

    def _log(self, line: str) -> None:
        if self.is_main:
            self.log(line)

    # -- data -----------------------------------------------------------------------------------------
    def world(self, which: str) -> Stage:
        spec = getattr(self.config.data, which)

        def work(folder: Path) -> dict:
            cfg = WorldConfig(videos=spec.videos, seed=spec.seed, frames=spec.frames, size=tuple(spec.size),
                              fps=spec.fps, defects=spec.defects)
            summary = build_world(cfg, folder / "world", progress=self.progress)
            return {"world": str(folder / "world"), "counts": summary.get("counts")}

        return self.stage("world", which, spec, work)

    def data_sets(self) -> dict[str, Path]:
        """Paths of the training sets (``original``, ``ophora_160k``, ``ophora_28k``) and the real set."""
        data = self.config.data
        if data.source == "files":
            sets = {name: getattr(data, name) for name in ("original", "ophora_160k", "ophora_28k", "real")}
            self._keys = {name: cache_key(path) for name, path in sets.items()}
            return {name: Path(path) for name, path in sets.items() if path}
        train, heldout = self.world("world"), self.world("heldout")
        curated = self.curation(train)
        original = self.original_set(train)
        self.data_records = {"world": train.record, "heldout": heldout.record, "curation": curated.record,
                             "original": original.record}
        self._keys = {"ophora_160k": curated.key + "/160k", "ophora_28k": curated.key + "/28k",
                      "original": original.key, "real": heldout.key}
        return {"original": original.folder / "instructions.csv",
                "ophora_160k": curated.folder / "curated" / "ophora_160k" / "instructions.csv",
                "ophora_28k": curated.folder / "curated" / "ophora_28k" / "instructions.csv",
                "real": Path(heldout.record["world"]) / "ophora_instructions" / "instructions.csv"}

    def data_key(self, name: str) -> str:
        return self._keys[name]

    def curation(self, world: Stage) -> Stage:
        overrides = self.config.data.curation

        def work(folder: Path) -> dict:
            summary = curate(Path(world.record["world"]) / "ophvl_raw" / "raw.csv", folder / "curated",
                             config, progress=self.progress)
            return {"input": summary["input"], "ophora_160k": summary["in_160k"], "ophora_28k": summary["in_28k"],
                    "stages": summary["stages"], "report": str(folder / "curated" / "report.md")}


        try:
            config = build_config(CurationConfig, overrides)
        except ConfigError as err:
            raise ConfigError(f"data.curation.{err.key}", err.reason, self.config.source) from None
        versions = {stage.name: stage.version for stage in build_stages(config)}
        return self.stage("curation", "ophsim", {"world": world.key, "config": overrides, "versions": versions}, work)

    def original_set(self, world: Stage) -> Stage:
        """The uncurated raw set in the Ophora-160K layout, narration captions as text (what a baseline trained
        on narrated surgical videos without Ophora's curation sees); clips are hard-linked."""

        def work(folder: Path) -> dict:
            raw = manifests.read_raw_set(Path(world.record["world"]) / "ophvl_raw" / "raw.csv",
                                         allow_empty_captions=True)
            kept = [c for c in raw if c.caption.strip()]
            clips = []
            for clip in kept:
                target = folder / "clips" / f"{clip.clip_id}.mp4"
                link_clip(clip.path, target, "hardlink")
                clips.append(manifests.InstructionClip(clip.clip_id, clip.caption.strip(), target))
            manifests.write_instruction_set(folder / "instructions.csv", clips)
            return {"clips": len(clips), "without_caption": len(raw) - len(kept)}

        return self.stage("data", "original", {"world": world.key}, work)

    # -- prompts ----------------------------------------------------------------------------------------
    def prompts(self, real: Path, cfg: PromptConfig | None = None) -> tuple[list, str]:
        """The prompts of ``cfg`` (default: the config's prompt set) and a key of their content."""
        cfg = cfg or self.config.prompts
        path = real if cfg.source == "heldout" else Path(cfg.file or "")
        if cfg.source == "file" and not cfg.file:
            raise ValueError("prompts.source is 'file' but prompts.file is not set")
        prompts = read_prompts(path, cfg.column)
        if cfg.limit is not None:
            prompts = prompts[:cfg.limit]
        return prompts, cache_key({"file": sha256_file(path), "limit": cfg.limit, "column": cfg.column})

    # -- rows --------------------------------------------------------------------------------------------
    def generator(self, row: Row):
        return get(row.generator, **row.options)

    def model(self, row: Row, sets: dict[str, Path]) -> tuple[Path, str, list[Stage]]:
        """The row's trained model folder, its key, and the training stages run or reused."""
        if row.checkpoint:
            path = Path(row.checkpoint)
            return path, cache_key({"checkpoint": str(path.resolve())}), []
        generator, init, init_key, stages = self.generator(row), None, None, []
        for step in row.train:
            inputs = {"generator": row.generator, "options": row.options, "stage": step.stage, "preset": row.preset,
                      "overrides": row.overrides, "data": self.data_key(step.data), "init": init_key}
            manifest = sets[step.data]

            def work(folder: Path, manifest=manifest, step=step, init=init) -> dict:
                model = generator.train(manifest, folder, stage=step.stage, preset=row.preset, init=init,
                                        overrides=row.overrides, progress=self.progress)
                return {"model": str(model), "data": str(manifest), "stage": step.stage}

            label = f"{row.generator}-{step.stage or 'train'}-{step.data}"
            done = self.stage("train", label, inputs, work, everyone=True)
            stages.append(done)
            init, init_key = Path(done.record["model"]), done.key
        return init, init_key, stages

    def videos(self, row: Row, sets: dict[str, Path]) -> RowResult:
        """The row's video set: generated from its prompt set (its own ``prompts`` or the config's), or external."""
        if row.external:
            external = ExternalVideos(row.external, prompts=row.external_prompts, generator=row.name)
            external.validate(decode=False)  # headers, sizes, mapping; evaluation decodes (and lists failures)
            conditional = external.conditional if row.conditional is None else row.conditional
            return RowResult(row, external.spec(), conditional)
        model, model_key, stages = self.model(row, sets)
        generator = self.generator(row)
        cfg = row.prompts or self.config.prompts
        prompts, prompts_key = self.prompts(sets["real"], cfg)
        inputs = {"model": model_key, "prompts": prompts_key, "videos_per_prompt": cfg.videos_per_prompt,
                  "seed": cfg.seed, "overrides": row.generate_overrides, "generator": row.generator}

        def work(folder: Path) -> dict:
            written = generator.generate(model, prompts, folder / "videos", videos_per_prompt=cfg.videos_per_prompt,
                                         seed=cfg.seed, overrides=row.generate_overrides, progress=self.progress)
            return {"videos": str(folder / "videos"), "written_now": len(written), "model": str(model)}

        sharded = bool(getattr(generator, "shards_generation", False))
        done = self.stage("generate", row.generator, inputs, work, everyone=sharded)
        return RowResult(row, done.record["videos"], bool(generator.conditional), stages + [done])

    # -- evaluation ------------------------------------------------------------------------------------
    def _evaluation_inputs(self, result: RowResult, cfg: EvalConfig) -> dict:
        """What an evaluation stage's cache key covers: its settings, the row's videos (their stage keys), the real
        set, and the sha256 of the detectors shipped inside the package (new surgical weights score afresh)."""
        return {"eval": cfg, "videos": [s.key for s in result.stages] or result.videos,
                "real": self.data_key("real"), "shipped": shipped_digests()}

    def evaluate(self, result: RowResult, real: Path, detectors: dict | None, n: int | None = None) -> dict:
        """Score the row's videos against ``real`` under the config's metrics and geometry; ``n``: equal N (the
        real set and the row each scored on ``n`` videos drawn with the config's seed; None: all)."""
        m = self.config.metrics
        metrics = tuple(x for x in m.metrics if x != "clipscore" or result.conditional)
        cfg = EvalConfig(real=str(real), fake=str(result.videos), metrics=metrics,
                         protocols=tuple(sorted(m.protocols.items())), weights=m.weights,
                         detector_seed=m.detector_seed, fid_frames=m.fid_frames, clip_frames=m.clip_frames,
                         clip_model=m.clip_model, tiny_i3d=m.tiny_i3d, seed=self.config.seed,
                         batch_size=m.batch_size, workers=0, bootstrap=m.bootstrap, progress=False,
                         geometry=m.geometry, n_real=n, n_fake=n, fd_infinity=m.fd_infinity)
        inputs = self._evaluation_inputs(result, cfg)

        def work(folder: Path) -> dict:
            try:
                payload = evaluate(dataclasses.replace(cfg, out=None), detectors)  # None on ranks other than 0
            except GeometryMismatchError as err:
                text = str(err).replace("--geometry", "metrics.geometry")
                raise GeometryMismatchError(f"row {result.row.name!r}: {text} (in the Table 1 config)") from None
            if payload is not None:
                write_json(folder / "evaluation.json", payload, config=cfg, seed=cfg.seed)
            return {"evaluation": str(folder / "evaluation.json")}

        done = self.stage("evaluate", _slug(result.row.name), inputs, work, everyone=True)
        payload = json.loads(Path(done.record["evaluation"]).read_text())
        if m.surgical:
            payload = _with_surgical(payload, self._evaluate_surgical(result, real, cfg))
        result.evaluation = payload
        if m.beyond:
            result.beyond = self._evaluate_beyond(result, real, cfg)
        return payload

    def _evaluate_beyond(self, result: RowResult, real: Path, published: EvalConfig) -> dict:
        """The row scored for the "Beyond the paper" columns (:mod:`benchmarks.table1.beyond`): one evaluation per
        pass of :func:`~benchmarks.table1.beyond.plan_passes`, with the row pass's real set, geometry, equal N,
        seed and bootstrap; the paper's and the surgical passes are left as they are."""
        columns = beyond.resolve_columns(self.config.metrics, self.config.source)
        merged: dict = {"metrics": {}, "detectors": {}, "failed": [], "passes": []}
        groups = beyond.plan_passes(columns)
        for i, group in enumerate(groups):
            cfg = dataclasses.replace(published, **beyond.pass_options(group))
            inputs = self._evaluation_inputs(result, cfg)

            def work(folder: Path, cfg=cfg) -> dict:
                payload = evaluate(dataclasses.replace(cfg, out=None))
                if payload is not None:
                    write_json(folder / "evaluation.json", payload, config=cfg, seed=cfg.seed)
                return {"evaluation": str(folder / "evaluation.json")}

            label = _slug(result.row.name) + (f"-{i + 1}" if len(groups) > 1 else "")
            done = self.stage("evaluate-beyond", label, inputs, work, everyone=True)
            payload = json.loads(Path(done.record["evaluation"]).read_text())
            part = beyond.split(group, payload)
            merged["metrics"].update(part["metrics"])
            merged["detectors"].update(part["detectors"])
            merged["failed"] += [{**f, "beyond_pass": i + 1} for f in payload.get("failed", [])]
            merged["passes"].append({"columns": [c.key for c in group], "metrics": list(cfg.metrics),
                                     "protocols": dict(cfg.protocols), "timings_s": payload.get("timings_s", {})})
        return merged

    def _evaluate_surgical(self, result: RowResult, real: Path, published: EvalConfig) -> dict:
        """The row scored with the surgical detectors shipped with the suite (``<metric>/ophsim-surgical``)."""
        text = ("clipscore", "recall")
        metrics = tuple(x for x in self.config.metrics.surgical if x not in text or result.conditional)
        cfg = dataclasses.replace(published, metrics=metrics,
                                  protocols=tuple((x, f"{x}/ophsim-surgical") for x in metrics))
        inputs = self._evaluation_inputs(result, cfg)

        def work(folder: Path) -> dict:
            payload = evaluate(dataclasses.replace(cfg, out=None))
            if payload is not None:
                write_json(folder / "evaluation.json", payload, config=cfg, seed=cfg.seed)
            return {"evaluation": str(folder / "evaluation.json")}

        done = self.stage("evaluate-surgical", _slug(result.row.name), inputs, work, everyone=True)
        return json.loads(Path(done.record["evaluation"]).read_text())


def _with_surgical(published: dict, surgical: dict) -> dict:
    """One evaluation payload: the surgical scores under ``surgical_<metric>`` beside the published-protocol ones
    (metrics, per-video scores, protocols, detectors, failures)."""
    def prefixed(mapping: dict) -> dict:
        return {f"{SURGICAL_PREFIX}{k}": v for k, v in mapping.items()}

    merged = dict(published)
    for key in ("metrics", "per_video"):
        merged[key] = {**published.get(key, {}), **prefixed(surgical.get(key, {}))}
    merged["detectors"] = {**published.get("detectors", {}), **prefixed(surgical.get("detectors", {}))}
    merged["failed"] = published.get("failed", []) + [{**f, "surgical": True} for f in surgical.get("failed", [])]
    merged["comparable_with_literature"] = bool(published.get("comparable_with_literature")
                                                and surgical.get("comparable_with_literature"))
    return merged


def _slug(name: str) -> str:
    keep = "".join(c.lower() if c.isalnum() else "-" for c in name)
    return "-".join(part for part in keep.split("-") if part)

