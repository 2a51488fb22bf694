"""The token of the mutation that last changed each provider.

A backup restored under a running controlplane and changed again can reach the same
revisions with other contents; the snapshot builder compares these tokens with the ones
it holds to tell.

Revision ID: 0005
Revises: 0004
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("changed_by", sa.String(16), nullable=False, server_default=""))
    # The rows as they are now carry this upgrade's own token: a backup taken before it,
    # restored and upgraded again, gets another, so it cannot pass for this history.
    op.execute(
        sa.text("UPDATE providers SET changed_by = :token").bindparams(token=secrets.token_hex(8))
    )


def downgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("changed_by")
