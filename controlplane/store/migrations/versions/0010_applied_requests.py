"""Idempotent admin mutations: each applied request_id with its method, the fingerprint
of its arguments, its revision and its answer, kept 24 hours (applied_at is indexed for
the retention task's deletions).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from controlplane.store.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "applied_requests",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("reply", sa.LargeBinary, nullable=False),
        sa.Column("applied_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_applied_requests_applied_at", "applied_requests", ["applied_at"])


def downgrade() -> None:
    op.drop_index("ix_applied_requests_applied_at", "applied_requests")
    op.drop_table("applied_requests")
