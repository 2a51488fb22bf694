"""Tokens: the gateway tokens clients present, a form to issue one (its plaintext shown
once, on the page the form leads to), and revoking."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from aiohttp import web

from aibridge.v1 import admin_pb2
from console.api import Refused
from console.formatting import parse_number
from console.views import call, change_of, form, refusal, render, see_other, session_of

routes = web.RouteTableDef()

REPLAYED = (
    "This form was sent already: token {name} was created then, at revision {revision}. "
    "Its secret was shown once, in the answer to that first submission. If you do not "
    "have it, revoke the token and create another."
)

# The new token's plaintext, between the form's answer and the page it redirects to.
SHOWN_ONCE = "token"
DAY = 86400
# Like `aibridgectl tokens create --expires-in`, in the durations people pick.
EXPIRIES = (
    ("0", "Never"),
    (str(DAY), "1 day"),
    (str(7 * DAY), "7 days"),
    (str(30 * DAY), "30 days"),
    (str(90 * DAY), "90 days"),
    (str(365 * DAY), "1 year"),
)
FORM_FIELDS = {"name": "name", "user": "user", "expires_in_seconds": "expires_in"}
# Refusals that name no field, and the field they are about: a live token has the name,
# or there is no such user.
UNNAMED = {grpc.StatusCode.ALREADY_EXISTS: "name", grpc.StatusCode.NOT_FOUND: "user"}


def _state(token: admin_pb2.Token, now: datetime) -> str:
    if token.HasField("revoked_at"):
        return "revoked"
    if token.HasField("expires_at") and token.expires_at.ToDatetime(tzinfo=UTC) <= now:
        return "expired"
    return "live"


async def _tokens_page(
    request: web.Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    listing = await call(request, "ListTokens", admin_pb2.ListTokensRequest(include_revoked=True))
    now = datetime.now(UTC)
    context = {
        "tokens": [(t, _state(t, now)) for t in listing.tokens],
        "revision": listing.revision,
        "expiries": EXPIRIES,
        "values": values or {"expires_in": "0"},
        "errors": errors or {},
        # Popped: a reload of the page does not show it again.
        "new_token": session_of(request).shown_once.pop(SHOWN_ONCE, ""),
    }
    return render(request, "tokens.html", context, status)


@routes.get("/tokens")
async def tokens(request: web.Request) -> web.Response:
    return await _tokens_page(request)


@routes.post("/tokens")
async def create(request: web.Request) -> web.Response:
    fields = await form(request)
    entered = {name: fields.get(name, "").strip() for name in ("name", "user", "expires_in")}
    message = admin_pb2.CreateTokenRequest(
        name=entered["name"], user=entered["user"], **change_of(fields)
    )
    try:
        message.expires_in_seconds = int(parse_number(entered["expires_in"] or "0", whole=True))
    except ValueError as exc:
        return await _tokens_page(
            request, values=entered, errors={"expires_in": str(exc)}, status=400
        )
    try:
        reply = await call(request, "CreateToken", message)
    except Refused as exc:
        errors, status = refusal(exc, FORM_FIELDS, UNNAMED.get(exc.code, ""))
        return await _tokens_page(request, values=entered, errors=errors, status=status)
    session = session_of(request)
    if reply.replayed:  # this form was sent before; its secret went to that answer only
        session.flash(REPLAYED.format(name=reply.info.name, revision=reply.revision), "warning")
        see_other("/tokens")
    session.shown_once[SHOWN_ONCE] = reply.token
    session.flash(f"Created token {reply.info.name} at revision {reply.revision}.", "success")
    see_other("/tokens")


@routes.post("/tokens/{id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    fields = await form(request)
    ref = request.match_info["id"]
    message = admin_pb2.RevokeTokenRequest(ref=ref, **change_of(fields))
    try:
        reply = await call(request, "RevokeToken", message)
    except Refused as exc:
        if not exc.stale:
            raise
        errors, status = refusal(exc, {})
        return await _tokens_page(request, errors=errors, status=status)
    session_of(request).flash(
        f"Revoked token {reply.info.name} at revision {reply.revision}.", "success"
    )
    see_other("/tokens")
