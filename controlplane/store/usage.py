"""Usage records (interceptions): stored idempotently, aggregated for `aibridgectl usage`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    SQLColumnExpression,
    case,
    cast,
    extract,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from common import scopes
from controlplane.errors import InvalidArgument
from controlplane.store import audit, prices, spend
from controlplane.store.db import Database, Mutation
from controlplane.store.models import GatewayToken, Interception, Provider, User

_BY_ID = Interception.provider_id
GROUPS = {
    "provider": _BY_ID,
    "model": Interception.model,
    "token": Interception.token_name,
    "client": Interception.client,
    "user": Interception.user_name,
}
# QueryUsage's buckets: at least a minute, at most this many in a range.
MIN_BUCKET_SECONDS = 60
MAX_BUCKET_SECONDS = 366 * 86400  # a year's bucket; more is a slip (and beyond int32 in SQL)
MAX_BUCKETS = 1000


@dataclass(frozen=True)
class UsageTotals:
    key: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float = 0.0  # of the priced calls
    unpriced: int = 0  # calls of a model with no price (not in cost_usd)
    provider_id: str = ""  # when grouped by provider
    bucket_start: datetime | None = None  # when bucketed


@dataclass(frozen=True)
class Stored:
    """What an ingest did."""

    new: int  # interceptions whose request_id was new
    unpriced: int  # of those, calls of a model with no price
    revision: int | None  # the revision made because the batch crossed a budget


class UsageLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def store(self, rows: list[dict[str, Any]]) -> Stored:
        """Inserts the rows whose request_id is new, each with its cost, and adds those to
        the month's spend, in one transaction; a batch that takes a scope's spend this
        month to one of its budgets bumps the revision in it too, so that every data plane
        hears of it."""
        unique: dict[str, dict[str, Any]] = {}
        for row in rows:  # a request id twice in one batch: the first one counts
            unique.setdefault(row["request_id"], row)
        rows = list(unique.values())
        if not rows:
            return Stored(0, 0, None)
        dialect = postgresql if self.db.is_postgres else sqlite
        # One cached statement, executed for many rows (SQLAlchemy batches them into
        # multi-row INSERTs within each database's parameter limit); RETURNING names only
        # the rows that were new.
        statement = (
            dialect.insert(Interception)
            .on_conflict_do_nothing(index_elements=["request_id"])
            .returning(Interception.request_id)
        )
        month = scopes.month()
        with self.db.write() as session:
            if spend.any_budget(session):
                # Budgets are read below at READ COMMITTED (PostgreSQL), after the upsert: a
                # budget set meanwhile could go unseen here while the admin's snapshot read
                # the spend before this commits, and the scope would go unrefused. Holding
                # the lock every mutation takes (before reading budgets and upserting)
                # orders ingests and mutations as SQLite's single writer does. Without any
                # budget there is nothing to cross, and concurrent ingests stay concurrent.
                self.db.lock_revision(session)
            _attribute(session, rows)
            table = prices.price_table(session)
            for row in rows:
                row["cost_usd"] = table.cost(
                    row["provider_type"], row["model"], row["input_tokens"],
                    row["output_tokens"], row["cache_read_tokens"], row["cache_write_tokens"],
                )  # fmt: skip
            new = set(session.execute(statement, rows).scalars())
            calls = [row for row in rows if row["request_id"] in new]
            crossings = spend.add(session, calls, month)
            revision = self._crossed(session, crossings, month) if crossings else None
        unpriced = sum(1 for call in calls if call["cost_usd"] is None)
        return Stored(len(calls), unpriced, revision)

    def _crossed(self, session: Session, crossings: list[spend.Crossing], month: str) -> int:
        """One new revision for the batch, and an audit entry per budget crossed."""
        m = Mutation(session, self.db.bump_revision(session))
        for c in crossings:
            audit.record(
                m, "controlplane", "budget.crossed", spend.scope_label(session, c.limit_set),
                {"key": c.key, "month": month, "budget_usd": c.limit_set.monthly_budget_usd,
                 "spent_usd": c.spent_usd},
            )  # fmt: skip
        return m.revision

    def totals(
        self,
        group_by: str = "provider",
        since: datetime | None = None,
        until: datetime | None = None,
        provider: str = "",
        bucket_seconds: int = 0,
    ) -> list[UsageTotals]:
        """Totals per provider, model, token, client or user (by name), over the range or
        per bucket of `bucket_seconds` in it. A provider is followed by its id, not its
        name: its history stays one row, under its current name, across renames."""
        column = GROUPS.get(group_by or "provider")
        if column is None:
            raise InvalidArgument("group_by", f"must be one of {', '.join(GROUPS)}")
        if bucket_seconds:
            until = until or datetime.now(UTC)
            _check_buckets(bucket_seconds, since, until)
        bucket = self._bucket(bucket_seconds) if bucket_seconds else None
        query = select(
            column,
            literal_column("0") if bucket is None else bucket,
            func.count(),
            error_count(Interception.status),
            func.sum(Interception.input_tokens),
            func.sum(Interception.output_tokens),
            func.sum(Interception.cache_read_tokens),
            func.sum(Interception.cache_write_tokens),
            func.sum(Interception.cost_usd),
            func.sum(case((Interception.cost_usd.is_(None), 1), else_=0)),
            # What a provider this database does not know was called, for its row's name.
            func.max(Interception.provider_name),
        ).group_by(column, *(() if bucket is None else (bucket,)))
        if since is not None:
            query = query.where(Interception.started_at >= since)
        if until is not None:
            query = query.where(Interception.started_at < until)
        with self.db.read() as session:
            if provider:
                query = query.where(provider_filter(session, provider))
            found = session.execute(query).all()
            names = _provider_names(session) if column is _BY_ID else {}
        rows = [
            UsageTotals(
                names.get(key, last_name) if column is _BY_ID else str(key),
                *(int(v or 0) for v in counts),  # type: ignore[misc, arg-type]  # six counts
                cost_usd=float(cost or 0.0),
                unpriced=int(unpriced or 0),
                provider_id=str(key) if column is _BY_ID else "",
                bucket_start=datetime.fromtimestamp(int(index) * bucket_seconds, UTC)
                if bucket_seconds
                else None,
            )
            for key, index, *counts, cost, unpriced, last_name in found
        ]
        return sorted(rows, key=lambda r: (r.bucket_start or _EPOCH, r.key, r.provider_id))

    def _bucket(self, seconds: int) -> ColumnElement[int]:
        """The index of a call's bucket: its start / `seconds`."""
        if self.db.is_postgres:  # a timestamp without time zone: its epoch is UTC's
            return cast(func.floor(extract("epoch", Interception.started_at) / seconds), Integer)
        # SQLite reads fractional seconds to the millisecond, rounding: 00:59:59.9999 would
        # be 01:00:00, the next bucket's. Cut them off: bucket edges are whole seconds.
        whole_seconds = func.substr(Interception.started_at, 1, 19)
        epoch = cast(func.strftime("%s", whole_seconds), Integer)
        return epoch // seconds


