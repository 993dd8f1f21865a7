"""Setting a study up and looking after it: ``init`` resolves the sets, blinds the videos, writes the database
and the raters' links; ``link`` issues a rater a new link (the old one stops working); ``revoke`` closes one.

A study lives in one folder: ``study.json`` (the validated config, with the database URL), ``study.sqlite``
(the default database), and ``media/`` (the blinded videos, named by their SHA-256). Rater tokens are 256-bit
random strings; only their SHA-256 is stored, so a link is shown once, when it is made.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from benchmarks.rating import db
from benchmarks.rating.config import SetSpec, StudyConfig
from benchmarks.rating.design import Item, balance_report, plan_raters
from benchmarks.rating.media import blind_video
from ophora.configs.loader import ConfigError
from ophora.data.atomic import atomic_write_text
from ophora.data.sets import load_video_set
from ophora.results import plain, resolve_path

__all__ = ["StudyError", "SourceVideo", "OpenStudy", "hash_token", "new_token", "phase_of", "resolve_set", "init_study",
           "open_study", "issue_link", "revoke_rater"]

STUDY_FILE = "study.json"
MEDIA = "media"


class StudyError(ValueError):
    """A study that cannot be set up or opened as asked (the message says what to do)."""


@dataclass(frozen=True)
class SourceVideo:
    """A video of a set before blinding: its path, key in its set, prompt and phase."""

    path: Path
    key: str
    prompt: str
    phase: str


@dataclass(frozen=True)
class OpenStudy:
    """A study folder opened for serving, export or analysis."""

    folder: Path
    config: dict
    engine: Engine

    @property
    def media(self) -> Path:
        return self.folder / MEDIA


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A rater's secret: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def _table1_spec(spec: SetSpec) -> tuple[str, str | None]:
    """The video set spec of a Table 1 row (or its real clips) from its results.json."""
    path = Path(spec.table1).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"set {spec.name!r}: Table 1 results not found: expected {path.resolve()} "
                                "(run `python -m benchmarks.table1` first)")
    document = json.loads(path.read_text(encoding="utf-8"))
    if spec.row == "real":
        return str(resolve_path(document["real"]["spec"], document, path)), None
    rows = {row["name"]: row for row in document.get("rows", [])}
    if spec.row not in rows:
        raise ConfigError("row", f"set {spec.name!r}: {path} has no row {spec.row!r}; rows: {sorted(rows)} "
                                 "or 'real'")
    row = rows[spec.row]
    return str(resolve_path(row["videos"], document, path)), None


def phase_of(prompt: str, phases: tuple[str, ...], pattern: re.Pattern | None) -> str | None:
    """The phase a prompt names (see :class:`StudyConfig`), or None when it names none."""
    if phases:
        text = prompt.lower()
        found = [(text.find(p.lower()), -len(p), p) for p in phases if p.lower() in text]
        return min(found)[2] if found else None
    if pattern is not None:
        match = pattern.search(prompt)
        return match.group(1).strip() if match else None
    return "all"


def resolve_set(spec: SetSpec, phase_pattern: str | None, phases: tuple[str, ...] = ()) -> list[SourceVideo]:
    """The videos of one set with their prompts and phases."""
    if spec.table1 is not None:
        videos, prompts = _table1_spec(spec)
    else:
        videos, prompts = spec.videos, spec.prompts
    video_set = load_video_set(videos, prompts)
    if not video_set.items:
        raise StudyError(f"set {spec.name!r}: {videos} holds no videos")
    pattern = re.compile(phase_pattern) if phase_pattern else None
    out = []
    for item in video_set.items:
        if item.prompt is None:
            raise StudyError(f"set {spec.name!r}: {item.path} has no prompt; raters judge videos against their "
                             "prompts: give a generated folder (manifest.jsonl), an Ophora-160K CSV, or 'prompts'")
        phase = phase_of(item.prompt, phases, pattern)
        if phase is None:
            rule = f"none of the phases {list(phases)}" if phases else f"phase_pattern {phase_pattern!r}: no match"
            raise StudyError(f"set {spec.name!r}: cannot tell the phase of {item.path} ({rule}) from its prompt "
                             f"{item.prompt[:160]!r}")
        out.append(SourceVideo(Path(item.path), item.key, item.prompt, phase))
    return out


def _check_table1_rows(config: StudyConfig) -> None:
    """Every Table 1 row the study names exists in its results.json, checked before any video is read, so that a
    mistake in the study file is named before the work starts."""
    for position, spec in enumerate(config.sets):
        if spec.table1 is None:
            continue
        try:
            _table1_spec(spec)
        except ConfigError as err:
            raise ConfigError(f"sets[{position}].{err.key}", err.reason) from None


def _write_structure(session, config: StudyConfig, folder: Path, log) -> list[Item]:
    session.add(db.Study(name=config.name, config=json.dumps(plain(config)), secret=secrets.token_hex(32),
                         seed=config.seed, created_at=db.now()))
    low, high = config.scale
    for position, criterion in enumerate(config.criteria):
        session.add(db.Criterion(key=criterion.key, label=criterion.label, anchor=criterion.anchor,
                                 position=position, low=low, high=high))
    _check_table1_rows(config)
    items = []
    for position, spec in enumerate(config.sets):
        try:
            videos = resolve_set(spec, config.phase_pattern, config.phases)
        except ConfigError as err:
            raise ConfigError(f"sets[{position}].{err.key}", err.reason) from None
        row = db.VideoSet(name=spec.name, role=spec.role, source=spec.table1 or spec.videos or "",
                          position=position)
        session.add(row)
        session.flush()
        log(f"set {spec.name}: {len(videos)} videos, blinding")
        for video in videos:
            media = blind_video(video.path, folder / MEDIA)
            record = db.Video(set_id=row.id, key=video.key, source_path=str(video.path.resolve()),
                              prompt=video.prompt, phase=video.phase, media=media)
            session.add(record)
            session.flush()
            items.append(Item(record.id, row.id, video.phase))
    return items


def _write_assignments(session, config: StudyConfig, items: list[Item]) -> dict[str, str]:
    plans = plan_raters(items, len(config.raters), config.per_set_per_phase, config.checks.repeats, config.seed,
                        config.shared)
    tokens = {}
    for spec, slots in zip(config.raters, plans):
        token = new_token()
        tokens[spec.id] = token
        rater = db.Rater(key=spec.id, name=spec.name, token_hash=hash_token(token), created_at=db.now())
        session.add(rater)
        session.flush()
        ids: list[int] = []
        for position, slot in enumerate(slots):
            assignment = db.Assignment(rater_id=rater.id, video_id=slot.video, position=position,
                                       public_id=secrets.token_urlsafe(16),
                                       check_kind=None if slot.repeat_of is None else "repeat",
                                       repeat_of=None if slot.repeat_of is None else ids[slot.repeat_of])
            session.add(assignment)
            session.flush()
            ids.append(assignment.id)
    report = balance_report(items, plans)
    unbalanced = {k: v for k, v in report.items() if len(set(v)) > 1}
    if unbalanced:
        raise StudyError("the design is not balanced: some sets have too few videos in a phase for "
                         f"per_set_per_phase={config.per_set_per_phase} ({len(unbalanced)} set/phase groups); "
                         "lower per_set_per_phase or add videos")
    return tokens


def init_study(config: StudyConfig, folder: str | Path, database: str | None = None, log=print) -> dict[str, str]:
    """Create the study in ``folder`` (database, blinded media, assignments); return {rater id: token}."""
    folder = Path(folder)
    if (folder / STUDY_FILE).exists():
        raise StudyError(f"{folder / STUDY_FILE} exists: the study is set up already (issue a new link with "
                         f"`python -m benchmarks.rating link {folder} RATER`, or choose another folder)")
    folder.mkdir(parents=True, exist_ok=True)
    url = db.database_url(folder, database or config.database)
    engine = db.make_engine(url)
    db.migrate(engine)
    with db.sessions(engine).begin() as session:
        if session.scalar(select(db.Study.id)) is not None:
            raise StudyError(f"the database {engine.url!r} already holds a study; give an empty database")
        items = _write_structure(session, config, folder, log)
        tokens = _write_assignments(session, config, items)
    document = {"format": "ophora-rating-study/1", "database": url if database or config.database else None,
                "config": plain(config)}
    atomic_write_text(folder / STUDY_FILE, json.dumps(document, indent=2) + "\n")
    engine.dispose()
    return tokens


def open_study(folder: str | Path, database: str | None = None, upgrade: bool = True) -> OpenStudy:
    """Open a study folder made by :func:`init_study` (migrating its database to the shipped schema)."""
    folder = Path(folder)
    path = folder / STUDY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"not a rating study folder: expected {path.resolve()} "
                                "(make one with `python -m benchmarks.rating init STUDY.yaml --out FOLDER`)")
    document = json.loads(path.read_text(encoding="utf-8"))
    engine = db.make_engine(db.database_url(folder, database or document.get("database")))
    if upgrade:
        db.migrate(engine)
    return OpenStudy(folder, document["config"], engine)


def _rater(session, key: str) -> db.Rater:
    rater = session.scalar(select(db.Rater).where(db.Rater.key == key))
    if rater is None:
        known = session.scalars(select(db.Rater.key).order_by(db.Rater.id)).all()
        raise StudyError(f"no rater {key!r} in this study; raters: {', '.join(known)}")
    return rater


def issue_link(study: OpenStudy, key: str) -> str:
    """A new token for rater ``key`` (the old link stops working; a revoked rater is reinstated)."""
    token = new_token()
    with db.sessions(study.engine).begin() as session:
        rater = _rater(session, key)
        rater.token_hash, rater.revoked_at = hash_token(token), None
    return token


def revoke_rater(study: OpenStudy, key: str) -> None:
    """Close rater ``key``'s link: every page and video answers 404 to it from now on."""
    with db.sessions(study.engine).begin() as session:
        _rater(session, key).revoked_at = db.now()
