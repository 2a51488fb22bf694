"""The middlewares every request passes: security headers, sign-in, CSRF, read-only
viewers, and errors as pages (the controlplane down is a banner, never a 500)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from console.api import REFUSED_STATUS, ControlplaneUnavailable, Refused, SignedOut
from console.session import COOKIE, Sessions
from console.views import SESSION, render

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
        return render(request, "unavailable.html", {"problem": str(exc)}, status=503)
    except Refused as exc:  # one a page did not place beside a field: the page says it
        status = REFUSED_STATUS.get(exc.code, 502)
        return render(request, "refused.html", {"problem": exc.message}, status=status)
    except SignedOut:
        session = request.get(SESSION)
        if session is not None:
            request.app[SESSIONS].drop(session)
        response = web.HTTPSeeOther("/signin?expired=1")
        response.del_cookie(COOKIE, path="/")
        raise response from None
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return render(request, "error.html", {}, status=500)


@web.middleware
async def signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page but sign-in needs a session; a POST needs its CSRF token, and, but for
    signing out, the admin role."""
    if request.path.startswith(PUBLIC):
        return await handler(request)
    session = request.app[SESSIONS].find(request.cookies.get(COOKIE))
    if session is None:
        if request.method == "GET" and not request.path.startswith("/live/"):
            raise web.HTTPSeeOther(f"/signin?next={quote(request.path_qs, safe='')}")
        raise web.HTTPUnauthorized(text="Not signed in.")
    request[SESSION] = session
    if request.method == "POST":
        fields = await request.post()
        presented = fields.get("csrf")
        if not isinstance(presented, str) or not hmac.compare_digest(presented, session.csrf):
            return render(request, "refused.html", {"problem": CSRF_PROBLEM}, status=403)
        if not session.admin and request.path != "/signout":
            return render(request, "refused.html", {"problem": VIEWER_PROBLEM}, status=403)
    return await handler(request)


CSRF_PROBLEM = (
    "This form did not come from this console's page (its CSRF token is missing or out of "
    "date), so nothing was changed. Reload the page and try again."
)
VIEWER_PROBLEM = "You are signed in as a viewer, who may look but not change anything."