_EPOCH = datetime.fromtimestamp(0, UTC)


def _check_buckets(seconds: int, since: datetime | None, until: datetime) -> None:
    if not MIN_BUCKET_SECONDS <= seconds <= MAX_BUCKET_SECONDS:
        raise InvalidArgument(
            "bucket_seconds", f"must be between {MIN_BUCKET_SECONDS} and {MAX_BUCKET_SECONDS}"
        )
    if since is None:
        raise InvalidArgument("since", "is required with bucket_seconds")
    if until <= since:
        raise InvalidArgument("until", "must be after since")
    # The buckets the range touches: they start at multiples of `seconds`, not at `since`.
    first = math.floor(since.timestamp() / seconds)
    last = math.ceil(until.timestamp() / seconds) - 1  # `until` is not in the range
    if last - first + 1 > MAX_BUCKETS:
        raise InvalidArgument(
            "bucket_seconds", f"makes more than {MAX_BUCKETS} buckets in the range: choose more"
        )


def _attribute(session: Session, rows: list[dict[str, Any]]) -> None:
    """Sets each call's user to its token's, as the database has it: the data plane's
    report is not the authority on whom a call is charged to. A token without a user (or
    one this database does not know) leaves the call without one, whatever was reported."""
    token_ids = sorted({row["token_id"] for row in rows})
    owners = {
        token_id: (user_id or "", name or "")
        for token_id, user_id, name in session.execute(
            select(GatewayToken.id, GatewayToken.user_id, User.name)
            .outerjoin(User, User.id == GatewayToken.user_id)
            .where(GatewayToken.id.in_(token_ids))
        )
    }
    for row in rows:
        row["user_id"], row["user_name"] = owners.get(row["token_id"], ("", ""))


def failed(status: SQLColumnExpression[int]) -> ColumnElement[bool]:
    """A call that failed: an error status, or none at all (the upstream never answered)."""
    return (status >= 400) | (status == 0)


def error_count(status: SQLColumnExpression[int]) -> ColumnElement[int]:
    return func.sum(case((failed(status), 1), else_=0))


def provider_filter(session: Session, ref: str) -> ColumnElement[bool]:
    """Calls of the provider `ref` names, under whatever name they were made: the live
    provider with that name (or id), else deleted ones; failing both, calls recorded
    under that name by providers this database does not know."""
    matches = session.execute(
        select(Provider.id, Provider.deleted_at).where(
            (Provider.name == ref) | (Provider.id == ref)
        )
    ).all()
    live = [pid for pid, deleted_at in matches if deleted_at is None]
    ids = live or [pid for pid, _ in matches]
    if ids:
        return Interception.provider_id.in_(ids)
    return Interception.provider_name == ref


def _provider_names(session: Session) -> dict[str, str]:
    """Each provider's current name, by id; a deleted one's says so."""
    rows = session.execute(select(Provider.id, Provider.name, Provider.deleted_at))
    return {pid: name + (" (deleted)" if deleted_at else "") for pid, name, deleted_at in rows}
