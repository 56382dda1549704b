"""video jobs: a job's kind, its frame rate, its progress in frames, and its tracks

A video's result is one JSON document on the job (frames_analysed, duration_s, tracks): its
tracks are read with the job, never queried on their own.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("kind", sa.String(8), nullable=False, server_default="photo"))
    op.add_column("jobs", sa.Column("video_fps", sa.Float()))
    op.add_column("jobs", sa.Column("frames_done", sa.Integer()))
    op.add_column("jobs", sa.Column("frames_total", sa.Integer()))
    op.add_column("jobs", sa.Column("video_result", sa.JSON()))


def downgrade() -> None:
    for column in ("video_result", "frames_total", "frames_done", "video_fps", "kind"):
        op.drop_column("jobs", column)
