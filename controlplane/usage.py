"""The Usage service: bridged reports intercepted calls in batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC

import grpc
import orjson
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from prometheus_client import Counter

from aibridge.v1 import usage_pb2, usage_pb2_grpc
from common.text import storable
from controlplane.store.db import DatabaseUnavailable
from controlplane.store.models import Interception
from controlplane.store.usage import UsageLog

log = logging.getLogger(__name__)

MAX_BATCH = 5000
USAGE_STORED = Counter("aibridge_controlplane_usage_stored_total", "Interceptions stored")
UNPRICED = Counter(
    "aibridge_controlplane_unpriced_interceptions_total",
    "Interceptions stored without a cost: they used tokens of a model with no price",
)

# Scalar fields go to their columns as they are; the repeated ones are stored as JSON.
_REPEATED = ("started_at", "tool_calls", "tool_results")
_FIELDS = [f.name for f in usage_pb2.Interception.DESCRIPTOR.fields if f.name not in _REPEATED]
_STRINGS = [
    f.name
    for f in usage_pb2.Interception.DESCRIPTOR.fields
    if f.type == f.TYPE_STRING and f.name in _FIELDS
]
# A string longer than its column would fail the whole batch on every retry: clip it.
_LIMITS = {
    c.name: length
    for c in Interception.__table__.columns
    if (length := getattr(c.type, "length", None))
}


class UsageService(usage_pb2_grpc.UsageServicer):
    def __init__(self, usage: UsageLog, changed: Callable[[], None] = lambda: None) -> None:
        self.usage = usage
        self.changed = changed  # told when a batch made a revision (it crossed a budget)

    async def ReportUsage(
        self, request: usage_pb2.ReportUsageRequest, context: grpc.aio.ServicerContext
    ) -> usage_pb2.ReportUsageResponse:
        if len(request.interceptions) > MAX_BATCH:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"interceptions: at most {MAX_BATCH} per batch"
            )
        rows = []
        for i in request.interceptions:
            if not i.request_id:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request_id: is required")
            row = {name: getattr(i, name) for name in _FIELDS}
            for name in _STRINGS:  # PostgreSQL's text cannot hold NUL: it would fail the batch
                if "\x00" in row[name]:  # (protobuf has checked the rest is valid UTF-8)
                    row[name] = storable(row[name])
            for name, limit in _LIMITS.items():
                row[name] = row[name][:limit]
            row["started_at"] = i.started_at.ToDatetime(tzinfo=UTC)
            row["tool_calls"] = _json(i.tool_calls)
            row["tool_call_count"] = len(i.tool_calls)
            row["tool_results"] = _json(i.tool_results)
            rows.append(row)
        try:
            stored = await asyncio.to_thread(self.usage.store, rows)
        except DatabaseUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"database unavailable: {exc}")
        USAGE_STORED.inc(stored.new)
        UNPRICED.inc(stored.unpriced)
        if stored.revision is not None:
            log.info("a budget was crossed: revision %d", stored.revision)
            self.changed()
        return usage_pb2.ReportUsageResponse(stored=stored.new)


def _json(messages: Sequence[Message]) -> str:
    """A JSON list of the messages, under their proto field names (the admin API reads
    them back into the same messages)."""
    if not messages:
        return "[]"  # most records: the cost of a batch is per record
    return orjson.dumps(
        [MessageToDict(m, preserving_proto_field_name=True) for m in messages]
    ).decode()
