"""A random identity for the database, sent in every snapshot.

Subscribers never apply a snapshot older than the one they hold; the identity tells
them when the revision counter belongs to another database (a new one, or a restored
backup), whose history is not theirs to compare with.

Revision ID: 0003
Revises: 0002
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("revision") as batch:
        batch.add_column(sa.Column("database_id", sa.String(36), nullable=False, server_default=""))
    op.execute(sa.text("UPDATE revision SET database_id = :id").bindparams(id=str(uuid.uuid4())))


def downgrade() -> None:
    with op.batch_alter_table("revision") as batch:
        batch.drop_column("database_id")
