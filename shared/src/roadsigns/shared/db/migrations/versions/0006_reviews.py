"""reviews: people's decisions on queued signs, and signs the detector missed

The queue is a query over `signs` (roadsigns.shared.reviews); only decisions are stored.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("sign_id", sa.Integer()),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("class_id", sa.Integer()),
        sa.Column("class_name", sa.String(128)),
        sa.Column("text", sa.Text()),
        sa.Column("x1", sa.Float()),
        sa.Column("y1", sa.Float()),
        sa.Column("x2", sa.Float()),
        sa.Column("y2", sa.Float()),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_reviews_job_id_jobs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sign_id"], ["signs.id"], name=op.f("fk_reviews_sign_id_signs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint("sign_id", name=op.f("uq_reviews_sign_id")),
    )
    op.create_index(op.f("ix_reviews_job_id"), "reviews", ["job_id"])
    op.create_index("ix_reviews_tenant_reviewed_at", "reviews", ["tenant", "reviewed_at"])


def downgrade() -> None:
    op.drop_table("reviews")
