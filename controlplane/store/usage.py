"""Usage records (interceptions): stored idempotently, aggregated for `aibridgectl usage`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from controlplane.errors import InvalidArgument
from controlplane.store.db import Database
from controlplane.store.models import Interception

GROUPS = {
    "provider": Interception.provider_name,
    "model": Interception.model,
    "token": Interception.token_name,
}


@dataclass(frozen=True)
class UsageTotals:
    key: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


class UsageLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def store(self, rows: list[dict[str, Any]]) -> int:
        """Inserts the rows whose request_id is new; returns how many were."""
        if not rows:
            return 0
        dialect = postgresql if self.db.is_postgres else sqlite
        # One cached statement, executed for many rows (SQLAlchemy batches them into
        # multi-row INSERTs within each database's parameter limit); RETURNING names only
        # the rows that were new.
        statement = (
            dialect.insert(Interception)
            .on_conflict_do_nothing(index_elements=["request_id"])
            .returning(Interception.request_id)
        )
        with self.db.write() as session:
            return len(session.execute(statement, rows).all())

    def totals(
        self,
        group_by: str = "provider",
        since: datetime | None = None,
        until: datetime | None = None,
        provider: str = "",
    ) -> list[UsageTotals]:
        column = GROUPS.get(group_by or "provider")
        if column is None:
            raise InvalidArgument("group_by", f"must be one of {', '.join(GROUPS)}")
        errors = func.sum(
            case((Interception.status >= 400, 1), (Interception.status == 0, 1), else_=0)
        )
        query = (
            select(
                column,
                func.count(),
                errors,
                func.sum(Interception.input_tokens),
                func.sum(Interception.output_tokens),
                func.sum(Interception.cache_read_tokens),
                func.sum(Interception.cache_write_tokens),
            )
            .group_by(column)
            .order_by(column)
        )
        if since is not None:
            query = query.where(Interception.started_at >= since)
        if until is not None:
            query = query.where(Interception.started_at < until)
        if provider:
            query = query.where(Interception.provider_name == provider)
        with self.db.read() as session:
            return [
                UsageTotals(str(k), *(int(v or 0) for v in rest))
                for k, *rest in session.execute(query)
            ]
