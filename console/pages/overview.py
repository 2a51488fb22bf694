"""Overview: the revision, every data plane and the revision it applied (updating live),
and the last 24 hours' calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp

from aibridge.v1 import admin_pb2
from console.views import call, render

routes = web.RouteTableDef()


async def _status(request: web.Request) -> dict[str, Any]:
    status = await call(request, "GetStatus", admin_pb2.GetStatusRequest())
    return {"status": status}


@routes.get("/")
async def overview(request: web.Request) -> web.Response:
    since = Timestamp()
    since.FromDatetime(datetime.now(UTC) - timedelta(hours=24))
    usage = await call(request, "QueryUsage", admin_pb2.QueryUsageRequest(since=since))
    totals = {
        "requests": sum(r.requests for r in usage.rows),
        "errors": sum(r.errors for r in usage.rows),
        "tokens": sum(r.input_tokens + r.output_tokens for r in usage.rows),
        "cost_usd": sum(r.cost_usd for r in usage.rows),
    }
    context = {**await _status(request), "totals": totals, "usage": usage.rows}
    return render(request, "overview.html", context)


@routes.get("/live/overview")
async def live(request: web.Request) -> web.Response:
    """The fleet part of the page, which the page's script fetches every second or two."""
    return render(request, "_fleet.html", await _status(request), take_flashes=False)
