"""Overview: the revision, every data plane and the revision it applied (updating live),
and the last 24 hours' calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from aibridge.v1 import admin_pb2
from console.pages.usage import Period, charts, query_usage
from console.views import call, render

routes = web.RouteTableDef()


async def _status(request: web.Request) -> dict[str, Any]:
    status = await call(request, "GetStatus", admin_pb2.GetStatusRequest())
    return {"status": status}


@routes.get("/")
async def overview(request: web.Request) -> web.Response:
    now = datetime.now(UTC).replace(microsecond=0)
    day = Period(now - timedelta(hours=24), now, 3600)  # hourly bars
    bucketed, rows = await query_usage(request, day, "provider")
    totals = {
        "requests": sum(r.requests for r in rows),
        "errors": sum(r.errors for r in rows),
        "tokens": sum(r.input_tokens + r.output_tokens for r in rows),
        "cost_usd": sum(r.cost_usd for r in rows),
    }
    context = {
        **await _status(request),
        "totals": totals,
        "usage": rows,
        "chart": charts("requests", day, "provider", bucketed, rows),
    }
    return render(request, "overview.html", context)


@routes.get("/live/overview")
async def live(request: web.Request) -> web.Response:
    """The fleet part of the page, which the page's script fetches every second or two."""
    return render(request, "_fleet.html", await _status(request), take_flashes=False)
