"""The revision that last changed each provider, so a snapshot reads only what changed.

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
    with op.batch_alter_table("providers") as batch:
        batch.add_column(
            sa.Column("changed_revision", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.create_index("ix_providers_changed_revision", ["changed_revision"])
    # Every existing row as of now: the first snapshot reads them all anyway.
    op.execute("UPDATE providers SET changed_revision = (SELECT value FROM revision WHERE id = 1)")


def downgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.drop_index("ix_providers_changed_revision")
        batch.drop_column("changed_revision")
