"""video gpx: a video job's GPX track, aligned to the video, to place its tracks

The points that cover the video (roadsigns.shared.gpxtrack.VideoGpx, a small JSON document),
not the uploaded file: the tracker places each track with it when it writes the result, and a
job the reconciler re-sends finds it here again. NULL for photos and videos without a GPX.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("gpx_track", sa.JSON()))


def downgrade() -> None:
    op.drop_column("jobs", "gpx_track")
