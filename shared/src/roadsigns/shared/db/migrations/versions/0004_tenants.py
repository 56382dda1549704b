"""tenants: every job belongs to the tenant of the API key that made it

Idempotency keys become per tenant. Jobs made before this belong to "default", the tenant
of a gateway without keys and of keys written without a tenant.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("tenant", sa.String(64), nullable=False, server_default="default"))
    op.drop_constraint("uq_jobs_idempotency_key", "jobs", type_="unique")
    op.create_unique_constraint("uq_jobs_tenant_idempotency_key", "jobs", ["tenant", "idempotency_key"])
    op.create_index("ix_jobs_tenant_created_at", "jobs", ["tenant", "created_at"])


def downgrade() -> None:
    # Two tenants may hold the same key now: keep the oldest job's, drop the key from the others.
    op.execute(
        "UPDATE jobs SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL AND id NOT IN ("
        "SELECT DISTINCT ON (idempotency_key) id FROM jobs WHERE idempotency_key IS NOT NULL "
        "ORDER BY idempotency_key, created_at, id)"
    )
    op.drop_index("ix_jobs_tenant_created_at", "jobs")
    op.drop_constraint("uq_jobs_tenant_idempotency_key", "jobs", type_="unique")
    op.create_unique_constraint("uq_jobs_idempotency_key", "jobs", ["idempotency_key"])
    op.drop_column("jobs", "tenant")
