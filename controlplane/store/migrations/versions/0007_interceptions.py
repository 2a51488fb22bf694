"""Interceptions record what the agent did (client, session, prompt, tool calls and
results, stop reason, error, reasoning); gateway settings say what is recorded.

Every new column has a server default, so the rows recorded before stay valid and a
replica still on 0006 during a rolling upgrade keeps inserting.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from controlplane.store.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("client", sa.String(32), ""),
    ("session_id", sa.String(200), ""),
    ("prompt", sa.Text, ""),
    ("prompt_truncated", sa.Boolean, sa.false()),
    ("tool_calls", sa.Text, "[]"),
    ("tool_call_count", sa.Integer, "0"),
    ("tool_results", sa.Text, "[]"),
    ("stop_reason", sa.String(64), ""),
    ("error_message", sa.Text, ""),
    ("reasoning", sa.Text, ""),
    ("reasoning_truncated", sa.Boolean, sa.false()),
    ("partial", sa.Boolean, sa.false()),
)


def upgrade() -> None:
    with op.batch_alter_table("interceptions") as table:
        for name, type_, default in _COLUMNS:
            table.add_column(sa.Column(name, type_, nullable=False, server_default=default))
    op.create_index("ix_interceptions_session", "interceptions", ["session_id", "started_at"])
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_index("ix_interceptions_session", "interceptions")
    with op.batch_alter_table("interceptions") as table:
        for name, _, _ in reversed(_COLUMNS):
            table.drop_column(name)
