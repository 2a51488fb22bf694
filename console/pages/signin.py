"""Signing in with the admin or viewer credential, and out."""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from console.security import SESSIONS
from console.session import COOKIE, SIGNIN_COOKIE
from console.views import API, render, session_of

routes = web.RouteTableDef()


def _safe_next(value: str) -> str:
    """Only a path of this console: never another site (an open redirect)."""
    return value if value.startswith("/") and not value.startswith("//") else "/"


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
    fields = await request.post()
    nonce = request.cookies.get(SIGNIN_COOKIE, "")
    presented = fields.get("csrf")
    if (
        not nonce
        or not isinstance(presented, str)
        or not hmac.compare_digest(presented, sessions.sign("signin:" + nonce))
    ):
        return _signin_page(
            request, "The sign-in form was out of date. Please try again.", status=403
        )
    token = str(fields.get("token", "")).strip()
    role = await request.app[API].role_of(token) if token else None
    if role is None:
        return _signin_page(request, "That token is not an admin or viewer credential.", status=401)
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
