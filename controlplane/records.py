"""Interceptions and sessions as the Admin API answers with them: whole records or
previews, in pages that stay well under gRPC's 4 MiB default message limit.

Tool calls and results are stored as JSON lists under the proto field names
(controlplane/usage.py) and read back into the same messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Row

from aibridge.v1 import admin_pb2
from controlplane.store.interceptions import PREVIEW_PROMPT_CHARS

PREVIEW_ARGUMENT_CHARS = 200
# A page stops once its records reach this: a client's default limit is 4 MiB a message.
PAGE_BYTES = 3 * 1024 * 1024

_COPIED = [
    f.name
    for f in admin_pb2.InterceptionRecord.DESCRIPTOR.fields
    if f.name not in ("id", "started_at", "tool_calls", "tool_results", "reasoning")
]
_SUMMED = ("interceptions", "input_tokens", "output_tokens", "tool_calls", "errors")


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def whole_record(row: Row[Any]) -> admin_pb2.InterceptionRecord:
    """The record as it was stored (store.interceptions.WHOLE_COLUMNS)."""
    record = _record(row)
    record.reasoning = row.reasoning
    return record


def preview_record(row: Row[Any]) -> admin_pb2.InterceptionRecord:
    """The record with its texts cut, marked truncated where cut; its reasoning left out,
    marked truncated when it has one (store.interceptions.PREVIEW_COLUMNS)."""
    record = _record(row)
    if len(record.prompt) > PREVIEW_PROMPT_CHARS:
        record.prompt = record.prompt[:PREVIEW_PROMPT_CHARS]
        record.prompt_truncated = True
    for call in record.tool_calls:
        if len(call.arguments) > PREVIEW_ARGUMENT_CHARS:
            call.arguments = call.arguments[:PREVIEW_ARGUMENT_CHARS]
            call.arguments_truncated = True
    record.reasoning_truncated = record.reasoning_truncated or bool(row.has_reasoning)
    # A message keeps the texts replaced in it until it goes (upb allocates in an arena
    # per message): a copy holds only the cut ones, not ~1 MiB of arguments per preview.
    preview = admin_pb2.InterceptionRecord()
    preview.CopyFrom(record)
    return preview


def _record(row: Row[Any]) -> admin_pb2.InterceptionRecord:
    record = admin_pb2.InterceptionRecord(
        id=row.request_id,
        started_at=timestamp(row.started_at),
        **{name: getattr(row, name) for name in _COPIED},
    )
    try:
        lists = {
            "tool_calls": json.loads(row.tool_calls),
            "tool_results": json.loads(row.tool_results),
        }
        json_format.ParseDict(lists, record, ignore_unknown_fields=True)
    except (ValueError, json_format.ParseError):
        record.partial = True  # what could be read is kept; it says it is not all
    return record


def summary(row: Row[Any]) -> admin_pb2.SessionSummary:
    return admin_pb2.SessionSummary(
        session_id=row.session_id,
        client=row.client,
        token_id=row.token_id,
        token_name=row.token_name,
        first_seen=timestamp(row.first_seen),
        last_seen=timestamp(row.last_seen),
        **{name: int(getattr(row, name) or 0) for name in _SUMMED},
    )


class Bounded:
    """Messages built from rows as the store offers them, as many as fit PAGE_BYTES (one
    at least): the store's `take`."""

    def __init__(self, build: Callable[[Row[Any]], Any]) -> None:
        self.build = build
        self.messages: list[Any] = []
        self.size = 0

    def take(self, row: Row[Any]) -> bool:
        built = self.build(row)
        size = self.size + built.ByteSize() + 8  # with its tag and length in the response
        if self.messages and size > PAGE_BYTES:
            return False
        self.messages.append(built)
        self.size = size
        return True
