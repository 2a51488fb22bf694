"""The middlewares every request passes: security headers, sign-in, CSRF, read-only
viewers, and errors as pages (the controlplane down is a banner, never a 500); and the
limit on failed sign-ins."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from console.api import REFUSED_STATUS, ControlplaneUnavailable, Refused, SignedOut
from console.session import COOKIE, Sessions, matches
from console.views import SESSION, MalformedForm, posted, render

log = logging.getLogger("console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSIONS = web.AppKey("sessions", Sessions)

# No inline script or style: every script and stylesheet is a file this console serves.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Paths served without a session.
PUBLIC = ("/signin", "/static/", "/healthz", "/favicon.ico")
# The fragments a page's script fetches: without a session, a 401, never a redirect.
LIVE = "/live/"
SIGNED_OUT = "Not signed in."


@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(HEADERS)
        raise
    response.headers.update(HEADERS)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except ControlplaneUnavailable as exc:
        log.warning("%s %s: %s", request.method, request.path, exc)
        return _problem(request, "unavailable.html", str(exc), 503)
    except Refused as exc:  # one a page did not place beside a field: the page says it
        return _problem(request, "refused.html", exc.message, REFUSED_STATUS.get(exc.code, 502))
    except MalformedForm as exc:
        return _problem(request, "refused.html", str(exc), 400)
    except SignedOut:
        session = request.get(SESSION)
        if session is not None:
            request.app[SESSIONS].drop(session)
        # A live region's fetch would follow a redirect and show the sign-in page inside
        # the page: it gets a 401 and sends the whole page to sign in.
        if request.path.startswith(LIVE):
            response: web.HTTPException = web.HTTPUnauthorized(text=SIGNED_OUT)
        else:
            response = web.HTTPSeeOther("/signin?expired=1")
        response.del_cookie(COOKIE, path="/")
        raise response from None
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _problem(request, "error.html", "", 500)


def _problem(request: web.Request, template: str, problem: str, status: int) -> web.Response:
    # An error page leaves the session's flashes for the page the person goes on to.
    return render(request, template, {"problem": problem}, status, take_flashes=False)


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page but sign-in needs a session; a POST needs its CSRF token, and, but for
    signing out, the admin role."""
    if request.path.startswith(PUBLIC):
        return await handler(request)
    session = request.app[SESSIONS].find(request.cookies.get(COOKIE))
    if session is None:
        if request.method == "GET" and not request.path.startswith(LIVE):
            raise web.HTTPSeeOther(f"/signin?next={quote(request.path_qs, safe='')}")
        raise web.HTTPUnauthorized(text=SIGNED_OUT)
    request[SESSION] = session
    if request.method == "POST":
        fields = await posted(request)
        presented = fields.get("csrf")
        if not isinstance(presented, str) or not matches(presented, session.csrf):
            return _problem(request, "refused.html", CSRF_PROBLEM, 403)
        if not session.admin and request.path != "/signout":
            return _problem(request, "refused.html", VIEWER_PROBLEM, 403)
    return await handler(request)


CSRF_PROBLEM = (
    "This form did not come from this console's page (its CSRF token is missing or out of "
    "date), so nothing was changed. Reload the page and try again."
)
VIEWER_PROBLEM = "You are signed in as a viewer, who may look but not change anything."


class FailedSignins:
    """Failed sign-ins by client address over the last `window` seconds: past `limit` of
    them, an address may not try again until the oldest is `window` old (so guessing a
    credential from one address is slow). Holds only the window's failures."""

    def __init__(
        self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._recent: deque[tuple[float, str]] = deque()  # (when, address), oldest first
        self._counts: Counter[str] = Counter()

    def blocked(self, address: str) -> bool:
        self._forget_old()
        return self._counts[address] >= self.limit

    def failed(self, address: str) -> None:
        self._forget_old()
        self._recent.append((self._clock(), address))
        self._counts[address] += 1

    def _forget_old(self) -> None:
        cutoff = self._clock() - self.window
        while self._recent and self._recent[0][0] <= cutoff:
            _, address = self._recent.popleft()
            self._counts[address] -= 1
            if not self._counts[address]:
                del self._counts[address]


FAILED_SIGNINS = web.AppKey("failed_signins", FailedSignins)
