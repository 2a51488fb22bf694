"""How pages show times, counts and money (jinja filters), and read the times and
numbers people type."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from common import money


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


def duration(milliseconds: Any) -> str:
    """A call's duration: milliseconds under a second, else seconds."""
    ms = float(milliseconds or 0)
    return f"{ms:,.0f} ms" if ms < 1000 else f"{ms / 1000:,.1f} s"


def excerpt(text: str, chars: int = 120) -> str:
    """`text` on one line, cut to `chars` (a table cell's preview of a longer text)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= chars else flat[: chars - 1] + "…"


def pretty_json(text: str) -> str:
    """JSON indented for reading; anything else (a cut or free-form text) as it came."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def usd_exact(value: Any) -> str:
    """Prices ($0.075 per million tokens, not $0.08) and budgets, as aibridgectl prints them."""
    return money.usd(float(value or 0))


def local_input(value: datetime) -> str:
    """`value` for an <input type="datetime-local">, in UTC (the pages say so)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def parse_local_input(text: str) -> datetime:
    """What an <input type="datetime-local"> sent, read as UTC; ValueError if it is none."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is not None:
        raise ValueError("a time without a zone: it is read as UTC")
    return value.replace(tzinfo=UTC)


# Commas only between groups of three digits: "1,000" is a thousand, "0,5" no number
# (rather than 5, ten times what a decimal comma meant).
_GROUPED = re.compile(r"-?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?")
_INT64_END = 2**63


def parse_number(text: str, *, whole: bool) -> int | float:
    """A whole number, or an amount of USD, as people write one ("1,000", "1_000",
    "$50"); a negative one too, for the API to say what is wrong with it. ValueError
    saying what it must be, for one that is none or beyond what the API's fields hold."""
    what = "a whole number" if whole else "an amount of USD"
    text = text.strip().removeprefix("$")
    if "," in text:
        if not _GROUPED.fullmatch(text):
            raise ValueError(f"must be {what}")
        text = text.replace(",", "")
    try:
        number = int(text) if whole else float(text)
    except ValueError:
        raise ValueError(f"must be {what}") from None
    if not math.isfinite(number):  # "nan" and "inf" are floats, but no amounts
        raise ValueError(f"must be {what}")
    if abs(number) >= _INT64_END:
        raise ValueError(f"must be {what} below {_INT64_END:,}")
    return number


FILTERS: dict[str, Callable[..., str]] = {
    "when": when,
    "count": count,
    "usd": usd,
    "duration": duration,
    "excerpt": excerpt,
    "pretty_json": pretty_json,
    "usd_exact": usd_exact,
}
