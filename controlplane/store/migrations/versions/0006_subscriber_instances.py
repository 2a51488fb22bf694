"""Subscribers are told apart by their process's instance key, and remembered after
their stream ends.

The table is a mirror each replica rewrites every few seconds, so it is made anew rather
than altered (its primary key changes): a replica still on 0005 during a rolling upgrade
writes its rows again at its next heartbeat, with the new columns' defaults.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from controlplane.store.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _columns() -> list[sa.Column]:
    return [
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
    ]


def upgrade() -> None:
    op.drop_table("subscribers")
    op.create_table(
        "subscribers",
        *_columns(),
        sa.Column("instance", sa.String(64), primary_key=True, server_default=""),
        sa.Column("disconnected_at", UTCDateTime, nullable=True),
        sa.Column("left_cleanly", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("subscribers")
    op.create_table("subscribers", *_columns())
