"""How pages show times, counts and money (jinja filters), and read the times people
type."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp


def when(value: Timestamp | datetime | None) -> str:
    """A time in UTC to the second; "-" for an unset timestamp."""
    if isinstance(value, Timestamp):
        if not value.seconds and not value.nanos:
            return "-"
        value = value.ToDatetime(tzinfo=UTC)
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def count(value: Any) -> str:
    return f"{int(value or 0):,}"


def usd(value: Any) -> str:
    amount = float(value or 0)
    if 0 < abs(amount) < 0.01:
        return f"${amount:,.4f}"
    return f"${amount:,.2f}"


def local_input(value: datetime) -> str:
    """`value` for an <input type="datetime-local">, in UTC (the pages say so)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def parse_local_input(text: str) -> datetime:
    """What an <input type="datetime-local"> sent, read as UTC; ValueError if it is none."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is not None:
        raise ValueError("a time without a zone: it is read as UTC")
    return value.replace(tzinfo=UTC)


FILTERS = {"when": when, "count": count, "usd": usd}
