"""Signing in with the admin or viewer credential, and out."""

from __future__ import annotations

import logging
import secrets
import unicodedata
from urllib.parse import urlsplit

from aiohttp import web

from console.security import FAILED_SIGNINS, SESSIONS
from console.session import COOKIE, SIGNIN_COOKIE, matches
from console.views import API, posted, render, session_of

log = logging.getLogger("console")

routes = web.RouteTableDef()

NOT_A_CREDENTIAL = "That token is not an admin or viewer credential."
TOO_MANY = (
    "Too many failed sign-ins from your address: wait a minute, then try again with the "
    "admin or viewer credential."
)


def _safe_next(value: str) -> str:
    """Only a path of this console: never another site (an open redirect). Browsers read
    a backslash as a slash and drop tabs and newlines, so `/\\evil` and `/<tab>/evil`
    are `//evil`, another host, as `///evil` is: any of them is refused."""
    if "\\" in value or any(unicodedata.category(c) == "Cc" for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return "/"
    return "/" if value.startswith("//") else value


def _signin_page(request: web.Request, problem: str = "", status: int = 200) -> web.Response:
    """The form, its CSRF token bound to a nonce in a cookie of its own (kept while it
    lasts, so that two sign-in pages open at once both work)."""
    nonce = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)
    sessions = request.app[SESSIONS]
    expired = request.query.get("expired") == "1"
    response = render(
        request,
        "signin.html",
        {
            "csrf": sessions.sign("signin:" + nonce),
            "next": _safe_next(request.query.get("next", "/")),
            "problem": problem
            or ("Your session ended: the credential is no longer accepted." if expired else ""),
        },
        status=status,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        nonce,
        path="/signin",
        httponly=True,
        samesite="Strict",
        secure=request.secure or sessions.secure_cookies,
    )
    return response


@routes.get("/signin")
async def signin_form(request: web.Request) -> web.Response:
    return _signin_page(request)


@routes.post("/signin")
async def signin(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    fields = await posted(request)
    nonce = request.cookies.get(SIGNIN_COOKIE, "")
    presented = fields.get("csrf")
    if (
        not nonce
        or not isinstance(presented, str)
        or not matches(presented, sessions.sign("signin:" + nonce))
    ):
        return _signin_page(
            request, "The sign-in form was out of date. Please try again.", status=403
        )
    address = request.remote or "unknown"
    failures = request.app[FAILED_SIGNINS]
    if failures.blocked(address):
        log.warning("sign-in refused: too many failed sign-ins from %s", address)
        return _signin_page(request, TOO_MANY, status=429)
    token = str(fields.get("token", "")).strip()
    role = await request.app[API].role_of(token) if token else None
    if role is None:
        failures.failed(address)
        log.warning("failed sign-in from %s", address)  # never the token: it may be a typo'd one
        return _signin_page(request, NOT_A_CREDENTIAL, status=401)
    # The browser's previous session, if any, ends: one browser, one session.
    previous = sessions.find(request.cookies.get(COOKIE))
    if previous is not None:
        sessions.drop(previous)
    _, cookie = sessions.create(role, token)
    response = web.HTTPSeeOther(_safe_next(str(fields.get("next", "/"))))
    response.set_cookie(
        COOKIE,
        cookie,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure or sessions.secure_cookies,
    )
    response.del_cookie(SIGNIN_COOKIE, path="/signin")
    raise response


@routes.post("/signout")
async def signout(request: web.Request) -> web.Response:
    request.app[SESSIONS].drop(session_of(request))
    response = web.HTTPSeeOther("/signin")
    response.del_cookie(COOKIE, path="/")
    raise response
