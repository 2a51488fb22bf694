"""Limits: the limit sets of the default, user:, team: and token: scopes (every one that
applies to a call must pass); setting one, which merges into the scope's set as
`aibridgectl limits set` does, and clearing one."""

from __future__ import annotations

import math

from aiohttp import web

from aibridge.v1 import admin_pb2
from console.api import Refused
from console.views import call, form, refusal, render, revision_of, see_other, session_of

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
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
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


def _request(fields: dict[str, str]) -> tuple[admin_pb2.SetLimitsRequest, dict[str, str]]:
    """The form as a SetLimitsRequest: each field filled in replaces the scope's limit,
    `none` removes it, an empty one keeps it. Also what could not be read, by field."""
    request = admin_pb2.SetLimitsRequest(
        scope=fields.get("scope", "").strip(), expected_revision=revision_of(fields)
    )
    errors: dict[str, str] = {}
    for name in (*COUNTS, "monthly_budget_usd", *LISTS):
        value = fields.get(name, "").strip()
        if not value:
            continue
        if value.lower() == NONE:
            request.clear.append(name)
        elif name in LISTS:
            listed = getattr(request, name)
            listed.values.extend(v.strip() for v in value.split(",") if v.strip())
            listed.SetInParent()  # given, even when it lists nothing: every one allowed
        else:
            try:
                setattr(request, name, _number(value, whole=name in COUNTS))
            except ValueError as exc:
                errors[name] = str(exc)
    per_member = fields.get("per_member", "")
    if per_member in ("yes", "no"):
        request.per_member = per_member == "yes"
    return request, errors


def _number(text: str, whole: bool) -> int | float:
    """A number as people write one ("1,000", "$50"); ValueError saying what is wrong
    with one that is none, or beyond what the request's field holds."""
    text = text.removeprefix("$").replace(",", "").replace("_", "")
    what = "a whole number" if whole else "an amount of USD"
    try:
        number = int(text) if whole else float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):  # "nan" and "inf" are floats, but no amounts
        raise ValueError(f"must be {what}, or none to remove the limit")
    if abs(number) >= 2**63:
        raise ValueError(f"{text} is too large")
    return number


def _nothing_given(request: admin_pb2.SetLimitsRequest) -> bool:
    return not request.clear and not any(
        request.HasField(name) for name in ("per_member", *COUNTS, "monthly_budget_usd", *LISTS)
    )


@routes.post("/limits")
async def set_limits(request: web.Request) -> web.Response:
    fields = await form(request)
    message, errors = _request(fields)
    if not errors and _nothing_given(message):
        errors = {"": NOTHING}
    if errors:
        return await _page(request, errors, fields, 400)
    try:
        reply = await call(request, "SetLimits", message)
    except Refused as exc:
        # A scope or provider that does not exist is refused without naming a field: the
        # message says which, above the form.
        errors, status = refusal(exc, FIELDS)
        return await _page(request, errors, fields, status)
    session_of(request).flash(
        f"Set the limits of {reply.limits.scope} at revision {reply.revision}.", "success"
    )
    see_other("/limits")


@routes.post("/limits/clear")
async def clear(request: web.Request) -> web.Response:
    fields = await form(request)
    message = admin_pb2.ClearLimitsRequest(
        scope=fields.get("scope", ""), expected_revision=revision_of(fields)
    )
    try:
        reply = await call(request, "ClearLimits", message)
    except Refused as exc:
        errors, status = refusal(exc, ())
        return await _page(request, errors, None, status)
    session_of(request).flash(
        f"Cleared the limits of {reply.scope} at revision {reply.revision}.", "success"
    )
    see_other("/limits")
