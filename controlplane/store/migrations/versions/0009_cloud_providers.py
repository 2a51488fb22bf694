"""Claude on the clouds: a provider's region (bedrock, vertex), project (vertex) and model
map (client model name → the cloud's model id, a JSON object), and key hints long
enough for a service account's email (a vertex key's hint).

Every new column has a server default, so the providers made before stay valid and a
replica still on 0008 during a rolling upgrade keeps inserting.

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
    with op.batch_alter_table("providers") as table:
        table.add_column(sa.Column("region", sa.String(64), nullable=False, server_default=""))
        table.add_column(sa.Column("project", sa.String(100), nullable=False, server_default=""))
        table.add_column(sa.Column("model_map", sa.Text, nullable=False, server_default="{}"))
    with op.batch_alter_table("provider_keys") as table:
        table.alter_column(
            "hint", existing_type=sa.String(32), type_=sa.String(254), existing_nullable=False
        )


def downgrade() -> None:
    # A service account's email is longer than the old column: its first characters stay.
    op.execute("UPDATE provider_keys SET hint = substr(hint, 1, 32) WHERE length(hint) > 32")
    with op.batch_alter_table("provider_keys") as table:
        table.alter_column(
            "hint", existing_type=sa.String(254), type_=sa.String(32), existing_nullable=False
        )
    with op.batch_alter_table("providers") as table:
        for name in ("model_map", "project", "region"):
            table.drop_column(name)
