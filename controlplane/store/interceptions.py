"""Reading interceptions back: filtered, a page at a time, and grouped into sessions.

Pages are keyset pages: each ordering has a key unique per row (a call's start and its
request id; a session's last call, its id and its token), and a cursor is the last key a
page held. A listing holds the calls started before its first page was read (or before
the filter's `until`, if earlier): that bound goes into its cursor and holds for every
page, so a call made while a reader pages neither shifts the rows nor moves a session
up past the cursor. Records are written when their call ends, though: a record written
after the first page was read (a call still running then) may be missing from the pages
that follow, and may add to a session already listed.

Listings hold previews: the prompt is read only as far as a preview shows it, and the
reasoning not at all (`PREVIEW_COLUMNS`). Rows are read a few at a time (`CHUNK`) and
offered to the caller, who stops the page once it has enough bytes: a page of large
records never holds them all in memory at once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, SQLColumnExpression, and_, func, or_, select
from sqlalchemy.orm import Session

from controlplane import validation
from controlplane.errors import InvalidArgument, NotFound
from controlplane.store.db import Database
from controlplane.store.models import Interception, User, utcnow
from controlplane.store.usage import error_count, failed, provider_filter

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
PREVIEW_PROMPT_CHARS = 500
CHUNK = 20  # rows read from the database at a time (a row may hold ~1 MiB of tool calls)

_STATUS_CLASSES: dict[str, ColumnElement[bool]] = {
    "2xx": Interception.status.between(200, 299),
    "3xx": Interception.status.between(300, 399),
    "4xx": Interception.status.between(400, 499),
    "5xx": Interception.status.between(500, 599),
    "error": failed(Interception.status),
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Columns = Sequence[SQLColumnExpression[Any]]
# Takes a row into the page, or refuses it (False) when the page is full. It never
# refuses the first row of a page.
Take = Callable[[Row[Any]], bool]

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
    user: str = ""  # a user's name or id


@dataclass(frozen=True)
class PageRequest:
    """Which page: at most `limit` rows, those past `key` (none: the first page), of calls
    started before `until` (the listing's bound, the same on every page)."""

    limit: int
    until: datetime
    key: list[Any] | None

    def bounded(self, f: InterceptionFilter) -> InterceptionFilter:
        return replace(f, until=self.until)


class Keyset:
    """One ordering of rows, and the cursors that continue it."""

    def __init__(
        self, kind: str, descending: bool, size: int, key: Callable[[Row[Any]], Sequence[Any]]
    ):
        self.kind = kind  # a cursor of another listing is refused, not misread
        self.descending = descending
        self.size = size  # the ordering's columns
        self.key = key  # a row's values of those columns: a time, then strings

    def order(self, columns: Columns) -> list[ColumnElement[Any]]:  # for ORDER BY
        return [c.desc() if self.descending else c.asc() for c in columns]

    def request(self, limit: int, cursor: str, until: datetime | None) -> PageRequest:
        """The page `cursor` asks for (the first: empty), in a listing whose filter says
        `until`."""
        limit = page_limit(limit)
        if not cursor:
            now = utcnow()
            return PageRequest(limit, now if until is None else min(until, now), None)
        bound, key = self._decode(cursor)
        return PageRequest(limit, bound if until is None else min(until, bound), key)

    def page(
        self, session: Session, query: Select[Any], columns: Columns, at: PageRequest, take: Take
    ) -> str:
        """Offers `take` the rows of `query` that `at` asks for, in this order (`columns`),
        until it refuses one; returns the cursor that continues after the last row taken,
        or an empty one when no row is left."""
        query = query.order_by(*self.order(columns)).limit(at.limit + 1)
        if at.key is not None:
            query = query.where(self.after(at.key, columns))
        taken, last = 0, None
        with session.execute(query.execution_options(yield_per=CHUNK)) as rows:
            for row in rows:
                if taken == at.limit or not take(row):
                    break
                taken, last = taken + 1, row
            else:
                return ""
        if last is None:
            raise ValueError("take() refused the first row of a page")
        return self._cursor(at.until, last)

    def after(self, key: list[Any], columns: Columns) -> ColumnElement[bool]:
        """The rows past `key` in this ordering."""
        # The first column's bound on its own lets its index narrow the scan.
        first, value = columns[0], key[0]
        return and_(first <= value if self.descending else first >= value, self._past(columns, key))

    def _past(self, columns: Columns, key: list[Any]) -> ColumnElement[bool]:
        column, value = columns[0], key[0]
        beyond = column < value if self.descending else column > value
        if len(columns) == 1:
            return beyond
        return or_(beyond, and_(column == value, self._past(columns[1:], key[1:])))

    def _cursor(self, until: datetime, row: Row[Any]) -> str:
        first, *rest = self.key(row)
        data = [self.kind, _micros(until), _micros(first), *rest]
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    def _decode(self, cursor: str) -> tuple[datetime, list[Any]]:
        """The listing's bound and the key that `cursor` holds."""
        try:
            data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (binascii.Error, ValueError):
            data = None
        if (
            not isinstance(data, list)
            or len(data) != self.size + 2
            or data[0] != self.kind
            or not all(type(v) is int for v in data[1:3])
            # Strings as the filters' are checked: PostgreSQL refuses NUL in a text.
            or not all(isinstance(v, str) and validation.possible_id(v) for v in data[3:])
        ):
            raise InvalidArgument("cursor", "is not a cursor of this listing: pass next_cursor on")
        return _from_micros(data[1]), [_from_micros(data[2]), *data[3:]]


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _from_micros(micros: int) -> datetime:
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise InvalidArgument("cursor", "is out of range") from None


def _call_key(row: Row[Any]) -> tuple[datetime, str]:
    return row.started_at, row.request_id


def _session_key(row: Row[Any]) -> tuple[datetime, str, str]:
    return row.last_seen, row.session_id, row.token_id


NEWEST_FIRST = Keyset("i", descending=True, size=2, key=_call_key)
OLDEST_FIRST = Keyset("o", descending=False, size=2, key=_call_key)
SESSIONS_ORDER = Keyset("s", descending=True, size=3, key=_session_key)
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

    def calls(self, f: InterceptionFilter, limit: int, cursor: str, take: Take) -> str:
        """Offers `take` previews of the calls `f` admits, newest first; returns the cursor
        that continues."""
        at = NEWEST_FIRST.request(limit, cursor, f.until)
        with self.db.read() as session:
            return _previews(session, at.bounded(f), at, NEWEST_FIRST, take)

    def get(self, request_id: str) -> Row[Any]:
        validation.reference(request_id, "an interception id", "id")
        query = select(*WHOLE_COLUMNS).where(Interception.request_id == request_id)
        with self.db.read() as session:
            row = session.execute(query).one_or_none()
        if row is None:
            raise NotFound(f"interception {request_id!r} not found")
        return row

    def sessions(self, f: InterceptionFilter, limit: int, cursor: str, take: Take) -> str:
        """Offers `take` one row per (session id, token) among the calls `f` admits, most
        recently active first; returns the cursor that continues."""
        at = SESSIONS_ORDER.request(limit, cursor, f.until)
        with self.db.read() as session:
            grouped = _sessions(session, at.bounded(f)).subquery()
            key = [grouped.c.last_seen, grouped.c.session_id, grouped.c.token_id]
            return SESSIONS_ORDER.page(session, select(grouped), key, at, take)

    def session(
        self, session_id: str, token: str, limit: int, cursor: str, take: Take
    ) -> tuple[list[Row[Any]], str]:
        """The session's summaries (one per token that used its id); offers `take`
        previews of its calls, oldest first, and returns the cursor that continues."""
        if not session_id:
            raise InvalidArgument("session_id", "is required")
        at = OLDEST_FIRST.request(limit, cursor, None)
        f = at.bounded(InterceptionFilter(session_id=session_id, token=token))
        with self.db.read() as session:
            summaries = sorted(session.execute(_sessions(session, f)), key=_session_key)
            if not summaries:
                raise NotFound(f"session {session_id!r} not found")
            next_cursor = _previews(session, f, at, OLDEST_FIRST, take)
        summaries.reverse()  # the most recently active first, as in a listing
        return summaries, next_cursor


def _previews(
    session: Session, f: InterceptionFilter, at: PageRequest, order: Keyset, take: Take
) -> str:
    query = select(*PREVIEW_COLUMNS).where(*_conditions(session, f))
    return order.page(session, query, _CALL_COLUMNS, at, take)


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
    if f.user:
        found.append(user_filter(session, f.user))
    for name in ("model", "client", "session_id"):
        if value := getattr(f, name):
            found.append(getattr(Interception, name) == value)
    if f.status_class:
        status = _STATUS_CLASSES.get(f.status_class)
        if status is None:
            raise InvalidArgument("status_class", f"must be one of {', '.join(_STATUS_CLASSES)}")
        found.append(status)
    return found


def user_filter(session: Session, ref: str) -> ColumnElement[bool]:
    """Calls of the user `ref` names: the live user with that name (or id), else deleted
    ones (a name may have been taken again); failing both, calls recorded under that id or
    name by users this database does not know."""
    matches = session.execute(
        select(User.id, User.deleted_at).where((User.name == ref) | (User.id == ref))
    ).all()
    live = [uid for uid, deleted_at in matches if deleted_at is None]
    ids = live or [uid for uid, _ in matches]
    if ids:
        return Interception.user_id.in_(ids)
    return (Interception.user_id == ref) | (Interception.user_name == ref)
