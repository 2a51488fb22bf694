"""What aibridgectl prints: an API response as JSON, or as tables and `key: value` lines."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from aibridge.v1 import admin_pb2
from common.money import usd

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


# JSON escapes C0 controls itself; these it leaves as they are.
_JSON_UNESCAPED_CONTROLS = re.compile(r"[\x7f-\x9f]")


def emit_json(message: Message) -> None:
    text = json.dumps(to_json(message), indent=2, ensure_ascii=False)
    print(_JSON_UNESCAPED_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


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


# C0 and C1 control characters, and DEL: written to a terminal, a recorded text could
# move the cursor, rewrite what was printed, retitle the window or worse.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROLS_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, lines: bool = False) -> str:
    """`text` with its control characters shown as \\xNN; with `lines`, a block of text,
    its newlines and tabs kept."""
    controls = _CONTROLS_BUT_LINES if lines else _CONTROLS
    return controls.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _flat(text: str) -> str:
    # On one line, whatever the server put in a free-text field.
    return printable(" ".join(text.split()))


def _cell(value: str) -> str:
    return _flat(str(value)) or "-"


def terminal_width() -> int:
    """$COLUMNS, else the terminal's width, else 80 (output to a pipe)."""
    return shutil.get_terminal_size().columns


def one_line(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters, an ellipsis marking the cut."""
    flat = _flat(text)
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
    return "\n".join(f"{(k + ':').ljust(width)}  {printable(v)}" for k, v in pairs)


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def cost_text(record: admin_pb2.InterceptionRecord) -> str:
    """A call's cost; `-` when its model had no price."""
    return usd(record.cost_usd) if record.HasField("cost_usd") else "-"


def unpriced_note(calls: int, column: str) -> str:
    """The footer of a table whose `column` of costs leaves out calls without a price."""
    calls_of = f"{calls} call{'' if calls == 1 else 's'}"
    return f"{calls_of} of models with no price, not in {column} (see aibridgectl prices)"
