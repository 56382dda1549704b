"""jobs.finished_at indexed: the tracker reads each MLflow window's finished jobs by it

Every minute beat has the tracker read the jobs that finished in each closed window it has
not logged yet (roadsigns.tracker.aggregates), a range on finished_at; without the index
that was a scan of the whole table per window.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_finished_at", "jobs")
