"""The study's database: SQLAlchemy models, the engine (SQLite by default, any SQLAlchemy URL) and its schema
migrations (Alembic, shipped in ``migrations/`` and applied on ``init`` and ``serve``).

Tables: ``study`` (one row: name, the validated config, the CSRF secret), ``sets``, ``videos`` (source path,
prompt, phase, the blinded media file), ``criteria``, ``raters`` (token hashes, revocation), ``assignments`` (a
rater's ordered videos under opaque public ids, with the attention checks), ``ratings`` (every revision kept:
a new row per save, numbered per assignment) and ``scores`` (one per rating and criterion).

On SQLite every transaction starts with ``BEGIN IMMEDIATE`` and the database runs in WAL mode with a busy
timeout, so concurrent writers queue instead of failing, and a committed rating survives a killed server.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

__all__ = ["Base", "Study", "VideoSet", "Video", "Criterion", "Rater", "Assignment", "Rating", "Score",
           "database_url", "make_engine", "migrate", "sessions", "now"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_NAME = "study.sqlite"


def now() -> dt.datetime:
    """The current UTC time (stored without a zone; every time in the database is UTC)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "study"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[str] = mapped_column(Text)  # the validated study config as JSON
    secret: Mapped[str] = mapped_column(String(64))  # CSRF tokens are HMACs under it
    seed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class VideoSet(Base):
    __tablename__ = "sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)


class Video(Base):
    __tablename__ = "videos"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    set_id: Mapped[int] = mapped_column(ForeignKey("sets.id"), index=True)
    key: Mapped[str] = mapped_column(Text)  # path relative to its set's root
    source_path: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    phase: Mapped[str] = mapped_column(String(200))
    media: Mapped[str] = mapped_column(String(64))  # sha256 of the blinded file: media/<media>.mp4
    video_set: Mapped[VideoSet] = relationship()


class Criterion(Base):
    __tablename__ = "criteria"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    anchor: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)
    low: Mapped[int] = mapped_column(Integer)
    high: Mapped[int] = mapped_column(Integer)


class Rater(Base):
    __tablename__ = "raters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the link's token
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("rater_id", "position", name="uq_assignment_position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("videos.id"))
    position: Mapped[int] = mapped_column(Integer)  # 0-based order in which the rater sees it
    public_id: Mapped[str] = mapped_column(String(40), unique=True)  # the opaque id in URLs
    check_kind: Mapped[str | None] = mapped_column(String(20), nullable=True)  # "repeat" or None
    repeat_of: Mapped[int | None] = mapped_column(ForeignKey("assignments.id"), nullable=True)
    video: Mapped[Video] = relationship()
    rater: Mapped[Rater] = relationship()


class Rating(Base):
    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("assignment_id", "revision", name="uq_rating_revision"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)  # 1 for the first save, 2 for the first change ...
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    scores: Mapped[list["Score"]] = relationship(order_by="Score.criterion_id")


class Score(Base):
    __tablename__ = "scores"
    rating_id: Mapped[int] = mapped_column(ForeignKey("ratings.id"), primary_key=True)
    criterion_id: Mapped[int] = mapped_column(ForeignKey("criteria.id"), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


def database_url(study_dir: str | Path, url: str | None) -> str:
    """``url``, or SQLite in ``study_dir/study.sqlite``."""
    if url:
        return url
    return f"sqlite:///{(Path(study_dir).resolve() / SQLITE_NAME).as_posix()}"


def make_engine(url: str, immediate: bool = True) -> Engine:
    """An engine for ``url``; on SQLite: WAL, foreign keys, a 60 s busy timeout and, with ``immediate`` (for
    writers), ``BEGIN IMMEDIATE`` (without: plain deferred transactions, for readers, which WAL never blocks)."""
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy's begin event below starts transactions
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed transaction survives a crash of
        cursor.execute("PRAGMA foreign_keys=ON")     # the process (not of the machine's power)
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def alembic_config() -> Config:
    """The Alembic configuration of the shipped migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic ``upgrade``); a no-op when it is there already."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def sessions(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
