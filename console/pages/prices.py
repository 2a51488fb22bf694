"""Prices: the price table that turns each call's tokens into its cost (USD per million
input, output, cache-read and cache-write tokens, per model or model pattern); setting a
model's price and deleting one."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aibridge.v1 import admin_pb2
from console.api import Refused
from console.formatting import parse_number
from console.views import call, change_of, form, refusal, render, see_other, session_of

routes = web.RouteTableDef()

PRICES = ("input", "output", "cache_read", "cache_write")
# Left empty, a cache price is the input price (SetPriceRequest leaves them unset).
OPTIONAL = ("cache_read", "cache_write")
FIELDS = ("model", *PRICES)


async def _page(
    request: web.Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    listing = await call(request, "ListPrices", admin_pb2.ListPricesRequest())
    if values is None:  # "Edit" on a row: the form filled in with its price
        values = _values_of(listing.prices, request.query.get("model", ""))
    context = {
        "prices": listing.prices,
        "revision": listing.revision,
        "errors": errors or {},
        "values": values,
    }
    return render(request, "prices.html", context, status)


def _values_of(prices: Any, model: str) -> dict[str, str]:
    for price in prices:
        if price.model == model:
            return {"model": model} | {name: _plain(getattr(price, name)) for name in PRICES}
    return {"model": model}


def _plain(number: float) -> str:
    """A price as a form field holds it: 0.075, 15, never 1.5e-05."""
    return f"{number:.6f}".rstrip("0").rstrip(".")


@routes.get("/prices")
async def prices(request: web.Request) -> web.Response:
    return await _page(request)


def _set_price_message(
    fields: dict[str, str],
) -> tuple[admin_pb2.SetPriceRequest, dict[str, str]]:
    """The form as a SetPriceRequest, and what could not be read, by field."""
    message = admin_pb2.SetPriceRequest(model=fields.get("model", "").strip(), **change_of(fields))
    errors: dict[str, str] = {}
    for name in PRICES:
        text = fields.get(name, "").strip()
        if not text:
            if name not in OPTIONAL:
                errors[name] = "is required"
            continue
        try:
            setattr(message, name, parse_number(text, whole=False))
        except ValueError as exc:
            errors[name] = str(exc)
    return message, errors


@routes.post("/prices")
async def set_price(request: web.Request) -> web.Response:
    fields = await form(request)
    message, errors = _set_price_message(fields)
    if errors:
        return await _page(request, values=fields, errors=errors, status=400)
    try:
        reply = await call(request, "SetPrice", message)
    except Refused as exc:
        errors, status = refusal(exc, FIELDS)
        return await _page(request, values=fields, errors=errors, status=status)
    session_of(request).flash(
        f"Set the price of {reply.price.model} at revision {reply.revision}.", "success"
    )
    see_other("/prices")


@routes.post("/prices/delete")
async def delete(request: web.Request) -> web.Response:
    fields = await form(request)
    message = admin_pb2.DeletePriceRequest(model=fields.get("model", ""), **change_of(fields))
    try:
        reply = await call(request, "DeletePrice", message)
    except Refused as exc:
        errors, status = refusal(exc, ())
        return await _page(request, values={}, errors=errors, status=status)
    session_of(request).flash(
        f"Deleted the price of {reply.model} at revision {reply.revision}: its calls are "
        "unpriced from now on, unless a pattern matches them.",
        "success",
    )
    see_other("/prices")
