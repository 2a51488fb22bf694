"""What every page handler uses: the signed-in session, calls to the admin API made with
its credential, rendering a template, and redirecting after a form."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

import jinja2
from aiohttp import web

from console.api import AdminAPI, Refused
from console.formatting import FILTERS
from console.session import Session

API = web.AppKey("api", AdminAPI)
TEMPLATES = web.AppKey("templates", jinja2.Environment)

# The navigation, in order: (path, name).
NAV = (
    ("/", "Overview"),
    ("/providers", "Providers"),
    ("/tokens", "Tokens"),
    ("/usage", "Usage"),
    ("/interceptions", "Interceptions"),
    ("/users", "Users"),
    ("/teams", "Teams"),
    ("/limits", "Limits"),
    ("/prices", "Prices"),
    ("/audit", "Audit"),
)

STALE = (
    "Someone else changed the configuration since this form was loaded, so nothing was "
    "changed. This is the current state: check it and try again."
)


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


def session_of(request: web.Request) -> Session:
    """The signed-in session (the middleware lets no other request reach a page)."""
    session: Session = request["session"]
    return session


def actor(request: web.Request) -> str:
    """Who the audit log names: the console, the role, and the browser's address."""
    return f"console {session_of(request).role} ({request.remote or 'unknown'})"


async def call(request: web.Request, method: str, message: Any) -> Any:
    """Admin API `method` with the session's credential."""
    session = session_of(request)
    return await request.app[API].call(method, message, session.credential, actor(request))


def render(
    request: web.Request, template: str, context: Mapping[str, Any] | None = None, status: int = 200
) -> web.Response:
    session: Session | None = request.get("session")
    text = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            request=request,
            session=session,
            nav=NAV,
            path=request.path,
            flashes=session.take_flashes() if session is not None else [],
            **(context or {}),
        )
    )
    return web.Response(text=text, content_type="text/html", status=status)


def see_other(location: str) -> NoReturn:
    """After a form: the browser GETs `location` (reloading it never posts again)."""
    raise web.HTTPSeeOther(location)


async def form(request: web.Request) -> dict[str, str]:
    """The posted form's fields (each once; the middleware has checked its CSRF token)."""
    data = await request.post()
    return {k: str(v) for k, v in data.items() if isinstance(v, str)}


def revision_of(fields: Mapping[str, str]) -> int | None:
    """The revision the form was rendered at: what a mutation expects still to be current."""
    value = fields.get("revision", "")
    return int(value) if value.isdigit() else None


def errors_of(refused: Refused, fields: Mapping[str, str], unnamed: str = "") -> dict[str, str]:
    """A refusal as a form's errors (`{form field: message}`, "" for the whole form): a
    stale form gets STALE; an API field the form has (`fields` maps the API's names to
    the form's) gets its message beside it; a refusal that names no field goes beside
    `unnamed` (an ALREADY_EXISTS is about the name a form gave)."""
    if refused.stale:
        return {"": STALE}
    if not refused.field:
        return {unnamed: refused.message}
    field = fields.get(refused.field)
    if field is None:
        return {"": refused.message}
    # The API words it after its own field ("base_url: must have a host"): beside the
    # form's field, the problem alone.
    return {field: refused.message.removeprefix(f"{refused.field}: ")}


def utc_datetime(text: str) -> datetime:
    """An <input type="datetime-local"> value (2025-01-31T14:00), read as UTC; one with an
    offset is converted. ValueError for anything else."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
