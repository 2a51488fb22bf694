"""SQLAlchemy models. The schema itself is owned by the Alembic migrations beside this file."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (SQLite has no time zones) and always hands back aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Revision(Base):
    """One row: the revision counter, bumped by every mutation. It is the snapshot version."""

    __tablename__ = "revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Random per database: a restored or replaced database is told apart from this one.
    database_id: Mapped[str] = mapped_column(String(36), nullable=False, server_default="")


def _live_unique(name: str, column: str, gone: str) -> Index:
    """Unique among rows not yet deleted or revoked (a partial index on both databases)."""
    where = text(f"{gone} IS NULL")
    return Index(name, column, unique=True, sqlite_where=where, postgresql_where=where)


class Provider(Base):
    __tablename__ = "providers"
    __table_args__ = (
        _live_unique("uq_providers_live_name", "name", "deleted_at"),
        Index("ix_providers_changed_revision", "changed_revision"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    display_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    base_url: Mapped[str] = mapped_column(Text, nullable=False)
    # bedrock and vertex (common/clouds.py): the region as given ("" reads it from the
    # base_url's host), vertex's project, and a JSON object of client model name → the
    # cloud's model id (controlplane/store/providers.py reads and writes it).
    region: Mapped[str] = mapped_column(String(64), nullable=False, server_default="")
    project: Mapped[str] = mapped_column(String(100), nullable=False, server_default="")
    model_map: Mapped[str] = mapped_column(Text, nullable=False, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # Deleted providers are kept (usage and audit refer to them); names are unique among live ones.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The revision that last changed the row or its keys (deleting it included), and that
    # mutation's random token: a snapshot after revision R reads only the providers
    # changed after R, and the tokens tell it whether the rows it holds are still the
    # database's (controlplane/snapshots.py).
    changed_revision: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    changed_by: Mapped[str] = mapped_column(String(16), nullable=False, server_default="")

    keys: Mapped[list[ProviderKey]] = relationship(
        back_populates="provider", order_by="ProviderKey.position", lazy="selectin"
    )


class ProviderKey(Base):
    __tablename__ = "provider_keys"
    __table_args__ = (Index("ix_provider_keys_provider", "provider_id", "position"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.id"), nullable=False)
    # Failover order: creation order within the provider.
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    # A vertex key's hint is its service account's email (common/clouds.py).
    hint: Mapped[str] = mapped_column(String(254), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    provider: Mapped[Provider] = relationship(back_populates="keys")


class GatewayToken(Base):
    __tablename__ = "gateway_tokens"
    __table_args__ = (_live_unique("uq_gateway_tokens_live_name", "name", "revoked_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    hint: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The user it belongs to; None: the token is its own identity.
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    # Loaded with the token, for listings that name the user.
    user: Mapped[User | None] = relationship(lazy="joined", viewonly=True)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (_live_unique("uq_users_live_name", "name", "deleted_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    email: Mapped[str] = mapped_column(String(254), nullable=False, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # Deleted users are kept (interceptions and audit name them); names are unique among
    # live ones.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (_live_unique("uq_teams_live_name", "name", "deleted_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TeamMember(Base):
    """A live user in a live team (deleting either removes the row)."""

    __tablename__ = "team_members"
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class LimitSetRow(Base):
    """The limits of one scope (snapshot.proto's LimitSet says what each field means).
    A None limit is no limit; deleting the user, team or token deletes its set."""

    __tablename__ = "limit_sets"
    # "default", "user", "team" or "token", and the user's, team's or token's id ("" for
    # default).
    scope_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    per_member: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    requests_per_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_concurrent: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    monthly_budget_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    providers: Mapped[str] = mapped_column(Text, nullable=False, default="[]")  # JSON list
    models: Mapped[str] = mapped_column(Text, nullable=False, default="[]")  # JSON list
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class Price(Base):
    """USD per million tokens of a model, or of the models a glob pattern matches."""

    __tablename__ = "prices"
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    input: Mapped[float] = mapped_column(Float, nullable=False)
    output: Mapped[float] = mapped_column(Float, nullable=False)
    cache_read: Mapped[float] = mapped_column(Float, nullable=False)
    cache_write: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class Spend(Base):
    """What one scope spent in one UTC month, added to as interceptions are stored (in
    their transaction, once each). Keys are common/scopes.py's: user:, team:, member:,
    token:, and model: and provider: for `aibridgectl spend --by`. It outlives the
    interceptions' retention."""

    __tablename__ = "spend"
    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # "YYYY-MM"
    key: Mapped[str] = mapped_column(String(240), primary_key=True)
    cost_usd: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    requests: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # Calls that used tokens of a model with no price.
    unpriced: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class Interception(Base):
    """One intercepted LLM call, as reported by a data-plane process."""

    __tablename__ = "interceptions"
    __table_args__ = (
        Index("ix_interceptions_session", "session_id", "started_at"),
        Index("ix_interceptions_user", "user_id", "started_at"),
    )
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    token_id: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    token_name: Mapped[str] = mapped_column(String(63), nullable=False, default="")
    provider_id: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    provider_name: Mapped[str] = mapped_column(String(63), nullable=False, default="")
    provider_type: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    model: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    route: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    status: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    streaming: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    ttfb_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    duration_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    user_agent: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    # What the agent did (usage.proto says what each field holds). Tool calls and results
    # are JSON lists; tool_call_count is kept beside them for the sessions' totals.
    client: Mapped[str] = mapped_column(String(32), nullable=False, server_default="")
    session_id: Mapped[str] = mapped_column(String(200), nullable=False, server_default="")
    prompt: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    prompt_truncated: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    tool_calls: Mapped[str] = mapped_column(Text, nullable=False, server_default="[]")
    tool_call_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    tool_results: Mapped[str] = mapped_column(Text, nullable=False, server_default="[]")
    stop_reason: Mapped[str] = mapped_column(String(64), nullable=False, server_default="")
    error_message: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    reasoning: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    reasoning_truncated: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=false()
    )
    partial: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    user_id: Mapped[str] = mapped_column(String(32), nullable=False, server_default="")
    user_name: Mapped[str] = mapped_column(String(63), nullable=False, server_default="")
    # USD, from the price table when the call was stored; None when its model had no
    # price and it used tokens (and for calls stored before prices existed).
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)


