"""Users: the people gateway tokens belong to, with this month's spend against their
budget; creating one, changing their email, turning them on and off, and deleting them
(which revokes their tokens)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from aibridge.v1 import admin_pb2
from console.api import Refused
from console.spending import budget_scopes, spending
from console.views import (
    call,
    change_of,
    find_named,
    form,
    refusal,
    render,
    see_other,
    session_of,
)

routes = web.RouteTableDef()


async def _listing(
    request: web.Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    listing = await call(request, "ListUsers", admin_pb2.ListUsersRequest())
    spend = await spending(request, "user")
    context = {
        "users": [(u, spend.of(u.id, budget_scopes("user", u.name))) for u in listing.users],
        "spending": spend,
        "revision": listing.revision,
        "errors": errors or {},
        "values": values or {},
    }
    return render(request, "users.html", context, status)


@routes.get("/users")
async def users(request: web.Request) -> web.Response:
    return await _listing(request)


@routes.post("/users")
async def create(request: web.Request) -> web.Response:
    fields = await form(request)
    message = admin_pb2.CreateUserRequest(
        name=fields.get("name", "").strip(),
        email=fields.get("email", "").strip(),
        disabled=fields.get("disabled") == "on",
        **change_of(fields),
    )
    try:
        reply = await call(request, "CreateUser", message)
    except Refused as exc:
        # A name already taken is refused without naming a field: it is the name's problem.
        errors, status = refusal(exc, ("name", "email"), default="name")
        return await _listing(request, values=fields, errors=errors, status=status)
    user = reply.user
    state = "" if user.enabled else " (disabled)"
    session_of(request).flash(
        f"Created user {user.name}{state} at revision {reply.revision}.", "success"
    )
    see_other(f"/users/{user.name}")


# --- one user ---------------------------------------------------------------------------


async def _tokens_of(request: web.Request, name: str) -> list[Any]:
    """The user's live tokens."""
    listing = await call(request, "ListTokens", admin_pb2.ListTokensRequest())
    return [t for t in listing.tokens if t.user == name]


async def _user_page(
    request: web.Request,
    template: str = "user.html",
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    """The user's page, or (`template`) the confirmation of their deletion."""
    name = request.match_info["name"]
    message = admin_pb2.ListUsersRequest()
    revision, user = await find_named(request, "ListUsers", message, "users", name, "user")
    spend = await spending(request, "user")
    context = {
        "user": user,
        "revision": revision,
        "tokens": await _tokens_of(request, user.name),
        "spend": spend.of(user.id, budget_scopes("user", user.name)),
        "spending": spend,
        "limits": spend.set_of(f"user:{user.name}"),
        "errors": errors or {},
        "values": values or {},
    }
    return render(request, template, context, status)


@routes.get("/users/{name}")
async def user(request: web.Request) -> web.Response:
    return await _user_page(request)


async def _update(
    request: web.Request,
    fields: dict[str, str],
    describe: Callable[[Any], str],
    **change: Any,
) -> web.Response:
    """UpdateUser with `change`, then back to the user's page with `describe(reply)`; a
    refusal is shown on the page (a stale form with the user as they are now)."""
    message = admin_pb2.UpdateUserRequest(
        ref=request.match_info["name"], **change_of(fields), **change
    )
    try:
        reply = await call(request, "UpdateUser", message)
    except Refused as exc:
        errors, status = refusal(exc, ("email",))
        values = {} if exc.stale else fields
        return await _user_page(request, values=values, errors=errors, status=status)
    session_of(request).flash(describe(reply), "success")
    see_other(f"/users/{reply.user.name}")


@routes.post("/users/{name}")
async def update_email(request: web.Request) -> web.Response:
    fields = await form(request)

    def describe(reply: Any) -> str:
        return f"Changed the email of {reply.user.name} at revision {reply.revision}."

    return await _update(request, fields, describe, email=fields.get("email", "").strip())


@routes.post("/users/{name}/{switch:enable|disable}")
async def switch(request: web.Request) -> web.Response:
    fields = await form(request)

    def describe(reply: Any) -> str:
        done = "Enabled" if reply.user.enabled else "Disabled"
        return (
            f"{done} user {reply.user.name} and their {reply.user.tokens} token(s) at "
            f"revision {reply.revision}."
        )

    enabled = request.match_info["switch"] == "enable"
    return await _update(request, fields, describe, enabled=enabled)


# --- deleting, after a confirmation -----------------------------------------------------


@routes.get("/users/{name}/delete")
async def confirm_delete(request: web.Request) -> web.Response:
    if not session_of(request).admin:  # a viewer has nothing to confirm
        see_other(f"/users/{request.match_info['name']}")
    return await _user_page(request, "user_delete.html")


@routes.post("/users/{name}/delete")
async def delete(request: web.Request) -> web.Response:
    fields = await form(request)
    message = admin_pb2.DeleteUserRequest(ref=request.match_info["name"], **change_of(fields))
    try:
        reply = await call(request, "DeleteUser", message)
    except Refused as exc:
        errors, status = refusal(exc, ())
        return await _user_page(request, "user_delete.html", errors=errors, status=status)
    session_of(request).flash(
        f"Deleted user {reply.name} and revoked {reply.revoked_tokens} token(s) at revision "
        f"{reply.revision}.",
        "success",
    )
    see_other("/users")
