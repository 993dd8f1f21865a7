"""The first schema of the rating study: study, sets, videos, criteria, raters, assignments, ratings, scores.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "sets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_table(
        "videos",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("set_id", sa.Integer, sa.ForeignKey("sets.id"), nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("source_path", sa.Text, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("phase", sa.String(200), nullable=False),
        sa.Column("media", sa.String(64), nullable=False),
    )
    op.create_index("ix_videos_set_id", "videos", ["set_id"])
    op.create_table(
        "criteria",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(40), nullable=False, unique=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("anchor", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("low", sa.Integer, nullable=False),
        sa.Column("high", sa.Integer, nullable=False),
    )
    op.create_table(
        "raters",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(40), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rater_id", sa.Integer, sa.ForeignKey("raters.id"), nullable=False),
        sa.Column("video_id", sa.Integer, sa.ForeignKey("videos.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("public_id", sa.String(40), nullable=False, unique=True),
        sa.Column("check_kind", sa.String(20), nullable=True),
        sa.Column("repeat_of", sa.Integer, sa.ForeignKey("assignments.id"), nullable=True),
        sa.UniqueConstraint("rater_id", "position", name="uq_assignment_position"),
    )
    op.create_index("ix_assignments_rater_id", "assignments", ["rater_id"])
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("assignment_id", sa.Integer, sa.ForeignKey("assignments.id"), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("assignment_id", "revision", name="uq_rating_revision"),
    )
    op.create_index("ix_ratings_assignment_id", "ratings", ["assignment_id"])
    op.create_table(
        "scores",
        sa.Column("rating_id", sa.Integer, sa.ForeignKey("ratings.id"), primary_key=True),
        sa.Column("criterion_id", sa.Integer, sa.ForeignKey("criteria.id"), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("scores", "ratings", "assignments", "raters", "criteria", "videos", "sets", "study"):
        op.drop_table(table)