class Setting(Base):
    """A gateway setting an administrator changed (controlplane/settings.py has the
    known keys and their defaults; a key without a row has its default)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str] = mapped_column(String(200), nullable=False)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # JSON, with every secret masked before it gets here.
    details: Mapped[str] = mapped_column(Text, nullable=False, default="{}")


class SubscriberRow(Base):
    """A replica's subscriber, as that replica last mirrored it (see controlplane/fleet.py)."""

    __tablename__ = "subscribers"
    controlplane_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    subscriber_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # SHA-256 (hex) of the subscriber process's instance key: two processes under one id
    # are two rows.
    instance: Mapped[str] = mapped_column(String(64), primary_key=True, server_default="")
    address: Mapped[str] = mapped_column(String(200), nullable=False)
    connected_since: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    applied_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sent_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_error: Mapped[str] = mapped_column(Text, nullable=False)
    skipped: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list
    # Set once its stream ended; and it said goodbye (Leave) when left_cleanly.
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    left_cleanly: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class AppliedRequest(Base):
    """An admin mutation's idempotency key, written in the mutation's transaction with
    the answer it got (controlplane/store/applied_requests.py), kept 24 hours."""

    __tablename__ = "applied_requests"
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    method: Mapped[str] = mapped_column(String(64), nullable=False)
    # SHA-256 (hex) of the request without its request_id: the same key with other
    # arguments is another call, refused.
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The serialized answer, with any new secret (a token's plaintext) left out.
    reply: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
