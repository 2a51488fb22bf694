"""Reading interceptions back: filtered, a page at a time, and grouped into sessions.

Pages are keyset pages: each ordering has a key unique per row (a call's start and its
request id; a session's last call, its id and its token), and a cursor is the last key a
page held, so a page never repeats or skips a row whatever is written meanwhile.

Listings hold previews: the prompt is read only as far as a preview shows it, and the
reasoning not at all (`PREVIEW_COLUMNS`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, SQLColumnExpression, and_, func, or_, select
from sqlalchemy.orm import Session

from controlplane import validation
from controlplane.errors import InvalidArgument, NotFound
from controlplane.store.db import Database
from controlplane.store.models import Interception
from controlplane.store.usage import error_count, failed, provider_filter

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
PREVIEW_PROMPT_CHARS = 500

_STATUS_CLASSES: dict[str, ColumnElement[bool]] = {
    "2xx": Interception.status.between(200, 299),
    "3xx": Interception.status.between(300, 399),
    "4xx": Interception.status.between(400, 499),
    "5xx": Interception.status.between(500, 599),
    "error": failed(Interception.status),
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Columns = Sequence[SQLColumnExpression[Any]]

# A listing's columns: every one but the long texts, and of those only what a preview
# shows (one character more than it shows, to tell whether it was cut).
PREVIEW_COLUMNS = [
    *(c for c in Interception.__table__.columns if c.name not in ("prompt", "reasoning")),
    func.substr(Interception.prompt, 1, PREVIEW_PROMPT_CHARS + 1).label("prompt"),
    (func.length(Interception.reasoning) > 0).label("has_reasoning"),
]
WHOLE_COLUMNS = list(Interception.__table__.columns)


@dataclass(frozen=True)
class InterceptionFilter:
    since: datetime | None = None
    until: datetime | None = None
    token: str = ""  # a token's name or id
    provider: str = ""  # a provider's name or id
    model: str = ""
    client: str = ""
    session_id: str = ""
    status_class: str = ""  # one of _STATUS_CLASSES


class Keyset:
    """One ordering of rows, and the cursors that continue it."""

    def __init__(self, kind: str, descending: bool, key: Callable[[Row[Any]], Sequence[Any]]):
        self.kind = kind  # a cursor of another listing is refused, not misread
        self.descending = descending
        self.key = key  # a row's values of the ordering's columns: a time, then strings

    def order(self, columns: Columns) -> list[ColumnElement[Any]]:  # for ORDER BY
        return [c.desc() if self.descending else c.asc() for c in columns]

    def cursor(self, row: Row[Any]) -> str:
        """The cursor that continues after `row`."""
        first, *rest = self.key(row)
        data = [self.kind, (first - _EPOCH) // timedelta(microseconds=1), *rest]
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    def page(
        self, session: Session, query: Select[Any], columns: Columns, limit: int, cursor: str
    ) -> Page:
        """Up to `limit` rows of `query` past `cursor`, in this order (`columns`)."""
        limit = page_limit(limit)
        query = query.order_by(*self.order(columns)).limit(limit + 1)
        if cursor:
            query = query.where(self.after(cursor, columns))
        rows = list(session.execute(query))
        return Page(rows[:limit], len(rows) > limit, self)

    def after(self, cursor: str, columns: Columns) -> ColumnElement[bool]:
        """The rows past `cursor` in this ordering."""
        key = self._decode(cursor, len(columns))
        # The first column's bound on its own lets its index narrow the scan.
        first, value = columns[0], key[0]
        return and_(first <= value if self.descending else first >= value, self._past(columns, key))

    def _past(self, columns: Columns, key: list[Any]) -> ColumnElement[bool]:
        column, value = columns[0], key[0]
        beyond = column < value if self.descending else column > value
        if len(columns) == 1:
            return beyond
        return or_(beyond, and_(column == value, self._past(columns[1:], key[1:])))

    def _decode(self, cursor: str, size: int) -> list[Any]:
        try:
            data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (binascii.Error, ValueError):
            data = None
        if (
            not isinstance(data, list)
            or len(data) != size + 1
            or data[0] != self.kind
            or type(data[1]) is not int
            or not all(isinstance(v, str) for v in data[2:])
        ):
            raise InvalidArgument("cursor", "is not a cursor of this listing: pass next_cursor on")
        try:
            started = _EPOCH + timedelta(microseconds=data[1])
        except OverflowError:
            raise InvalidArgument("cursor", "is out of range") from None
        return [started, *data[2:]]


@dataclass(frozen=True)
class Page:
    rows: list[Row[Any]]
    more: bool  # rows beyond these match too
    order: Keyset


def _call_key(row: Row[Any]) -> tuple[datetime, str]:
    return row.started_at, row.request_id


def _session_key(row: Row[Any]) -> tuple[datetime, str, str]:
    return row.last_seen, row.session_id, row.token_id


NEWEST_FIRST = Keyset("i", descending=True, key=_call_key)
OLDEST_FIRST = Keyset("o", descending=False, key=_call_key)
SESSIONS_ORDER = Keyset("s", descending=True, key=_session_key)
_CALL_COLUMNS = (Interception.started_at, Interception.request_id)


def page_limit(limit: int) -> int:
    if limit == 0:
        return DEFAULT_LIMIT
    if not 0 < limit <= MAX_LIMIT:
        raise InvalidArgument("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit


class InterceptionLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def calls(self, f: InterceptionFilter, limit: int, cursor: str) -> Page:
        """Previews of the calls `f` admits, newest first."""
        return self._previews(f, limit, cursor, NEWEST_FIRST)

    def get(self, request_id: str) -> Row[Any]:
        validation.reference(request_id, "an interception id", "id")
        query = select(*WHOLE_COLUMNS).where(Interception.request_id == request_id)
        with self.db.read() as session:
            row = session.execute(query).one_or_none()
        if row is None:
            raise NotFound(f"interception {request_id!r} not found")
        return row

    def sessions(self, f: InterceptionFilter, limit: int, cursor: str) -> Page:
        """One row per (session id, token) among the calls `f` admits, most recently
        active first."""
        with self.db.read() as session:
            grouped = _sessions(session, f).subquery()
            key = [grouped.c.last_seen, grouped.c.session_id, grouped.c.token_id]
            return SESSIONS_ORDER.page(session, select(grouped), key, limit, cursor)

    def session(
        self, session_id: str, token: str, limit: int, cursor: str
    ) -> tuple[list[Row[Any]], Page]:
        """The session's summaries (one per token that used its id) and previews of its
        calls, oldest first."""
        if not session_id:
            raise InvalidArgument("session_id", "is required")
        f = InterceptionFilter(session_id=session_id, token=token)
        page = self._previews(f, limit, cursor, OLDEST_FIRST)  # first: it checks the request
        with self.db.read() as session:
            summaries = sorted(session.execute(_sessions(session, f)), key=_session_key)
        if not summaries:
            raise NotFound(f"session {session_id!r} not found")
        summaries.reverse()  # the most recently active first, as in a listing
        return summaries, page

    def _previews(self, f: InterceptionFilter, limit: int, cursor: str, order: Keyset) -> Page:
        with self.db.read() as session:
            query = select(*PREVIEW_COLUMNS).where(*_conditions(session, f))
            return order.page(session, query, _CALL_COLUMNS, limit, cursor)


def _sessions(session: Session, f: InterceptionFilter) -> Select[Any]:
    """The sessions query: per (session id, token), the client of its latest call, its
    first and last call, and its totals."""
    i = Interception
    newest = (i.started_at.desc(), i.request_id.desc())
    calls = (
        select(
            i.session_id, i.token_id, i.token_name, i.started_at, i.input_tokens,
            i.output_tokens, i.tool_call_count, i.status,
            func.first_value(i.client)
            .over(partition_by=(i.session_id, i.token_id), order_by=newest)
            .label("client"),
        )
        .where(i.session_id != "", *_conditions(session, f))
        .subquery()
    )  # fmt: skip
    return select(
        calls.c.session_id,
        calls.c.token_id,
        func.max(calls.c.token_name).label("token_name"),
        func.max(calls.c.client).label("client"),
        func.min(calls.c.started_at).label("first_seen"),
        func.max(calls.c.started_at).label("last_seen"),
        func.count().label("interceptions"),
        func.sum(calls.c.input_tokens).label("input_tokens"),
        func.sum(calls.c.output_tokens).label("output_tokens"),
        func.sum(calls.c.tool_call_count).label("tool_calls"),
        error_count(calls.c.status).label("errors"),
    ).group_by(calls.c.session_id, calls.c.token_id)


def _conditions(session: Session, f: InterceptionFilter) -> list[ColumnElement[bool]]:
    for field in fields(f):
        value = getattr(f, field.name)
        if isinstance(value, str) and not validation.possible_id(value):
            raise InvalidArgument(field.name, "is too long or holds control characters")
    found: list[ColumnElement[bool]] = []
    if f.since is not None:
        found.append(Interception.started_at >= f.since)
    if f.until is not None:
        found.append(Interception.started_at < f.until)
    if f.token:
        # By id or by name: a revoked token's calls are found by either.
        found.append((Interception.token_id == f.token) | (Interception.token_name == f.token))
    if f.provider:
        found.append(provider_filter(session, f.provider))
    for name in ("model", "client", "session_id"):
        if value := getattr(f, name):
            found.append(getattr(Interception, name) == value)
    if f.status_class:
        status = _STATUS_CLASSES.get(f.status_class)
        if status is None:
            raise InvalidArgument("status_class", f"must be one of {', '.join(_STATUS_CLASSES)}")
        found.append(status)
    return found
