"""signs outside the 43 classes: nullable class_id, class_source

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("signs", "class_id", existing_type=sa.Integer(), nullable=True)
    op.add_column("signs", sa.Column("class_source", sa.String(16), nullable=False, server_default="classifier"))


def downgrade() -> None:
    # The old schema cannot hold a sign without a class: those rows go.
    op.execute("DELETE FROM signs WHERE class_id IS NULL")
    op.drop_column("signs", "class_source")
    op.alter_column("signs", "class_id", existing_type=sa.Integer(), nullable=False)
