"""QueryUsage in time buckets: one row per key and bucket, buckets aligned to the epoch,
the same numbers as the unbucketed totals, and the ranges it refuses. Runs on SQLite and
PostgreSQL, one controlplane per database holding one set of calls for every test."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from aibridge.v1 import admin_pb2, usage_pb2
from tests.harness import Controlplane, ctl, interception, report

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
# USD per million tokens (input, output) of the models the calls use; "m-free" has none.
PRICES = {"m-alpha": (2.0, 10.0), "m-beta": (1.0, 4.0)}


@dataclass(frozen=True)
class Stored:
    """The calls' hour: `start` (a multiple of an hour since the epoch, four hours ago)."""

    start: datetime
    cp: Controlplane

    def at(self, offset: timedelta) -> datetime:
        return self.start + offset

    def query(self, **fields: Any) -> admin_pb2.QueryUsageResponse:
        """QueryUsage over the four hours from `start`, unless `fields` say otherwise."""
        request = admin_pb2.QueryUsageRequest(since=ts(self.start), until=ts(self.start + 4 * HOUR))
        for name in ("since", "until"):
            if name in fields:
                getattr(request, name).CopyFrom(ts(fields.pop(name)))
        request.MergeFrom(admin_pb2.QueryUsageRequest(**fields))
        return self.cp.admin.QueryUsage(request)


def ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def cost(model: str, input_tokens: int, output_tokens: int) -> float:
    price_in, price_out = PRICES[model]
    return (input_tokens * price_in + output_tokens * price_out) / 1e6


def call(
    started_at: datetime, request_id: str, model: str, tokens: tuple[int, int], **fields: Any
) -> usage_pb2.Interception:
    """A call started at `started_at`, with `tokens` (input, output); alice's unless said."""
    return interception(
        request_id, timedelta(0), started_at, model=model, tokens=(*tokens, 0, 0), **fields
    )


@pytest.fixture(scope="module")
def stored(shared_controlplane: Controlplane) -> Stored:
    """Calls in the hours h0, h1 and h3 from `start` (none in h2): by openai and
    anthropic, of alice's token and of ada's (a user's), from two clients."""
    cp = shared_controlplane
    for model, (price_in, price_out) in PRICES.items():
        cp.admin.SetPrice(admin_pb2.SetPriceRequest(model=model, input=price_in, output=price_out))
    cp.admin.CreateUser(admin_pb2.CreateUserRequest(name="ada"))
    ada = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="ada-laptop", user="ada"))
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 4 * HOUR

    def at(offset: timedelta) -> datetime:
        return start + offset

    calls = [
        call(at(5 * MINUTE), "b1", "m-alpha", (10, 20), client="claude-code"),
        call(at(55 * MINUTE), "b2", "m-alpha", (5, 0), status=500, token="bob", client="curl"),
        # The last microsecond of h0, and the first of h1: each in its own bucket.
        call(at(HOUR - timedelta(microseconds=1)), "b3", "m-beta", (3, 4), client="curl"),
        call(at(HOUR), "b4", "m-beta", (100, 50), provider="anthropic", client="claude-code"),
        call(at(HOUR + 20 * MINUTE), "b5", "m-free", (7, 8), client="curl"),
        call(at(3 * HOUR + 30 * MINUTE), "b6", "m-alpha", (1, 2), client="claude-code"),
        call(at(3 * HOUR + 31 * MINUTE), "b7", "m-beta", (4, 0), status=0, client="curl"),
    ]
    for record in calls[5:]:  # ada's calls, attributed to her by her token
        record.token_id, record.token_name = ada.info.id, "ada-laptop"
    assert report(cp, calls, cp.secrets.bridged) == len(calls)
    return Stored(start, cp)


Row = tuple[int, int, int, int, float, int]  # requests errors input output cost unpriced


def by_hour(stored: Stored, response: admin_pb2.QueryUsageResponse) -> dict[tuple[str, int], Row]:
    """(key, the bucket's hour from `stored.start`) → the row's numbers; each pair once."""
    found: dict[tuple[str, int], Row] = {}
    for r in response.rows:
        hour = int((r.bucket_start.ToDatetime(tzinfo=UTC) - stored.start) / HOUR)
        assert (r.key, hour) not in found
        found[(r.key, hour)] = (
            r.requests, r.errors, r.input_tokens, r.output_tokens, r.cost_usd, r.unpriced
        )  # fmt: skip
    return found


def approx(*row: float) -> Any:
    return pytest.approx(row)


