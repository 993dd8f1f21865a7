"""The study's ratings as tables (unblinded: for the study lead, never served to raters).

``ratings.csv``: the latest revision of every rated assignment, one row per criterion (``rater, set, role,
video, phase, prompt, position, check, repeat_of, criterion, score, revision, rated_at, comment``; ``video`` is
``<set>/<key>``, ``check`` is ``repeat`` for an attention-check repeat, whose ``repeat_of`` is the position of its
first showing). ``revisions.csv``: every revision, the same columns. ``raters.csv``: progress per rater.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import select

from benchmarks.rating import db
from benchmarks.rating.study import OpenStudy
from ophora.data.atomic import atomic_write_text

__all__ = ["COLUMNS", "ratings_frame", "export_study"]

COLUMNS = ["rater", "set", "role", "video", "phase", "prompt", "position", "check", "repeat_of", "criterion",
           "score", "revision", "rated_at", "comment"]


def ratings_frame(study: OpenStudy, latest_only: bool = True) -> pd.DataFrame:
    """Every score of the study (the latest revision per assignment, or all revisions) as a long table."""
    A, R, S = db.Assignment, db.Rating, db.Score
    query = (select(db.Rater.key, db.VideoSet.name, db.VideoSet.role, db.Video.key, db.Video.phase, db.Video.prompt,
                    A.position, A.check_kind, A.repeat_of, A.id, db.Criterion.key, S.value, R.revision,
                    R.created_at, R.comment)
             .select_from(S).join(R, R.id == S.rating_id).join(A, A.id == R.assignment_id)
             .join(db.Rater, db.Rater.id == A.rater_id).join(db.Video, db.Video.id == A.video_id)
             .join(db.VideoSet, db.VideoSet.id == db.Video.set_id).join(db.Criterion, db.Criterion.id == S.criterion_id)
             .order_by(db.Rater.id, A.position, R.revision, db.Criterion.position))
    with db.sessions(study.engine)() as session:
        rows = session.execute(query).all()
        positions = dict(session.execute(select(A.id, A.position)).all())
    frame = pd.DataFrame(rows, columns=["rater", "set", "role", "key", "phase", "prompt", "position", "check",
                                        "repeat_of", "assignment", "criterion", "score", "revision", "rated_at",
                                        "comment"])
    if latest_only and len(frame):
        last = frame.groupby("assignment")["revision"].transform("max")
        frame = frame[frame["revision"] == last]
    frame["video"] = frame["set"] + "/" + frame["key"]
    frame["check"] = frame["check"].fillna("")
    frame["repeat_of"] = frame["repeat_of"].map(lambda a: positions.get(a) if pd.notna(a) else None).astype("Int64")
    return frame[COLUMNS].reset_index(drop=True)


def _raters(study: OpenStudy) -> pd.DataFrame:
    with db.sessions(study.engine)() as session:
        raters = session.scalars(select(db.Rater).order_by(db.Rater.id)).all()
        out = []
        for rater in raters:
            total = len(session.scalars(select(db.Assignment.id).where(db.Assignment.rater_id == rater.id)).all())
            rated = len(set(session.scalars(select(db.Rating.assignment_id).join(db.Assignment)
                                            .where(db.Assignment.rater_id == rater.id)).all()))
            out.append({"rater": rater.key, "assigned": total, "rated": rated,
                        "finished_at": rater.finished_at, "revoked": rater.revoked_at is not None})
    return pd.DataFrame(out, columns=["rater", "assigned", "rated", "finished_at", "revoked"])


def export_study(study: OpenStudy, out: Path) -> list[Path]:
    """Write ratings.csv, revisions.csv and raters.csv into ``out`` (each atomically)."""
    out = Path(out)
    written = []
    for name, frame in (("ratings.csv", ratings_frame(study)), ("revisions.csv", ratings_frame(study, False)),
                        ("raters.csv", _raters(study))):
        written.append(atomic_write_text(out / name, frame.to_csv(index=False)))
    return written
