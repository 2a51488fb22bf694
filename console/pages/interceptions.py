"""Interceptions: the calls bridged recorded, filtered and a page at a time; one call
whole; client sessions, and a session's calls as a timeline. All reads: viewers see them.

The sessions live under /interceptions/sessions so that the navigation's "Interceptions"
stays current on them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import grpc
from aiohttp import web

from aibridge.v1 import admin_pb2
from common.tokens import TOKEN_PREFIX, could_be_plaintext
from console.api import Refused
from console.formatting import parse_local_input
from console.views import call, render, session_of

routes = web.RouteTableDef()

# The text filters, named in the URL as aibridgectl names its options: (name, label, hint).
TEXT_FILTERS = (
    ("token", "Token", "name or id"),
    ("provider", "Provider", "name or id"),
    ("user", "User", "name or id"),
    ("model", "Model", "like gpt-4o"),
    ("client", "Client", "claude-code, codex, curl, …"),
    ("session", "Session", "the client's session id"),
)
STATUS_CLASSES = (
    ("", "any"), ("2xx", "2xx"), ("3xx", "3xx"), ("4xx", "4xx"), ("5xx", "5xx"),
    ("error", "error: 4xx, 5xx or no answer"),
)  # fmt: skip
PAGE_SIZES = ("20", "50", "100", "200")
# A query parameter at its default is left out of the URL, like an empty one.
DEFAULTS = {"limit": "50"}
SESSION_CALLS = 100  # a session page's calls
TIME_HINT = "UTC"
# The API's names of the filter's fields, where the URL's differ.
FORM_NAME = {"session_id": "session", "status_class": "status"}
LABELS = {name: label for name, label, _ in TEXT_FILTERS}
SECRET_DROPPED = (
    "The {} filter was given what looks like a gateway token's secret: it was not used, "
    "and is kept out of the page's address. Filter by the token's name or id (tok_…)."
)


@dataclass
class Filters:
    """A listing's filters as its URL gives them: the values its form shows back, the
    InterceptionFilter they make, and what is wrong with them (by field)."""

    values: dict[str, str]
    selected: admin_pb2.InterceptionFilter
    limit: int
    errors: dict[str, str] = field(default_factory=dict)


def interception_href(record_id: str) -> str:
    return "/interceptions/" + quote(record_id, safe="")


def session_href(session_id: str, token: str = "") -> str:
    """A session's page; with `token`, only the session under that token (a session id
    is the client's to choose, so two tokens may use one)."""
    path = "/interceptions/sessions/" + quote(session_id, safe="")
    return path + ("?" + urlencode({"token": token}) if token else "")


HREFS = {"interception_href": interception_href, "session_href": session_href}


def canonical(request: web.Request) -> None:
    """Redirects a filter form's answer (every field, most of them empty) to the URL
    holding only the filters set: the one to link to or reload. A secret pasted into a
    filter is dropped first, and the page says so: a URL is kept in the browser's
    history and in proxies' logs."""
    kept = []
    for name, value in request.query.items():
        if _looks_like_a_secret(name, value):
            session_of(request).flash(SECRET_DROPPED.format(LABELS[name]), "warning")
        elif value and value != DEFAULTS.get(name):
            kept.append((name, value))
    if len(kept) != len(request.query):
        raise web.HTTPFound(request.path + ("?" + urlencode(kept) if kept else ""))


def _looks_like_a_secret(name: str, value: str) -> bool:
    """A gateway token's plaintext in any text filter; in the Token filter, anything
    that cannot be a token's name or id (aibridgectl refuses it likewise)."""
    value = value.strip()
    if name not in LABELS:
        return False
    if value.startswith(TOKEN_PREFIX):
        return True
    return name == "token" and could_be_plaintext(value)


def filters_of(query: Mapping[str, str], names: tuple[str, ...]) -> Filters:
    values = {name: query.get(name, "").strip() for name in names}
    errors: dict[str, str] = {}
    period = {name: _time(values, name, errors) for name in ("since", "until")}
    since, until = period["since"], period["until"]
    if since and until and since > until and not errors:
        errors["until"] = "is before since"
    selected = admin_pb2.InterceptionFilter(
        token=values.get("token", ""),
        provider=values.get("provider", ""),
        user=values.get("user", ""),
        model=values.get("model", ""),
        client=values.get("client", ""),
        session_id=values.get("session", ""),
        status_class=values.get("status", ""),
    )
    for name, when in period.items():
        if when is not None:
            getattr(selected, name).FromDatetime(when)
    limit = values.get("limit") or DEFAULTS["limit"]
    if limit not in PAGE_SIZES:
        errors["limit"] = f"must be one of {', '.join(PAGE_SIZES)}"
    return Filters(values, selected, int(limit) if limit.isdigit() else 0, errors)


