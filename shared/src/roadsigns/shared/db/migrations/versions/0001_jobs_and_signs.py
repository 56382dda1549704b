"""jobs and signs

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(255)),
        sa.Column("content_type", sa.String(64)),
        sa.Column("blob_key", sa.String(255), nullable=False),
        sa.Column("image_width", sa.Integer()),
        sa.Column("image_height", sa.Integer()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("timings_ms", sa.JSON()),
        sa.Column("model_versions", sa.JSON()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_status"), "jobs", ["status"])
    op.create_index(op.f("ix_jobs_created_at"), "jobs", ["created_at"])
    op.create_table(
        "signs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(128), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_confidence", sa.Float(), nullable=False),
        sa.Column("text_matches_class", sa.Boolean()),
        sa.Column("crop_key", sa.String(255)),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_signs_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signs")),
        sa.UniqueConstraint("job_id", "index", name=op.f("uq_signs_job_id")),
    )
    op.create_index(op.f("ix_signs_job_id"), "signs", ["job_id"])
    op.create_index(op.f("ix_signs_class_id"), "signs", ["class_id"])


def downgrade() -> None:
    op.drop_table("signs")
    op.drop_table("jobs")
