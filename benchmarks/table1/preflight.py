"""Before any compute: every asset a Table 1 config needs that is not on this machine, where it must be, and
how to get it (data sets, prompt file, base weights, checkpoints, official-code videos, detector weights, the
checkpoints that "Beyond the paper" columns name), and
rows that cannot reach the equal N the config requires (``metrics.n``); once the data sets exist, that no
held-out clip leaks from a training set (:func:`leakage`); once every row's videos exist, the N every row is
scored on (:func:`choose_n`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from baselines import get
from benchmarks import metrics as registry
from benchmarks.table1.config import Table1Config
from ophora import weights
from ophora.cli import UsageError
from ophora.configs import load_preset
from ophora.data.external import ExternalVideos
from ophora.data.leakage import LeakageReport, check_leakage, refs_of_instruction_set
from ophora.generation import read_prompts
from ophora.model import ModelNotFoundError, resolve_model_dir

__all__ = ["Missing", "preflight", "format_missing", "leakage", "choose_n", "EqualNError"]

_DATA_HOW = {
    "ophora_160k": "download the Hugging Face dataset General-Medical-AI/Ophora-160K (instructions CSV + clips/), "
                   "or curate your own with `python -m ophora.curate --input RAW.csv --out DIR` (DIR/ophora_160k)",
    "ophora_28k": "run `python -m ophora.curate` with the vlm privacy backend (DIR/ophora_28k/instructions.csv)",
    "original": "the baselines' original training data in the Ophora-160K layout (clip id,instruction + clips/)",
    "real": "held-out real surgical clips in the Ophora-160K layout (clip id,instruction + clips/)",
}


@dataclass(frozen=True)
class Missing:
    asset: str
    expected: str
    how: str


def _data(config: Table1Config) -> list[Missing]:
    data = config.data
    if data.source != "files":
        return []
    needed = {"real"} | {step.data for row in config.rows for step in row.train}
    missing = []
    for name in sorted(needed):
        path = getattr(data, name)
        if not path or not Path(path).is_file():
            missing.append(Missing(f"data set {name!r}", str(path or f"data.{name} (not set)"), _DATA_HOW[name]))
    return missing


def _prompts(config: Table1Config) -> list[Missing]:
    cfg = config.prompts
    if cfg.source == "file" and not (cfg.file and Path(cfg.file).is_file()):
        return [Missing("prompt file", str(cfg.file or "prompts.file (not set)"),
                        "a text file with one prompt per line, or a CSV (e.g. Ophora's phase_prompts.csv)")]
    return []


def _ophora_base(row) -> list[Missing]:
    preset = load_preset(row.preset, dict(row.overrides))
    if preset.model.is_tiny:
        return []
    try:
        resolve_model_dir(preset.model.pretrained)
    except (ModelNotFoundError, FileNotFoundError, ValueError) as err:
        return [Missing(f"row {row.name!r}: CogVideoX-2b weights", str(preset.model.pretrained),
                        f"`huggingface-cli download THUDM/CogVideoX-2b --local-dir DIR` on a machine with network, "
                        f"then `overrides: {{model.pretrained: DIR}}` ({str(err).splitlines()[0][:80]})")]
    return []


def _rows(config: Table1Config) -> list[Missing]:
    missing = []
    for row in config.rows:
        if row.external:
            if not Path(row.external).is_dir():
                missing.append(Missing(f"row {row.name!r}: videos from the official code", row.external,
                                       "run the official repository's sampling script and put its mp4s or frame "
                                       "folders here (see README, 'Videos from the official Endora/Bora code')"))
            if row.external_prompts and not Path(row.external_prompts).is_file():
                missing.append(Missing(f"row {row.name!r}: prompt mapping", row.external_prompts,
                                       "a CSV `video,prompt` naming the prompt of each video"))
            continue
        if row.checkpoint:
            if not (Path(row.checkpoint) / "model_index.json").is_file() and not Path(row.checkpoint).is_dir():
                missing.append(Missing(f"row {row.name!r}: trained model", row.checkpoint,
                                       f"train it with the {row.generator!r} commands of the README (or "
                                       f"`baselines.get({row.generator!r}).train(...)`), then point here"))
            continue
        if row.generator == "ophora":
            missing += _ophora_base(row)
            continue
        generator = get(row.generator)
        check = getattr(generator, "missing_assets", None)
        if check is not None:
            for asset, expected, how in check(row.preset, dict(row.overrides)):
                missing.append(Missing(f"row {row.name!r}: {asset}", expected, how))
    return missing


def _detectors(config: Table1Config) -> list[Missing]:
    m = config.metrics
    if m.weights == "random-init":
        return []
    missing = []
    for metric in dict.fromkeys(registry.get(name).features_from or name for name in m.metrics):
        name = registry.build(metric, m, m.protocols.get(metric)).detector_weights(m)
        if name is None:
            continue
        try:
            weights.resolve(name)
        except KeyError:
            missing.append(Missing(f"{metric} detector weights", name, "not in the weights registry"))
        except (FileNotFoundError, RuntimeError) as err:
            tried = weights.candidate_paths(name)
            reason = "wrong checksum: " if "sha256" in str(err).splitlines()[0].lower() else ""
            missing.append(Missing(f"{metric} detector weights ({name})", str(tried[-1]) if tried else name,
                                   f"{reason}python -m ophora.weights fetch {name} (or put the file in "
                                   f"$OPHORA_WEIGHTS_DIR)"))
    return missing


_BEYOND_HOW = {
    "fvd": "cd-fvd's VideoMAE-v2 ViT-g/14 fine-tuned on SSv2 ({name}, about 4 GB): download {url} on a machine with "
           "network and put it here (the weights registry has no entry for it)",
    "jedi": "V-JEPA 2 ViT-L/16 with its SSv2 probe: on a machine with network, `python -c \"from transformers import "
            "VJEPA2ForVideoClassification as M; M.from_pretrained('{name}').save_pretrained('DIR')\"`, then point "
            "here at DIR/model.safetensors (config.json beside it)",
}


def _beyond(config: Table1Config) -> list[Missing]:
    """Checkpoint files that ``metrics.beyond`` entries name for their detectors (cd-fvd's VideoMAE, V-JEPA 2)."""
    from benchmarks.table1.beyond import resolve_columns

    missing = []
    for column in resolve_columns(config.metrics, config.source):
        for view, path in column.weights:
            if path in ("random-init", "pretrained", "auto"):
                continue
            files = [Path(path)] + ([Path(path).parent / "config.json"] if view == "jedi" else [])
            if all(f.is_file() for f in files):
                continue
            if view == "jedi":
                from benchmarks.detectors.vjepa import CHECKPOINT

                how = _BEYOND_HOW["jedi"].format(name=CHECKPOINT)
            else:
                from benchmarks.detectors.videomae import CHECKPOINT, CHECKPOINT_URL

                how = _BEYOND_HOW["fvd"].format(name=CHECKPOINT, url=CHECKPOINT_URL)
            absent = next(f for f in files if not f.is_file())
            missing.append(Missing(f"beyond-the-paper column {column.title!r} ({column.protocol}"
                                   f"{' on ' + column.features if column.features else ''}): checkpoint of its "
                                   f"{view} detector (metrics.beyond[{column.entry}].weights)", str(absent), how))
    return missing


class EqualNError(UsageError):
    """A row (or the real set) has fewer videos than the N every row must be scored on (a user error: printed as
    one ``error:`` line)."""


def choose_n(config: Table1Config, rows: dict[str, int], real: int) -> dict | None:
    """The N every row and the real set are scored on (``metrics.n``; None when the config asks for none) from the
    number of videos each row has (``rows``: name -> N) and the real set has: ``metrics.n`` itself, a set with
    fewer refused (:class:`EqualNError` naming it, its N and the N required), or with ``metrics.n_fallback`` the
    largest N every set has, at most ``metrics.n``. The record goes into ``results.json`` as ``equal_n``."""
    m = config.metrics
    if m.n is None:
        return None
    sizes = {**{f"row {name!r}": count for name, count in rows.items()}, "the real set": real}
    n = min([m.n, *sizes.values()]) if m.n_fallback else m.n
    short = [f"{name} has N={count}" for name, count in sizes.items() if count < n]
    if short or n < 1:
        raise EqualNError(f"Table 1 config {config.name!r}: every row is scored on N={n} videos (metrics.n), but "
                          f"{'; '.join(short) or 'a set is empty'}: give those sets more videos, lower metrics.n, or "
                          f"set metrics.n_fallback: true to use the largest N every set has")
    return {"n": n, "requested": m.n, "fallback": m.n_fallback, "seed": config.seed, "rows": dict(rows),
            "real": real, "drawn": "without replacement, by ophora.seeding.rng(seed, 'equal-n', role), in set order"}


def _expected_videos(config: Table1Config, row) -> int | None:
    """How many videos a row will have, where that is known before any compute (an external folder's videos; a
    generated row's prompts x videos per prompt when its prompt set is a file on disk), else None."""
    try:
        if row.external:
            return len(ExternalVideos(row.external, prompts=row.external_prompts, generator=row.name).videos)
        cfg = row.prompts or config.prompts
        path = config.data.real if cfg.source == "heldout" and config.data.source == "files" else cfg.file
        if cfg.source == "file" or path:
            prompts = read_prompts(Path(path or ""), cfg.column)
            return len(prompts[:cfg.limit] if cfg.limit is not None else prompts) * cfg.videos_per_prompt
    except Exception:  # noqa: BLE001 - a missing or unreadable asset is listed by the checks above
        return None
    return None


def _equal_n(config: Table1Config) -> list[Missing]:
    """Rows known to have fewer videos than ``metrics.n`` requires (without ``n_fallback``)."""
    m = config.metrics
    if m.n is None or m.n_fallback:
        return []
    missing = []
    for row in config.rows:
        count = _expected_videos(config, row)
        if count is not None and count < m.n:
            where = row.external or f"prompts x videos_per_prompt of row {row.name!r}"
            missing.append(Missing(f"row {row.name!r}: N={count} videos, fewer than the N={m.n} every row is "
                                   f"scored on (metrics.n)", where,
                                   "give the row more videos (more prompts or videos_per_prompt, or a fuller "
                                   "external folder), lower metrics.n, or set metrics.n_fallback: true"))
    return missing


def preflight(config: Table1Config) -> list[Missing]:
    """Everything missing; an empty list means the run can start."""
    return _data(config) + _prompts(config) + _rows(config) + _detectors(config) + _beyond(config) + \
        _equal_n(config)


def format_missing(missing: list[Missing], config: Table1Config) -> str:
    lines = [f"Table 1 config {config.name!r} ({config.source}) cannot start: {len(missing)} asset(s) missing.", ""]
    for i, item in enumerate(missing, start=1):
        lines += [f"{i}. {item.asset}", f"   expected at: {item.expected}", f"   how to get it: {item.how}"]
    return "\n".join(lines)


def leakage(config: Table1Config, sets: dict[str, Path], cache: Path | None = None) -> LeakageReport:
    """The held-out real clips against every training set of the config (``original``, ``ophora_160k``,
    ``ophora_28k`` where present), by source video and near-duplicate frames (:mod:`ophora.data.leakage`, as
    ``config.leakage`` switches them; pHashes cached in ``cache``). Leaks raise
    :class:`~ophora.data.leakage.LeakageError` naming both clips unless ``leakage.allow`` (recorded)."""
    train = {name: refs_of_instruction_set(sets[name]) for name in ("original", "ophora_160k", "ophora_28k")
             if sets.get(name) is not None and Path(sets[name]).is_file()}
    report = check_leakage(train, {"real": refs_of_instruction_set(sets["real"])}, config.leakage, cache)
    absent = [name for name in ("original", "ophora_160k", "ophora_28k") if name not in train]
    report.skipped += [f"training set {name!r}: not in this config" for name in absent]
    return report.enforce(config.leakage.allow)