def _time(values: dict[str, str], name: str, errors: dict[str, str]) -> datetime | None:
    if not values[name]:
        return None
    try:
        return parse_local_input(values[name])
    except ValueError:
        errors[name] = "must be a date and time in UTC, like 2025-01-31T14:00"
        return None


async def listing(
    request: web.Request, method: str, request_type: Any, names: tuple[str, ...]
) -> tuple[Any, Filters, dict[str, Any]]:
    """One page of `method`'s listing under the URL's filters: the API's answer (None
    when the filters are refused), the filters, and the pages' links."""
    canonical(request)
    filters = filters_of(request.query, names)
    cursor = request.query.get("cursor", "")
    answer = None
    if not filters.errors:
        message = request_type(filter=filters.selected, limit=filters.limit, cursor=cursor)
        try:
            answer = await call(request, method, message)
        except Refused as exc:
            if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            name = FORM_NAME.get(exc.field, exc.field)
            filters.errors[name if name in names else ""] = exc.message
    unpaged = {k: v for k, v in request.query.items() if k != "cursor"}
    pages = {
        "first_page": str(request.rel_url.with_query(unpaged)) if cursor else "",
        "next_page": (
            str(request.rel_url.with_query({**unpaged, "cursor": answer.next_cursor}))
            if answer is not None and answer.next_cursor
            else ""
        ),
    }
    return answer, filters, pages


def filter_context(filters: Filters, names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "values": filters.values,
        "errors": filters.errors,
        "text_filters": [f for f in TEXT_FILTERS if f[0] in names],
        "status_classes": STATUS_CLASSES,
        "page_sizes": PAGE_SIZES,
        "time_hint": TIME_HINT,
        **HREFS,
    }


LISTING_FILTERS = ("since", "until", *(f[0] for f in TEXT_FILTERS), "status", "limit")
SESSIONS_FILTERS = tuple(name for name in LISTING_FILTERS if name != "session")


@routes.get("/interceptions")
async def interceptions(request: web.Request) -> web.Response:
    names = LISTING_FILTERS
    answer, filters, pages = await listing(
        request, "ListInterceptions", admin_pb2.ListInterceptionsRequest, names
    )
    context = {
        **filter_context(filters, names),
        **pages,
        "records": answer.interceptions if answer is not None else [],
    }
    return render(request, "interceptions.html", context, 400 if filters.errors else 200)


@routes.get("/interceptions/sessions")
async def sessions(request: web.Request) -> web.Response:
    names = SESSIONS_FILTERS
    answer, filters, pages = await listing(
        request, "ListSessions", admin_pb2.ListSessionsRequest, names
    )
    context = {
        **filter_context(filters, names),
        **pages,
        "sessions": answer.sessions if answer is not None else [],
    }
    return render(request, "sessions.html", context, 400 if filters.errors else 200)


@routes.get("/interceptions/sessions/{session_id}")
async def session(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    token = request.query.get("token", "")
    cursor = request.query.get("cursor", "")
    answer = await call(
        request,
        "GetSession",
        admin_pb2.GetSessionRequest(
            session_id=session_id, token=token, limit=SESSION_CALLS, cursor=cursor
        ),
    )
    later = {**request.query, "cursor": answer.next_cursor}
    context = {
        "session_id": session_id,
        "summaries": answer.sessions,
        "totals": session_totals(answer.sessions),
        "records": answer.interceptions,
        "first_page": session_href(session_id, token) if cursor else "",
        "next_page": str(request.rel_url.with_query(later)) if answer.next_cursor else "",
        **HREFS,
    }
    return render(request, "session.html", context)


def session_totals(summaries: Any) -> dict[str, Any]:
    """A session's totals over every token that used its id."""
    totals: dict[str, Any] = {
        key: sum(getattr(s, key) for s in summaries)
        for key in ("interceptions", "input_tokens", "output_tokens", "tool_calls", "errors")
    }
    totals["first_seen"] = min(
        (s.first_seen.ToDatetime(tzinfo=UTC) for s in summaries), default=None
    )
    totals["last_seen"] = max((s.last_seen.ToDatetime(tzinfo=UTC) for s in summaries), default=None)
    return totals


@routes.get("/interceptions/{id}")
async def interception(request: web.Request) -> web.Response:
    record_id = request.match_info["id"]
    record = await call(request, "GetInterception", admin_pb2.GetInterceptionRequest(id=record_id))
    return render(request, "interception.html", {"r": record, **HREFS})
