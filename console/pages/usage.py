"""Usage: requests, tokens and cost over time by provider, model, token, client or user,
charted on the server from QueryUsage's buckets, and the range's totals per key. The
filters are the URL's query (/usage?range=24h&by=model&metric=requests): a view can be
linked and reloaded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp
from markupsafe import Markup

from aibridge.v1 import admin_pb2
from console.charts import Chart, bucket_text, figure, iso
from console.formatting import local_input, parse_local_input
from console.views import call, render

routes = web.RouteTableDef()

RANGES = {
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}
CUSTOM = "custom"
GROUPS = {"provider": "Provider", "model": "Model", "token": "Token", "client": "Client",
          "user": "User"}  # fmt: skip
# What a chart shows of a row, its title, and whether it is money.
METRICS: dict[str, tuple[str, Callable[[Any], float], bool]] = {
    "requests": ("Requests", lambda row: row.requests, False),
    "tokens": ("Tokens (input + output)", lambda row: row.input_tokens + row.output_tokens, False),
    "cost": ("Cost (USD)", lambda row: row.cost_usd, True),
}
ALL = "all"
# Bucket lengths to choose from: the shortest that keeps a chart within MAX_BUCKETS bars.
BUCKETS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 14400, 21600, 43200, 86400,
           172800, 604800)  # fmt: skip
MAX_BUCKETS = 200
LONGEST = timedelta(days=1000)  # a custom range's; weekly buckets keep it within MAX_BUCKETS


@dataclass(frozen=True)
class Period:
    """The range charted, in buckets of `bucket_seconds`; whole seconds, so that the
    page's numbers can be asked of the API again exactly."""

    since: datetime
    until: datetime
    bucket_seconds: int

    def buckets(self) -> list[datetime]:
        """Every bucket the range touches (the first and last may be partial)."""
        first = int(self.since.timestamp()) // self.bucket_seconds
        last = (int(self.until.timestamp()) - 1) // self.bucket_seconds
        return [
            datetime.fromtimestamp(i * self.bucket_seconds, UTC) for i in range(first, last + 1)
        ]


def bucket_for(since: datetime, until: datetime) -> int:
    """The shortest bucket length that charts the range in at most MAX_BUCKETS bars."""
    for seconds in BUCKETS:
        if len(Period(since, until, seconds).buckets()) <= MAX_BUCKETS:
            return seconds
    raise ValueError(f"{since} to {until} is longer than {MAX_BUCKETS} buckets of a week")


def choice(value: str | None, choices: Mapping[str, object] | Sequence[str], default: str) -> str:
    """`value` if it is one of `choices`, else `default` (a hand-edited URL shows a page)."""
    return value if value is not None and value in choices else default


def custom_period(query: Mapping[str, str]) -> tuple[Period | None, dict[str, str]]:
    """The range typed in the since/until fields (UTC), or the fields' errors."""
    times: dict[str, datetime] = {}
    errors: dict[str, str] = {}
    for name in ("since", "until"):
        try:
            times[name] = parse_local_input(query.get(name, ""))
        except ValueError:
            errors[name] = "Enter a date and time (UTC)."
    if errors:
        return None, errors
    since, until = times["since"], times["until"]
    if until <= since:
        return None, {"until": "Must be after Since."}
    if until - since > LONGEST:
        return None, {"until": f"Must be at most {LONGEST.days:,} days after Since."}
    return Period(since, until, bucket_for(since, until)), {}


def period_of(
    selected: str, query: Mapping[str, str], now: datetime
) -> tuple[Period | None, dict[str, str]]:
    if selected == CUSTOM:
        return custom_period(query)
    since = now - RANGES[selected][1]
    return Period(since, now, bucket_for(since, now)), {}


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


async def query_usage(
    request: web.Request, period: Period, by: str
) -> tuple[Sequence[Any], Sequence[Any]]:
    """The range's rows per key and bucket, and its totals per key."""
    since, until = timestamp(period.since), timestamp(period.until)
    bucketed, totals = await asyncio.gather(
        call(request, "QueryUsage", admin_pb2.QueryUsageRequest(
            since=since, until=until, group_by=by, bucket_seconds=period.bucket_seconds,
        )),
        call(request, "QueryUsage", admin_pb2.QueryUsageRequest(
            since=since, until=until, group_by=by,
        )),
    )  # fmt: skip
    return bucketed.rows, totals.rows


def name_of(key: str, by: str) -> str:
    if key:
        return key
    return "(no user)" if by == "user" else "(none)"


def charts(
    metric: str, period: Period, by: str, bucketed: Sequence[Any], totals: Sequence[Any]
) -> list[Markup]:
    """One chart a metric (or the one chosen), keys stacked and coloured alike in each in
    the order of `totals`: the first at the bottom."""
    keys = [r.key for r in totals]
    keys += sorted({r.key for r in bucketed} - set(keys))  # a call reported meanwhile
    names = {key: name_of(key, by) for key in keys}
    buckets = period.buckets()
    drawn = []
    for name, (title, value_of, money) in METRICS.items():
        if metric not in (ALL, name):
            continue
        values: dict[tuple[str, datetime], float] = {}
        for row in bucketed:
            point = (row.key, row.bucket_start.ToDatetime(tzinfo=UTC))
            values[point] = values.get(point, 0) + value_of(row)  # one name, two providers
        chart = Chart(title, keys, buckets, period.bucket_seconds, values, money, names)
        drawn.append(figure(chart))
    return drawn


@routes.get("/usage")
async def usage(request: web.Request) -> web.Response:
    query = request.query
    selected = choice(query.get("range"), [*RANGES, CUSTOM], "24h")
    by = choice(query.get("by"), GROUPS, "provider")
    metric = choice(query.get("metric"), [ALL, *METRICS], ALL)
    now = datetime.now(UTC).replace(microsecond=0)
    period, errors = period_of(selected, query, now)
    context: dict[str, Any] = {
        "ranges": [(k, label) for k, (label, _) in RANGES.items()] + [(CUSTOM, "Custom")],
        "groups": list(GROUPS.items()),
        "metrics": [(ALL, "All three"), *((k, m[0]) for k, m in METRICS.items())],
        "selected": selected, "by": by, "metric": metric, "errors": errors,
        "group_name": GROUPS[by], "period": period,
        "since": query.get("since", "") if period is None else local_input(period.since),
        "until": query.get("until", "") if period is None else local_input(period.until),
    }  # fmt: skip
    if period is None:
        return render(request, "usage.html", context, status=400)
    bucketed, totals = await query_usage(request, period, by)
    totals = sorted(totals, key=lambda r: (-r.requests, r.key))  # the most requested first
    context |= {
        "charts": charts(metric, period, by, bucketed, totals),
        "rows": [(name_of(r.key, by), r) for r in totals],
        "bucket": bucket_text(period.bucket_seconds),
        "since_iso": iso(period.since),
        "until_iso": iso(period.until),
        "total": {field: sum(getattr(r, field) for r in totals) for field in TOTALLED},
    }
    return render(request, "usage.html", context)


TOTALLED = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
            "cache_write_tokens", "cost_usd", "unpriced")  # fmt: skip
