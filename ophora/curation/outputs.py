"""What a curation run leaves behind, all written atomically under ``<out>/``::

    ophora_160k/instructions.csv + clips/   the curated set, Ophora-160K layout (``clip id,instruction``)
    ophora_28k/instructions.csv + clips/    its privacy-preserving subset, same layout
    provenance.parquet, provenance.csv      one row per input clip: every stage's status, reason, scores, version
    report.md, report_counts.png            counts per stage, drop reasons, bar chart
    run.json                                config (secrets redacted), stage versions, counts, commit

A set's ``clips/`` holds exactly the clips of its ``instructions.csv``: clips of an earlier run that the new
result does not hold are removed. Temporary files that a killed run left beside these outputs (``.<name>.*.tmp*``,
see :func:`ophora.data.atomic.atomic_path`) are removed when the next run starts (:func:`remove_partial_files`).
"""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd

from ophora.curation.pipeline import STAGE_NAMES
from ophora.curation.stage import ClipItem
from ophora.data import manifests
from ophora.data.atomic import atomic_path, atomic_write_text

__all__ = ["provenance_table", "write_set", "write_report", "stage_counts", "link_clip", "remove_partial_files"]

SETS = ("ophora_160k", "ophora_28k")


def link_clip(source: Path, target: Path, mode: str) -> None:
    """Put ``source`` at ``target`` as a hard link (copy across file systems), an absolute symlink or a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    if mode == "symlink":
        os.symlink(source.resolve(), target)
        return
    if mode == "hardlink":
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    with atomic_path(target) as tmp:
        shutil.copy2(source, tmp)


def write_set(root: Path, items: dict[str, ClipItem], records: list[dict], link: str) -> int:
    """Write an Ophora-160K-layout set of ``records`` under ``root`` (and remove clips of earlier runs that are
    not in it); returns the number of clips."""
    clips = []
    for record in records:
        target = root / "clips" / f"{record['clip_id']}.mp4"
        link_clip(items[record["clip_id"]].path, target, link)
        clips.append(manifests.InstructionClip(record["clip_id"], record["instruction"], target))
    manifests.write_instruction_set(root / "instructions.csv", clips)
    _remove_other_clips(root / "clips", {clip.path.name for clip in clips})
    return len(clips)


def _remove_other_clips(folder: Path, keep: set[str]) -> None:
    """Delete the files and links in ``folder`` not named in ``keep`` (sub-folders are left alone)."""
    if not folder.is_dir():
        return
    with os.scandir(folder) as entries:
        stale = [Path(e.path) for e in entries if e.name not in keep and (e.is_symlink() or e.is_file())]
    for path in stale:
        path.unlink(missing_ok=True)


def _is_partial(name: str) -> bool:
    """A temporary file of :func:`ophora.data.atomic.atomic_path`: ``.<stem>.<random>.tmp<suffix>``."""
    return name.startswith(".") and ".tmp" in name


def remove_partial_files(out: Path) -> list[Path]:
    """Delete the temporary files a killed run left in ``out`` and the folders a run writes under it; returns
    them. Call only while no other run writes into ``out``."""
    folders = [out, out / ".work", out / ".ledger"]
    folders += [out / name / sub for name in SETS for sub in ("", "clips")]
    removed = []
    for folder in folders:
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            partial = [Path(e.path) for e in entries if _is_partial(e.name) and not e.is_dir()]
        for path in partial:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _stage_columns(record: dict) -> dict:
    by_stage = {v["stage"]: v for v in record["verdicts"]}
    row = {}
    for name in STAGE_NAMES:
        verdict = by_stage.get(name)
        row[f"{name}_status"] = verdict["status"] if verdict else "skipped"
        row[f"{name}_reason"] = verdict["reason"] if verdict else ""
        row[f"{name}_scores"] = json.dumps(verdict["scores"], sort_keys=True) if verdict else ""
        row[f"{name}_version"] = verdict["version"] if verdict else ""
    return row


COLUMNS = ["clip_id", "source_video", "start", "end", "path", "caption", "in_160k", "in_28k", "drop_stage",
           "drop_reason", "not_28k_reason", "instruction"] + [
    f"{stage}_{field}" for stage in STAGE_NAMES for field in ("status", "reason", "scores", "version")]


def provenance_table(items: list[ClipItem], records: dict[str, dict]) -> pd.DataFrame:
    """One row per input clip, in manifest order, with :data:`COLUMNS` (see the module docstring)."""
    rows = []
    for item in items:
        record = records[item.clip_id]
        privacy = next((v for v in record["verdicts"] if v["stage"] == "privacy"), None)
        rows.append({
            "clip_id": item.clip_id, "source_video": item.source_video, "start": item.start, "end": item.end,
            "path": str(item.path), "caption": item.caption, "in_160k": record["in_160k"],
            "in_28k": record["in_28k"], "drop_stage": record["drop_stage"], "drop_reason": record["drop_reason"],
            "not_28k_reason": privacy["reason"] if privacy and privacy["status"] != "keep" else "",
            "instruction": record["instruction"] or "", **_stage_columns(record)})
    return pd.DataFrame(rows, columns=COLUMNS)


def write_provenance(table: pd.DataFrame, out: Path) -> None:
    with atomic_path(out / "provenance.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    atomic_write_text(out / "provenance.csv", table.to_csv(index=False))


def stage_counts(table: pd.DataFrame) -> list[dict]:
    """Per stage: clips that entered it, were kept, dropped, failed (error) - the report's table."""
    counts = []
    for name in STAGE_NAMES:
        status = table[f"{name}_status"]
        counts.append({"stage": name, "entered": int((status != "skipped").sum()),
                       "kept": int((status == "keep").sum()), "dropped": int((status == "drop").sum()),
                       "errors": int((status == "error").sum())})
    return counts


