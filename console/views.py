"""What every page handler uses: the signed-in session, calls to the admin API made with
its credential, rendering a template, and redirecting after a form."""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
import jinja2
from aiohttp import web

from console.api import REFUSED_STATUS, AdminAPI, Refused
from console.formatting import FILTERS
from console.session import Session

API = web.AppKey("api", AdminAPI)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
SESSION = web.RequestKey("session", Session)

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
SENT_ALREADY = (
    "This form was sent already, and its change made then; nothing more was changed. This "
    "is the current state."
)
NO_REVISION = (
    "This form has no valid revision (a page of this console always sends the one it "
    "was loaded at), so nothing was changed. Reload the page and try again."
)
NO_REQUEST_ID = (
    "This form's request id is not one this console makes, so nothing was changed. "
    "Reload the page and try again."
)
UNREADABLE = "This form's answer could not be read, so nothing was changed."


class MalformedForm(Exception):
    """A posted form no page of this console sends (unreadable, or without a field every
    form has): the middleware answers 400 with this message."""


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    env.globals["new_request_id"] = new_request_id
    return env


def session_of(request: web.Request) -> Session:
    """The signed-in session (the middleware lets no other request reach a page)."""
    session: Session = request[SESSION]
    return session


def actor(request: web.Request) -> str:
    """Who the audit log names: the console, the role, and the browser's address."""
    return f"console {session_of(request).role} ({request.remote or 'unknown'})"


async def call(request: web.Request, method: str, message: Any) -> Any:
    """Admin API `method` with the session's credential."""
    session = session_of(request)
    return await request.app[API].call(method, message, session.credential, actor(request))


@dataclass(frozen=True)
class SignedIn:
    """What a template knows of the session: never its credential."""

    role: str
    csrf: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
    *,
    take_flashes: bool = True,
) -> web.Response:
    """`template` with `context`. A page takes the session's flashes and shows them; a
    fragment a script fetches, or an error page, leaves them for the next page (else a
    live region refreshing in another tab would take a form's "Created …")."""
    session: Session | None = request.get(SESSION)
    text = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            session=SignedIn(session.role, session.csrf) if session is not None else None,
            nav=NAV,
            path=request.path,
            path_qs=request.path_qs,
            flashes=session.take_flashes() if session is not None and take_flashes else [],
            **(context or {}),
        )
    )
    return web.Response(text=text, content_type="text/html", status=status)


def see_other(location: str) -> NoReturn:
    """After a form: the browser GETs `location` (reloading it never posts again)."""
    raise web.HTTPSeeOther(location)


async def posted(request: web.Request) -> Mapping[str, object]:
    """The posted body's fields; MalformedForm for a body that is no form (a multipart
    one without its boundary, say), which aiohttp refuses with a ValueError."""
    try:
        return await request.post()
    except ValueError:
        raise MalformedForm(UNREADABLE) from None


async def form(request: web.Request) -> dict[str, str]:
    """The posted form's fields (each once; the middleware has checked its CSRF token)."""
    data = await posted(request)
    return {k: str(v) for k, v in data.items() if isinstance(v, str)}


_REVISION = re.compile(r"[0-9]{1,20}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UINT64_END = 2**64


def change_of(fields: Mapping[str, str]) -> dict[str, Any]:
    """What a form's mutation carries besides its own fields: `expected_revision`, the
    revision the form was rendered at, and `request_id`, the form's own (macros.html): the
    same form sent twice (a double click, a reload after an answer that never came) makes
    its change once, and the second gets the first's answer."""
    request_id = fields.get("request_id", "")  # none on a page rendered by an older console
    if request_id and not _REQUEST_ID.fullmatch(request_id):
        raise MalformedForm(NO_REQUEST_ID)
    return {"expected_revision": revision_of(fields), "request_id": request_id}


def revision_of(fields: Mapping[str, str]) -> int:
    """The revision the form was rendered at: what a mutation expects still to be current.
    Every form has one; a mutation without it would change whatever is current, unseen,
    so a missing or unreadable one (not a uint64) is MalformedForm."""
    value = fields.get("revision", "")
    if not _REVISION.fullmatch(value) or int(value) >= _UINT64_END:
        raise MalformedForm(NO_REVISION)
    return int(value)


def new_request_id() -> str:
    """A form's request id: unguessable, so no one can replay another's change."""
    return secrets.token_urlsafe(16)


async def find_named(
    request: web.Request, method: str, message: Any, listed: str, name: str, what: str
) -> tuple[int, Any]:
    """The revision of `method`'s listing and its item (in the field `listed`) named
    `name`, read together: the revision a page's forms about that item expect (a Get has
    no revision, and one read after it could be newer than what it showed). NOT_FOUND,
    saying `what` it looked for, if there is none."""
    listing = await call(request, method, message)
    for item in getattr(listing, listed):
        if item.name == name:
            return listing.revision, item
    raise Refused(
        grpc.StatusCode.NOT_FOUND,
        f"There is no {what} named {name!r}: it may have been renamed or deleted.",
    )


def refusal(
    exc: Refused, fields: Mapping[str, str] | Collection[str], default: str = ""
) -> tuple[dict[str, str], int]:
    """A refused form's errors (`{form field: message}`, "" for above the form) and HTTP
    status. A stale form gets STALE above it. The API's message goes beside the field it
    names when the form has it (`fields`: the form's field names, or a map from the
    API's names to the form's), without that name, which the message starts with;
    otherwise beside `default` (an ALREADY_EXISTS, which names no field, is about the
    name a form gave). A form sent again with its request id gets SENT_ALREADY."""
    status = REFUSED_STATUS.get(exc.code, 502)
    if exc.stale:
        return {"": STALE}, status
    if exc.field == "request_id":
        # Its id went with another call: this form, sent before with other values (the
        # provider form sends what differs from the provider as it is now).
        return {"": SENT_ALREADY}, 409
    names = fields if isinstance(fields, Mapping) else {name: name for name in fields}
    if exc.field and exc.field in names:
        return {names[exc.field]: exc.message.removeprefix(f"{exc.field}: ")}, status
    return {default: exc.message}, status
