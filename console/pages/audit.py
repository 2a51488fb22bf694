"""Audit: who changed what, and when: the newest entries of the audit log, each with
its details (JSON, secrets masked by the controlplane) folded away."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from aibridge.v1 import admin_pb2
from console.views import call, render

routes = web.RouteTableDef()

LIMITS = ("50", "200", "1000")
SUMMARY_CHARACTERS = 80


@dataclass(frozen=True)
class Details:
    summary: str  # one line, cut
    whole: str  # pretty-printed
    empty: bool


def details_of(text: str) -> Details:
    """An entry's details as a line to glance at and, unfolded, in full."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:  # not JSON after all: shown as it is
        return Details(cut(text), text, not text)
    line = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    whole = json.dumps(value, ensure_ascii=False, indent=2)
    return Details(cut(line), whole, not value)


def cut(line: str) -> str:
    if len(line) <= SUMMARY_CHARACTERS:
        return line
    return line[: SUMMARY_CHARACTERS - 1] + "…"


@routes.get("/audit")
async def audit(request: web.Request) -> web.Response:
    limit = request.query.get("limit", LIMITS[0])
    if limit not in LIMITS:
        limit = LIMITS[0]
    reply = await call(request, "ListAudit", admin_pb2.ListAuditRequest(limit=int(limit)))
    entries: list[tuple[Any, Details]] = [(e, details_of(e.details)) for e in reply.entries]
    context = {"entries": entries, "limit": limit, "limits": LIMITS}
    return render(request, "audit.html", context)