def _reason_kind(reason: str) -> str:
    """A reason without its numbers: the text before the first ':' or '('."""
    return reason.split(":")[0].split("(")[0].strip() or reason


def _bar_chart(counts: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = [c["stage"] for c in counts]
    x = range(len(names))
    for offset, key, color in ((-0.27, "entered", "#9aa7b8"), (0.0, "kept", "#3b8f5a"), (0.27, "dropped", "#c0504d")):
        values = [c[key] + (c["errors"] if key == "dropped" else 0) for c in counts]
        bars = ax.bar([i + offset for i in x], values, width=0.27,
                      label=key if key != "dropped" else "dropped or failed", color=color)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(list(x), names)
    ax.set_ylabel("clips")
    ax.set_title("Curation: clips per stage (privacy decides the 28K subset only)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def write_report(table: pd.DataFrame, out: Path, input_csv: Path, versions: dict[str, str], notes: list[str]) -> dict:
    """``report.md`` and ``report_counts.png``; returns the counts."""
    counts = stage_counts(table)
    _bar_chart(counts, out / "report_counts.png")
    n160, n28 = int(table["in_160k"].sum()), int(table["in_28k"].sum())
    lines = ["# Curation report", "", f"Input: {len(table)} clips from `{input_csv}`.",
             f"Curated set (Ophora-160K layout): **{n160}** clips in `ophora_160k/`; privacy-preserving subset "
             f"(Ophora-28K layout): **{n28}** clips in `ophora_28k/`.", "",
             "| stage | entered | kept | dropped | failed | version |", "|---|---|---|---|---|---|"]
    lines += [f"| {c['stage']} | {c['entered']} | {c['kept']} | {c['dropped']} | {c['errors']} | "
              f"`{versions.get(c['stage'], '')}` |" for c in counts]
    lines += ["", "![clips per stage](report_counts.png)", "", "## Why clips were dropped", "",
              "| stage | reason | clips |", "|---|---|---|"]
    for name in STAGE_NAMES:
        reasons = table.loc[table[f"{name}_status"].isin(["drop", "error"]), f"{name}_reason"]
        for reason, n in Counter(_reason_kind(r) for r in reasons).most_common():
            lines.append(f"| {name} | {reason} | {n} |")
    lines += ["", "Every clip's verdicts (status, reason, scores, version per stage) are in `provenance.parquet` "
              "and `provenance.csv`."]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes] if notes else []
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return {"stages": counts, "in_160k": n160, "in_28k": n28, "input": len(table)}
