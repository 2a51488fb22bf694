"""Subscribers of every replica, mirrored so that any replica can show and wait on all.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from controlplane.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("controlplane_id", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("subscriber_id", sa.String(200), primary_key=True),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("connected_since", UTCDateTime, nullable=False),
        sa.Column("applied_version", sa.BigInteger, nullable=False),
        sa.Column("sent_version", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("skipped", sa.Text, nullable=False),
        sa.Column("seen_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("subscribers")