def test_hourly_buckets_hold_exactly_each_providers_calls(stored: Stored) -> None:
    response = stored.query(bucket_seconds=3600)
    assert response.group_by == "provider"
    assert by_hour(stored, response) == {
        #                  requests errors input output cost unpriced
        ("openai", 0): approx(3, 1, 18, 24, cost("m-alpha", 15, 20) + cost("m-beta", 3, 4), 0),
        ("anthropic", 1): approx(1, 0, 100, 50, cost("m-beta", 100, 50), 0),
        ("openai", 1): approx(1, 0, 7, 8, 0.0, 1),
        ("openai", 3): approx(2, 1, 5, 2, cost("m-alpha", 1, 2) + cost("m-beta", 4, 0), 0),
    }
    # Ordered by bucket, then key; every row of a bucketed query has its bucket.
    order = [(r.bucket_start.seconds, r.key) for r in response.rows]
    assert order == sorted(order)
    assert all(r.HasField("bucket_start") for r in response.rows)


def test_buckets_by_model_user_client_and_token(stored: Stored) -> None:
    alpha, beta = "m-alpha", "m-beta"
    assert by_hour(stored, stored.query(bucket_seconds=3600, group_by="model")) == {
        (alpha, 0): approx(2, 1, 15, 20, cost(alpha, 15, 20), 0),
        (beta, 0): approx(1, 0, 3, 4, cost(beta, 3, 4), 0),
        (beta, 1): approx(1, 0, 100, 50, cost(beta, 100, 50), 0),
        ("m-free", 1): approx(1, 0, 7, 8, 0.0, 1),
        (alpha, 3): approx(1, 0, 1, 2, cost(alpha, 1, 2), 0),
        (beta, 3): approx(1, 1, 4, 0, cost(beta, 4, 0), 0),
    }
    assert by_hour(stored, stored.query(bucket_seconds=3600, group_by="user")) == {
        ("", 0): approx(3, 1, 18, 24, cost(alpha, 15, 20) + cost(beta, 3, 4), 0),
        ("", 1): approx(2, 0, 107, 58, cost(beta, 100, 50), 1),
        ("ada", 3): approx(2, 1, 5, 2, cost(alpha, 1, 2) + cost(beta, 4, 0), 0),
    }
    assert by_hour(stored, stored.query(bucket_seconds=3600, group_by="client")) == {
        ("claude-code", 0): approx(1, 0, 10, 20, cost(alpha, 10, 20), 0),
        ("curl", 0): approx(2, 1, 8, 4, cost(alpha, 5, 0) + cost(beta, 3, 4), 0),
        ("claude-code", 1): approx(1, 0, 100, 50, cost(beta, 100, 50), 0),
        ("curl", 1): approx(1, 0, 7, 8, 0.0, 1),
        ("claude-code", 3): approx(1, 0, 1, 2, cost(alpha, 1, 2), 0),
        ("curl", 3): approx(1, 1, 4, 0, cost(beta, 4, 0), 0),
    }
    by_token = by_hour(stored, stored.query(bucket_seconds=3600, group_by="token"))
    assert {key: row[0] for key, row in by_token.items()} == {
        ("alice", 0): 2, ("bob", 0): 1, ("alice", 1): 2, ("ada-laptop", 3): 2,
    }  # fmt: skip


def test_a_provider_filter_applies_within_buckets(stored: Stored) -> None:
    response = stored.query(bucket_seconds=3600, provider="anthropic", group_by="model")
    assert by_hour(stored, response) == {
        ("m-beta", 1): approx(1, 0, 100, 50, cost("m-beta", 100, 50), 0)
    }


