"""Limits: the limit sets of the default, user:, team: and token: scopes (every one that
applies to a call must pass); setting one, which merges into the scope's set as
`aibridgectl limits set` does, and clearing one."""

from __future__ import annotations

from aiohttp import web

from aibridge.v1 import admin_pb2
from console.api import Refused
from console.formatting import parse_number
from console.views import call, change_of, form, refusal, render, see_other, session_of

routes = web.RouteTableDef()

# What a field takes to remove its limit, as aibridgectl's options do.
NONE = "none"
# The form's fields are SetLimitsRequest's, so that the field an API refusal names is the
# form's field.
COUNTS = ("requests_per_minute", "tokens_per_minute", "max_concurrent")
LISTS = ("providers", "models")
FIELDS = ("scope", "per_member", *COUNTS, "monthly_budget_usd", *LISTS)
NOTHING = (
    "Nothing to set: fill in at least one limit (or none to remove one), or choose Per member."
)


async def _page(
    request: web.Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    listing = await call(request, "ListLimits", admin_pb2.ListLimitsRequest())
    values = values if values is not None else {"scope": request.query.get("scope", "")}
    context = {
        "sets": listing.limits,
        "revision": listing.revision,
        "errors": errors or {},
        "values": values,
        "clear_buttons": session_of(request).admin,
    }
    return render(request, "limits.html", context, status)


@routes.get("/limits")
async def limits(request: web.Request) -> web.Response:
    return await _page(request)


def _set_limits_message(
    fields: dict[str, str],
) -> tuple[admin_pb2.SetLimitsRequest, dict[str, str]]:
    """The form as a SetLimitsRequest: each field filled in replaces the scope's limit,
    `none` removes it, an empty one keeps it. Also what could not be read, by field."""
    message = admin_pb2.SetLimitsRequest(scope=fields.get("scope", "").strip(), **change_of(fields))
    errors: dict[str, str] = {}
    for name in (*COUNTS, "monthly_budget_usd", *LISTS):
        value = fields.get(name, "").strip()
        if not value:
            continue
        if value.lower() == NONE:
            message.clear.append(name)
        elif name in LISTS:
            listed = getattr(message, name)
            listed.values.extend(v.strip() for v in value.split(",") if v.strip())
            listed.SetInParent()  # given, even when it lists nothing: every one allowed
        else:
            try:
                setattr(message, name, parse_number(value, whole=name in COUNTS))
            except ValueError as exc:
                errors[name] = f"{exc}, or none to remove the limit"
    per_member = fields.get("per_member", "")
    if per_member in ("yes", "no"):
        message.per_member = per_member == "yes"
    return message, errors


def _nothing_given(message: admin_pb2.SetLimitsRequest) -> bool:
    return not message.clear and not any(
        message.HasField(name) for name in ("per_member", *COUNTS, "monthly_budget_usd", *LISTS)
    )


@routes.post("/limits")
async def set_limits(request: web.Request) -> web.Response:
    fields = await form(request)
    message, errors = _set_limits_message(fields)
    if not errors and _nothing_given(message):
        errors = {"": NOTHING}
    if errors:
        return await _page(request, values=fields, errors=errors, status=400)
    try:
        reply = await call(request, "SetLimits", message)
    except Refused as exc:
        # A scope or provider that does not exist is refused without naming a field: the
        # message says which, above the form.
        errors, status = refusal(exc, FIELDS)
        return await _page(request, values=fields, errors=errors, status=status)
    session_of(request).flash(
        f"Set the limits of {reply.limits.scope} at revision {reply.revision}.", "success"
    )
    see_other("/limits")


@routes.post("/limits/clear")
async def clear(request: web.Request) -> web.Response:
    fields = await form(request)
    message = admin_pb2.ClearLimitsRequest(scope=fields.get("scope", ""), **change_of(fields))
    try:
        reply = await call(request, "ClearLimits", message)
    except Refused as exc:
        errors, status = refusal(exc, ())
        return await _page(request, errors=errors, status=status)
    session_of(request).flash(
        f"Cleared the limits of {reply.scope} at revision {reply.revision}.", "success"
    )
    see_other("/limits")
