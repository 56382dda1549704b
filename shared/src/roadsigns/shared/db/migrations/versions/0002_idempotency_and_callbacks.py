"""idempotency keys and completion callbacks

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("idempotency_key", sa.String(255)))
    op.add_column("jobs", sa.Column("request_sha256", sa.String(64)))
    op.add_column("jobs", sa.Column("callback_url", sa.String(2048)))
    op.add_column("jobs", sa.Column("callback_status", sa.String(255)))
    op.add_column("jobs", sa.Column("callback_attempts", sa.Integer(), nullable=False, server_default="0"))
    op.create_unique_constraint(op.f("uq_jobs_idempotency_key"), "jobs", ["idempotency_key"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_jobs_idempotency_key"), "jobs", type_="unique")
    for column in ("callback_attempts", "callback_status", "callback_url", "request_sha256", "idempotency_key"):
        op.drop_column("jobs", column)
