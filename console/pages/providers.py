"""Providers: the list and a form for a new one; a provider's page to edit it, add and
remove its keys, and delete it after a confirmation. Keys go to the API and never come
back into a page: only their hints are shown. A bedrock or vertex key is a credential
JSON document, sent as one key however many lines it has; such a provider's page shows
its region, project and model map (aibridgectl changes them)."""

from __future__ import annotations

from typing import Any

import grpc
from aiohttp import web

from aibridge.v1 import admin_pb2
from common.clouds import CLOUD_TYPES
from common.wire import PROVIDER_TYPES
from console.api import Refused
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

# The API's field names, as the forms name them: a key refused goes beside the Key field.
FORM_FIELDS = {
    "name": "name",
    "type": "type",
    "base_url": "base_url",
    "display_name": "display_name",
    "region": "region",
    "project": "project",
    "keys": "key",
    "add_keys": "key",
}


def _refusal(refused: Refused) -> tuple[dict[str, str], int]:
    unnamed = "name" if refused.code == grpc.StatusCode.ALREADY_EXISTS else ""
    return refusal(refused, FORM_FIELDS, unnamed)


def _entered(fields: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """What the person typed, to show again: never the key."""
    return {name: fields.get(name, "").strip() for name in names}


async def _current(request: web.Request, name: str) -> tuple[int, admin_pb2.Provider]:
    """The revision and the provider, read together: the revision its forms expect."""
    message = admin_pb2.ListProvidersRequest()
    return await find_named(request, "ListProviders", message, "providers", name, "provider")


# --- the list, and a new provider ---------------------------------------------------------


async def _providers_page(
    request: web.Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    listing = await call(request, "ListProviders", admin_pb2.ListProvidersRequest())
    context = {
        "providers": listing.providers,
        "revision": listing.revision,
        "types": PROVIDER_TYPES,
        "values": values or {"type": PROVIDER_TYPES[0]},
        "errors": errors or {},
    }
    return render(request, "providers.html", context, status)


@routes.get("/providers")
async def providers(request: web.Request) -> web.Response:
    return await _providers_page(request)


@routes.post("/providers")
async def create(request: web.Request) -> web.Response:
    fields = await form(request)
    entered = _entered(fields, ("name", "type", "base_url", "display_name", "region", "project"))
    key = fields.get("key", "")
    message = admin_pb2.CreateProviderRequest(
        name=entered["name"],
        type=entered["type"],
        base_url=entered["base_url"],
        display_name=entered["display_name"],
        region=entered["region"],
        project=entered["project"],
        disabled="disabled" in fields,
        keys=[key] if key else [],
        **change_of(fields),
    )
    try:
        reply = await call(request, "CreateProvider", message)
    except Refused as exc:
        values = entered | {"disabled": "1" if "disabled" in fields else ""}
        errors, status = _refusal(exc)
        return await _providers_page(request, values=values, errors=errors, status=status)
    session_of(request).flash(
        f"Created provider {reply.provider.name} at revision {reply.revision}.", "success"
    )
    see_other("/providers")


# --- one provider -------------------------------------------------------------------------


def _values_of(provider: admin_pb2.Provider) -> dict[str, str]:
    return {
        "name": provider.name,
        "base_url": provider.base_url,
        "display_name": provider.display_name,
        "enabled": "1" if provider.enabled else "",
    }


async def _provider_page(
    request: web.Request,
    name: str,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    revision, provider = await _current(request, name)
    context = {
        "provider": provider,
        "cloud": provider.type in CLOUD_TYPES,
        "revision": revision,
        "values": values or _values_of(provider),
        "errors": errors or {},
    }
    return render(request, "provider.html", context, status)


async def _provider_refused(
    request: web.Request, name: str, refused: Refused, values: dict[str, str] | None = None
) -> web.Response:
    """The provider's page again with the refusal placed; a stale form shows the
    current state, not what was entered."""
    errors, status = _refusal(refused)
    shown = None if refused.stale else values
    return await _provider_page(request, name, values=shown, errors=errors, status=status)


def _changes(
    message: admin_pb2.UpdateProviderRequest, entered: dict[str, str], current: admin_pb2.Provider
) -> bool:
    """Sets in `message` the fields the form changed; whether it changed any. Only
    those are sent, so the audit log names what was changed and nothing else."""
    for attr in ("name", "base_url", "display_name"):
        if entered[attr] != getattr(current, attr):
            setattr(message, attr, entered[attr])
    enabled = bool(entered["enabled"])
    if enabled != current.enabled:
        message.enabled = enabled
    return any(message.HasField(f) for f in ("name", "base_url", "display_name", "enabled"))


@routes.get("/providers/{name}")
async def provider(request: web.Request) -> web.Response:
    return await _provider_page(request, request.match_info["name"])


@routes.post("/providers/{name}")
async def update(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    fields = await form(request)
    entered = _entered(fields, ("name", "base_url", "display_name"))
    entered["enabled"] = "1" if "enabled" in fields else ""
    # The revision the form was rendered at: if anything changed since, this is refused.
    change = change_of(fields)
    _, current = await _current(request, name)
    message = admin_pb2.UpdateProviderRequest(ref=current.id, **change)
    if not _changes(message, entered, current):
        session_of(request).flash("Nothing to change: the form is what the provider has.")
        see_other(f"/providers/{name}")
    try:
        reply = await call(request, "UpdateProvider", message)
    except Refused as exc:
        return await _provider_refused(request, name, exc, entered)
    session_of(request).flash(
        f"Updated provider {reply.provider.name} at revision {reply.revision}.", "success"
    )
    see_other(f"/providers/{reply.provider.name}")


async def _update_keys(request: web.Request, fields: dict[str, str], **keys: Any) -> web.Response:
    """Adds or removes a key (`add_keys` / `remove_key_ids`), back to the provider."""
    name = request.match_info["name"]
    message = admin_pb2.UpdateProviderRequest(ref=name, **change_of(fields), **keys)
    try:
        reply = await call(request, "UpdateProvider", message)
    except Refused as exc:
        return await _provider_refused(request, name, exc)
    done = "Added a key to" if "add_keys" in keys else "Removed a key from"
    session_of(request).flash(
        f"{done} provider {reply.provider.name} at revision {reply.revision}.", "success"
    )
    see_other(f"/providers/{name}")


@routes.post("/providers/{name}/keys")
async def add_key(request: web.Request) -> web.Response:
    fields = await form(request)
    return await _update_keys(request, fields, add_keys=[fields.get("key", "")])


@routes.post("/providers/{name}/keys/{key_id}/remove")
async def remove_key(request: web.Request) -> web.Response:
    key_id = request.match_info["key_id"]
    return await _update_keys(request, await form(request), remove_key_ids=[key_id])


# --- deleting, after a confirmation -------------------------------------------------------


async def _delete_page(
    request: web.Request, name: str, *, errors: dict[str, str] | None = None, status: int = 200
) -> web.Response:
    revision, provider = await _current(request, name)
    context = {"provider": provider, "revision": revision, "errors": errors or {}}
    return render(request, "provider_delete.html", context, status)


@routes.get("/providers/{name}/delete")
async def confirm_delete(request: web.Request) -> web.Response:
    if not session_of(request).admin:  # a viewer has nothing to confirm
        see_other(f"/providers/{request.match_info['name']}")
    return await _delete_page(request, request.match_info["name"])


@routes.post("/providers/{name}/delete")
async def delete(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    fields = await form(request)
    message = admin_pb2.DeleteProviderRequest(ref=name, **change_of(fields))
    try:
        reply = await call(request, "DeleteProvider", message)
    except Refused as exc:
        if not exc.stale:
            raise
        errors, status = _refusal(exc)
        return await _delete_page(request, name, errors=errors, status=status)
    session_of(request).flash(f"Deleted provider {reply.name} at revision {reply.revision}.")
    see_other("/providers")
