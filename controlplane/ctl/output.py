"""What aibridgectl prints: an API response as JSON, or as tables and `key: value` lines."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from aibridge.v1 import admin_pb2

# --- JSON ----------------------------------------------------------------------------------

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def _numbers(message: Message, data: dict[str, Any]) -> dict[str, Any]:
    """Proto JSON writes 64-bit integers as strings; scripts want numbers (`.revision + 1`)."""
    for f in message.DESCRIPTOR.fields:
        if f.name not in data:
            continue
        value = getattr(message, f.name)
        repeated = f.is_repeated  # protobuf >= 7 (pyproject.toml) has it; `label` is gone
        if f.type in _INT64:
            data[f.name] = [int(v) for v in value] if repeated else int(value)
        elif f.message_type is not None and f.message_type.full_name != "google.protobuf.Timestamp":
            if repeated:
                data[f.name] = [_numbers(m, d) for m, d in zip(value, data[f.name], strict=True)]
            else:
                data[f.name] = _numbers(value, data[f.name])
    return data


def to_json(message: Message) -> dict[str, Any]:
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _numbers(message, data)


def emit_json(message: Message) -> None:
    print(json.dumps(to_json(message), indent=2, ensure_ascii=False))


# --- readable ------------------------------------------------------------------------------


def fmt_time(message: Message, field: str, unset: str = "-") -> str:
    if not message.HasField(field):
        return unset
    ts: Timestamp = getattr(message, field)
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def presence(subscriber: admin_pb2.Subscriber, now: datetime) -> str:
    """`connected`, or `disconnected 12s ago`."""
    if subscriber.connected:
        return "connected"
    if not subscriber.HasField("disconnected_at"):
        return "disconnected"
    since = now - subscriber.disconnected_at.ToDatetime(tzinfo=UTC)
    return f"disconnected {max(int(since.total_seconds()), 0)}s ago"


def _cell(value: str) -> str:
    # One row per line, whatever the server put in a free-text field.
    text = " ".join(str(value).split())
    return text or "-"


def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else 80 (output to a pipe)."""
    return shutil.get_terminal_size().columns


def one_line(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters, an ellipsis marking the cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# A table's last column keeps at least this many characters, however narrow the screen.
MIN_LAST_COLUMN = 20


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], fit: int | None = None) -> str:
    """Aligned columns, a row a line; with `fit`, the last column (free text) is cut so
    that lines stay within `fit` characters."""
    cells = [list(headers)] + [[_cell(v) for v in row] for row in rows]
    if fit is not None:
        used = sum(max(len(row[i]) + 2 for row in cells) for i in range(len(headers) - 1))
        room = max(fit - used, MIN_LAST_COLUMN)
        for row in cells:
            row[-1] = one_line(row[-1], room)
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [v.ljust(w) for v, w in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in pairs) + 1
    return "\n".join(f"{(k + ':').ljust(width)}  {v}" for k, v in pairs)


def yes_no(value: bool) -> str:
    return "yes" if value else "no"