@pytest.mark.parametrize("seconds", [60, 300, 600, 900, 3600, 7200])
def test_buckets_start_at_multiples_of_their_length_since_the_epoch(
    stored: Stored, seconds: int
) -> None:
    response = stored.query(bucket_seconds=seconds)
    starts = {r.bucket_start.ToDatetime(tzinfo=UTC) for r in response.rows}
    # Exactly the buckets holding a call's start: none without calls.
    minutes = (5, 55, 60 - 1e-6 / 60, 60, 80, 210, 211)  # the calls, from stored.start
    epoch = (stored.start + timedelta(minutes=m) for m in minutes)
    expected = {datetime.fromtimestamp(int(t.timestamp()) // seconds * seconds, UTC) for t in epoch}
    assert starts == expected
    assert all(s.timestamp() % seconds == 0 for s in starts)


@pytest.mark.parametrize("group_by", ["provider", "model", "token", "client", "user"])
@pytest.mark.parametrize("seconds", [60, 600, 3600])
def test_the_buckets_add_up_to_the_unbucketed_totals(
    stored: Stored, group_by: str, seconds: int
) -> None:
    # A range that starts and ends inside buckets counts its own calls, not all of theirs:
    # b1 (at 5 min) and b7 (at 3 h 31 min) are out.
    since, until = stored.at(30 * MINUTE), stored.at(3 * HOUR + 30 * MINUTE + MINUTE / 2)
    whole = stored.query(group_by=group_by, since=since, until=until)
    bucketed = stored.query(group_by=group_by, since=since, until=until, bucket_seconds=seconds)
    assert bucketed.group_by == group_by
    assert not any(r.HasField("bucket_start") for r in whole.rows)
    sums: dict[str, list[float]] = {}
    for r in bucketed.rows:
        numbers = (r.requests, r.errors, r.input_tokens, r.output_tokens, r.cost_usd, r.unpriced)
        total = sums.setdefault(r.key, [0.0] * len(numbers))
        for i, n in enumerate(numbers):
            total[i] += n
    expected = {
        r.key: approx(r.requests, r.errors, r.input_tokens, r.output_tokens, r.cost_usd, r.unpriced)
        for r in whole.rows
    }
    assert sums == expected
    assert sum(r.requests for r in whole.rows) == 5


def refused_naming(stored: Stored, field: str, **fields: Any) -> None:
    with pytest.raises(grpc.RpcError) as refusal:
        stored.query(**fields)
    assert refusal.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refusal.value.details()
    trailing: Any = refusal.value.trailing_metadata()
    assert ("aibridge-field", field) in [tuple(item) for item in trailing]
    assert (refusal.value.details() or "").startswith(f"{field}:")


def test_ranges_and_lengths_it_refuses(stored: Stored) -> None:
    now = datetime.now(UTC)
    refused_naming(stored, "bucket_seconds", bucket_seconds=59)
    refused_naming(stored, "bucket_seconds", bucket_seconds=1)
    # No `since` (the helper always sends one).
    with pytest.raises(grpc.RpcError) as refusal:
        stored.cp.admin.QueryUsage(admin_pb2.QueryUsageRequest(bucket_seconds=3600))
    assert refusal.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refusal.value.details() or "").startswith("since:")
    refused_naming(stored, "until", bucket_seconds=60, since=now, until=now)
    refused_naming(stored, "until", bucket_seconds=60, since=now, until=now - MINUTE)
    # `until` defaults to now: a `since` in the future is after it.
    with pytest.raises(grpc.RpcError) as refusal:
        stored.cp.admin.QueryUsage(
            admin_pb2.QueryUsageRequest(bucket_seconds=60, since=ts(now + HOUR))
        )
    assert (refusal.value.details() or "").startswith("until:")
    refused_naming(stored, "bucket_seconds", bucket_seconds=2**31, since=now - HOUR)
    refused_naming(stored, "bucket_seconds", bucket_seconds=366 * 86400 + 1, since=now - HOUR)
    # 1,000 buckets are served; one second more is refused. The buckets are counted as
    # they fall (from multiples of their length): 1,000 minutes that start mid-minute
    # touch 1,001 of them.
    minute = now.replace(second=0, microsecond=0)
    stored.query(bucket_seconds=60, since=minute - 1000 * MINUTE, until=minute)
    refused_naming(
        stored, "bucket_seconds",
        bucket_seconds=60, since=minute - 1000 * MINUTE - timedelta(seconds=1), until=minute,
    )  # fmt: skip
    refused_naming(
        stored, "bucket_seconds",
        bucket_seconds=60, since=minute - 1000 * MINUTE + timedelta(seconds=1),
        until=minute + timedelta(seconds=1),
    )  # fmt: skip
    refused_naming(
        stored, "bucket_seconds", bucket_seconds=3600, since=now - 1001 * HOUR, until=now
    )


def test_until_defaults_to_now(stored: Stored) -> None:
    request = admin_pb2.QueryUsageRequest(bucket_seconds=3600, since=ts(stored.start))
    response = stored.cp.admin.QueryUsage(request)
    assert sum(r.requests for r in response.rows) == 7


def test_aibridgectl_usage_by_bucket(stored: Stored) -> None:
    since, until = stored.start.isoformat(), (stored.start + 4 * HOUR).isoformat()
    shown = ctl(stored.cp, "usage", "--since", since, "--until", until, "--bucket", "1h")
    assert shown.returncode == 0, shown.stderr
    table, _, note = shown.stdout.partition("\n\n")
    lines = [line.split() for line in table.splitlines()]
    assert lines[0][:3] == ["BUCKET", "PROVIDER", "REQUESTS"]
    h0, h1, h3 = (
        (stored.start + n * HOUR).strftime("%Y-%m-%dT%H:%M:%SZ") for n in (0, 1, 3)
    )  # fmt: skip
    assert [line[:4] for line in lines[1:]] == [
        [h0, "openai", "3", "1"], [h1, "anthropic", "1", "0"], [h1, "openai", "1", "0"],
        [h3, "openai", "2", "1"], ["-", "TOTAL", "7", "2"],
    ]  # fmt: skip
    assert "1 call" in note  # m-free's, unpriced
    needs_since = ctl(stored.cp, "usage", "--bucket", "1h")
    assert needs_since.returncode == 2 and "--bucket needs --since" in needs_since.stderr
    too_short = ctl(stored.cp, "usage", "--since", since, "--bucket", "30s")
    assert too_short.returncode == 1 and "bucket_seconds" in too_short.stderr
