"""Governance: users and teams, tokens that belong to a user, limit sets, the price
table (loaded with the prices the gateway ships), the monthly spend of each scope, and
each interception's user and cost.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from controlplane.pricing import shipped
from controlplane.store.models import UTCDateTime, utcnow

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _live_unique(name: str, table: str) -> None:
    where = sa.text("deleted_at IS NULL")
    op.create_index(name, table, ["name"], unique=True, sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("deleted_at", UTCDateTime, nullable=True),
    )
    _live_unique("uq_users_live_name", "users")
    op.create_table(
        "teams",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("deleted_at", UTCDateTime, nullable=True),
    )
    _live_unique("uq_teams_live_name", "teams")
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.String(32), sa.ForeignKey("teams.id"), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("added_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_team_members_user_id", "team_members", ["user_id"])
    with op.batch_alter_table("gateway_tokens") as table:
        table.add_column(sa.Column("user_id", sa.String(32), nullable=True))
        table.create_foreign_key("fk_gateway_tokens_user_id", "users", ["user_id"], ["id"])
        table.create_index("ix_gateway_tokens_user_id", ["user_id"])
    op.create_table(
        "limit_sets",
        sa.Column("scope_kind", sa.String(16), primary_key=True),
        sa.Column("scope_id", sa.String(32), primary_key=True),
        sa.Column("per_member", sa.Boolean, nullable=False),
        sa.Column("requests_per_minute", sa.BigInteger, nullable=True),
        sa.Column("tokens_per_minute", sa.BigInteger, nullable=True),
        sa.Column("max_concurrent", sa.BigInteger, nullable=True),
        sa.Column("monthly_budget_usd", sa.Float, nullable=True),
        sa.Column("providers", sa.Text, nullable=False),
        sa.Column("models", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    prices = op.create_table(
        "prices",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("input", sa.Float, nullable=False),
        sa.Column("output", sa.Float, nullable=False),
        sa.Column("cache_read", sa.Float, nullable=False),
        sa.Column("cache_write", sa.Float, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    now = utcnow()
    op.bulk_insert(
        prices,
        [
            {"model": e.model, "input": e.input, "output": e.output,
             "cache_read": e.cache_read, "cache_write": e.cache_write, "updated_at": now}
            for e in shipped()
        ],
    )  # fmt: skip
    op.create_table(
        "spend",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("key", sa.String(240), primary_key=True),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("unpriced", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("interceptions") as table:
        table.add_column(sa.Column("user_id", sa.String(32), nullable=False, server_default=""))
        table.add_column(sa.Column("user_name", sa.String(63), nullable=False, server_default=""))
        table.add_column(sa.Column("cost_usd", sa.Float, nullable=True))
    op.create_index("ix_interceptions_user", "interceptions", ["user_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_interceptions_user", "interceptions")
    with op.batch_alter_table("interceptions") as table:
        for name in ("cost_usd", "user_name", "user_id"):
            table.drop_column(name)
    op.drop_table("spend")
    op.drop_table("prices")
    op.drop_table("limit_sets")
    with op.batch_alter_table("gateway_tokens") as table:
        table.drop_index("ix_gateway_tokens_user_id")
        table.drop_constraint("fk_gateway_tokens_user_id", type_="foreignkey")
        table.drop_column("user_id")
    op.drop_index("ix_team_members_user_id", "team_members")
    op.drop_table("team_members")
    op.drop_index("uq_teams_live_name", "teams")
    op.drop_table("teams")
    op.drop_index("uq_users_live_name", "users")
    op.drop_table("users")
