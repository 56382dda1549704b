"""photo location: where and when a job's photo was taken, from its EXIF GPS

Plain columns and a partial index for GET /inventory (no PostGIS): the tenant's located jobs,
a bounding box as a latitude and a longitude range.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("lat", sa.Float()))
    op.add_column("jobs", sa.Column("lon", sa.Float()))
    op.add_column("jobs", sa.Column("altitude_m", sa.Float()))
    op.add_column("jobs", sa.Column("heading_deg", sa.Float()))
    op.add_column("jobs", sa.Column("taken_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_jobs_tenant_lat_lon", "jobs", ["tenant", "lat", "lon"], postgresql_where=sa.text("lat IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_lat_lon", "jobs")
    for column in ("taken_at", "heading_deg", "altitude_m", "lon", "lat"):
        op.drop_column("jobs", column)
