"""The Usage service (bridged reports interceptions) and what an administrator reads back,
through QueryUsage and `aibridgectl usage`. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from aibridge.v1 import admin_pb2, snapshot_pb2, usage_pb2
from bridged.capture import CaptureSettings, Recording
from bridged.capture.settings import MAX_NAME, MAX_TOOL_CALLS, RECORD_TEXT_BYTES
from bridged.forward import Exchange, Forwarder
from bridged.routes import ANTHROPIC_ENDPOINTS, Route, _route
from bridged.usage_reporter import DEFAULT_BATCH_SIZE, MAX_BATCH_BYTES, UsageReporter
from common.access import Call
from common.tokens import Caller
from controlplane.usage import MAX_BATCH
from mockupstream import replies
from tests.harness import Controlplane, ctl, interception, report

FIELDS = (
    "requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens",
)  # fmt: skip


def batch(now: datetime) -> list[usage_pb2.Interception]:
    """Three recent calls through openai, one two hours ago and one three days ago through
    anthropic; 500 and 400 are errors, 200 is not."""
    minutes = timedelta(minutes=1)
    return [
        interception("r1", 10 * minutes, now, tokens=(10, 20, 1, 2)),
        interception("r2", 5 * minutes, now, token="bob", status=500, tokens=(5, 0, 0, 0)),
        interception("r3", minutes, now, model="gpt-4o-mini", status=400, tokens=(3, 4, 0, 0)),
        interception(
            "r4", 120 * minutes, now, "anthropic", "claude-sonnet", tokens=(100, 50, 30, 7)
        ),
        interception(
            "r5", timedelta(days=3), now, "anthropic", "claude-sonnet", "bob", tokens=(1, 2, 3, 4)
        ),
    ]


def totals(cp: Controlplane, group_by: str = "", **kwargs: Any) -> dict[str, tuple[int, ...]]:
    request = admin_pb2.QueryUsageRequest(group_by=group_by, **kwargs)
    response = cp.admin.QueryUsage(request)
    assert response.group_by == (group_by or "provider")
    return {r.key: tuple(getattr(r, f) for f in FIELDS) for r in response.rows}


def ts(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def test_report_is_idempotent_and_query_groups_and_filters(controlplane: Controlplane) -> None:
    bridged = controlplane.secrets.bridged
    now = datetime.now(UTC)
    assert report(controlplane, batch(now), bridged) == 5
    # A batch retried after a lost reply is stored once; a partly new one stores the rest.
    assert report(controlplane, batch(now), bridged) == 0
    extra = interception("r6", timedelta(minutes=2), model="gpt-4o-mini", tokens=(7, 8, 9, 10))
    assert report(controlplane, [batch(now)[0], extra], bridged) == 1

    #             requests errors input output cache_read cache_write
    assert totals(controlplane) == {
        "anthropic": (2, 0, 101, 52, 33, 11),
        "openai": (4, 2, 25, 32, 10, 12),
    }
    assert totals(controlplane, "model") == {
        "claude-sonnet": (2, 0, 101, 52, 33, 11),
        "gpt-4o": (2, 1, 15, 20, 1, 2),
        "gpt-4o-mini": (2, 1, 10, 12, 9, 10),
    }
    assert totals(controlplane, "token") == {
        "alice": (4, 1, 120, 82, 40, 19),
        "bob": (2, 1, 6, 2, 3, 4),
    }

    hour_ago = ts(now - timedelta(hours=1))
    assert totals(controlplane, "provider", since=hour_ago) == {"openai": (4, 2, 25, 32, 10, 12)}
    assert totals(controlplane, "model", until=hour_ago) == {
        "claude-sonnet": (2, 0, 101, 52, 33, 11)
    }
    day_ago = ts(now - timedelta(days=1))
    assert totals(controlplane, "token", since=day_ago, until=hour_ago) == {
        "alice": (1, 0, 100, 50, 30, 7)
    }
    assert totals(controlplane, "model", provider="openai", since=day_ago) == {
        "gpt-4o": (2, 1, 15, 20, 1, 2),
        "gpt-4o-mini": (2, 1, 10, 12, 9, 10),
    }
    assert totals(controlplane, "provider", provider="nobody") == {}


@pytest.mark.parametrize(
    ("credential", "code"),
    [
        ("proxyd", grpc.StatusCode.PERMISSION_DENIED),
        ("admin", grpc.StatusCode.PERMISSION_DENIED),
        ("wrong", grpc.StatusCode.UNAUTHENTICATED),
        (None, grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_only_bridged_may_report(
    shared_controlplane: Controlplane, credential: str | None, code: grpc.StatusCode
) -> None:
    cp = shared_controlplane
    tokens: dict[str | None, str] = {
        "proxyd": cp.secrets.proxyd, "admin": cp.secrets.admin, "wrong": cp.secrets.bridged + "x",
    }  # fmt: skip
    token = tokens.get(credential)
    with pytest.raises(grpc.RpcError) as caught:
        report(cp, [interception("r1", timedelta(minutes=1))], token)
    assert caught.value.code() == code, caught.value.details()
    assert totals(cp) == {}


def test_bridged_may_not_query(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    metadata = (("authorization", f"Bearer {cp.secrets.bridged}"),)
    with pytest.raises(grpc.RpcError) as caught:
        cp.admin.stub.QueryUsage(admin_pb2.QueryUsageRequest(), metadata=metadata, timeout=15)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_batch_with_an_empty_request_id_is_refused_whole(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    nameless = interception("", timedelta(minutes=1))
    with pytest.raises(grpc.RpcError) as caught:
        report(cp, [interception("r1", timedelta(0)), nameless], cp.secrets.bridged)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details()
    assert details is not None and details.startswith("request_id:"), details
    assert totals(cp) == {}


def test_a_nul_in_a_text_does_not_fail_its_batch(controlplane: Controlplane) -> None:
    """PostgreSQL's text cannot hold NUL: a record carrying one (from a data plane that let
    it through) is stored with U+FFFD in its place, and the rest of its batch with it."""
    cp = controlplane
    nul = interception(
        "nul", timedelta(0), prompt="a\x00b", session_id="s\x00", error_message="\x00",
        tool_calls=[usage_pb2.ToolCall(id="t1", name="run", arguments='{"x": "\x00"}')],
    )  # fmt: skip
    assert report(cp, [interception("plain", timedelta(0)), nul], cp.secrets.bridged) == 2
    stored = cp.admin.GetInterception(admin_pb2.GetInterceptionRequest(id="nul"))
    assert (stored.prompt, stored.session_id, stored.error_message) == (
        "a\ufffdb",
        "s\ufffd",
        "\ufffd",
    )
    assert stored.tool_calls[0].arguments == '{"x": "\x00"}'  # JSON-escaped where it is kept


@pytest.mark.parametrize("group_by", ["day", "Provider", "provider_name"])
def test_bad_group_by(shared_controlplane: Controlplane, group_by: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        shared_controlplane.admin.QueryUsage(admin_pb2.QueryUsageRequest(group_by=group_by))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details()
    assert details is not None and details.startswith("group_by:"), details


def test_usage_command(controlplane: Controlplane) -> None:
    assert report(controlplane, batch(datetime.now(UTC)), controlplane.secrets.bridged) == 5

    result = ctl(controlplane, "usage", "--by", "model", "--json", check=True)
    data = json.loads(result.stdout)
    assert data["group_by"] == "model"
    rows = {row["key"]: row for row in data["rows"]}
    assert set(rows) == {"claude-sonnet", "gpt-4o", "gpt-4o-mini"}
    assert rows["claude-sonnet"] == {
        "key": "claude-sonnet", "requests": 2, "errors": 0, "input_tokens": 101,
        "output_tokens": 52, "cache_read_tokens": 33, "cache_write_tokens": 11,
        "provider_id": "",  # set when grouped by provider
        "cost_usd": 0.0, "unpriced": 2,  # no price matches "claude-sonnet"
    }  # fmt: skip

    readable = ctl(controlplane, "usage", "--by", "model", check=True).stdout
    table, footer = readable.split("\n\n")
    lines = table.splitlines()
    assert lines[0].split() == [
        "MODEL", "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "CACHE_READ", "CACHE_WRITE", "COST",
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == [
        "claude-sonnet", "gpt-4o", "gpt-4o-mini", "TOTAL",
    ]  # fmt: skip
    # gpt-4o: (7 uncached input * 2.5 + 20 * 10 + 1 cache read * 1.25 + 2 cache write * 2.5)
    # + 5 * 2.5; gpt-4o-mini: 3 * 0.15 + 4 * 0.6; USD per million tokens.
    assert lines[-1].split() == ["TOTAL", "5", "2", "119", "76", "34", "13", "$0.000239"]
    assert footer.startswith("2 calls of models with no price, not in COST"), footer

    recent = ctl(controlplane, "usage", "--since", "1h", "--by", "model", "--json", check=True)
    assert [row["key"] for row in json.loads(recent.stdout)["rows"]] == ["gpt-4o", "gpt-4o-mini"]

    nothing = ctl(controlplane, "usage", "--provider", "anthropic", "--since", "1m", check=True)
    assert nothing.stdout.strip() == "no usage recorded in that period"


def test_a_full_batch_is_stored_once(controlplane: Controlplane) -> None:
    """The largest batch allowed goes in whole (past either database's parameter limit for
    one statement), and its retry stores nothing."""
    bridged = controlplane.secrets.bridged
    full = [interception(f"full-{n}", timedelta(seconds=n)) for n in range(MAX_BATCH)]
    assert report(controlplane, full, bridged) == MAX_BATCH
    assert report(controlplane, full, bridged) == 0
    assert totals(controlplane)["openai"][0] == MAX_BATCH


LLAMA = "🦙"  # 4 bytes of UTF-8


def largest_record() -> usage_pb2.Interception:
    """The largest usage record bridged makes: its own code, given every free-text field
    far over its bound in 4-byte characters (the model as an upstream's answer names it),
    every setting on at the largest size, more text than a record may hold, more tool
    calls and results than it may list."""
    made: list[usage_pb2.Interception] = []
    reporter = SimpleNamespace(record=made.append)
    # Only the reporter is used on this path; the rest stay unset.
    forwarder = Forwarder(None, None, None, reporter, None)  # type: ignore[arg-type]
    route = _route(snapshot_pb2.SnapshotProvider(
        id="prv_" + "f" * 16, name="p" * 63, type="anthropic", base_url="https://h.example",
    ))  # fmt: skip
    assert isinstance(route, Route)
    exchange = Exchange(
        call=Call("POST", "/v1/messages", time.monotonic(), request_id="r" * 64),
        started_wall=time.time(),
        caller=Caller("tok_" + "f" * 16, "t" * 63, 0, "usr_" + "f" * 16), route=route,
        user_name="u" * 63,
        endpoint=ANTHROPIC_ENDPOINTS[0], user_agent=LLAMA * 5000, model=LLAMA * 5000,
        status=200, recording=Recording(CaptureSettings(True, True, True, 2**31 - 1), "messages"),
    )  # fmt: skip
    assert exchange.recording is not None
    long_id = LLAMA * 1000
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": LLAMA * 300_000},  # past the record's allowance alone
        *({"type": "tool_result", "tool_use_id": long_id} for _ in range(100)),
    ]}]}  # fmt: skip
    exchange.recording.read_request({"x-aibridge-session-id": "s" * 200}, bytearray(
        json.dumps(body, ensure_ascii=False).encode()))  # fmt: skip
    events: list[replies.Event] = [
        ("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
            "type": "tool_use", "id": long_id, "name": long_id, "input": {"a": 1}}})
        for i in range(100)
    ]  # fmt: skip
    events += [
        ("error", {"type": "error", "error": {"message": LLAMA * 5000}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": LLAMA * 100}}),
    ]
    recorder = exchange.recording.responding(200, event_stream=True)
    recorder.feed(replies.sse(events))
    recorder.finish()
    forwarder._record(exchange)
    [record] = made
    return record


def test_batches_of_the_largest_records_fit_a_grpc_message(
    shared_controlplane: Controlplane,
) -> None:
    """bridged's batches are calls the controlplane takes, whatever the records: under its
    limit on usage requests, or every batch would be refused and retried. Records of the
    largest size, and a full batch (by count) of the largest records without texts."""
    record = largest_record()
    assert len(record.model) == 200 and len(record.user_agent) == 500
    assert (record.user_id, record.user_name) == ("usr_" + "f" * 16, "u" * 63)
    assert len(record.prompt.encode()) == RECORD_TEXT_BYTES and record.partial
    assert len(record.tool_calls) == len(record.tool_results) == MAX_TOOL_CALLS
    assert (
        {len(c.id) for c in record.tool_calls}
        == {len(c.name) for c in record.tool_calls}
        == {MAX_NAME}
    )
    assert RECORD_TEXT_BYTES < record.ByteSize() < MAX_BATCH_BYTES // 3
    without_texts = interception("small", timedelta(0), provider="p" * 63, model=LLAMA * 200)
    without_texts.user_agent = LLAMA * 500
    without_texts.user_id, without_texts.user_name = "usr_" + "f" * 16, "u" * 63
    records = []
    for n, template in enumerate([record] * 8 + [without_texts] * DEFAULT_BATCH_SIZE):
        copy = usage_pb2.Interception()
        copy.CopyFrom(template)
        copy.request_id = f"large-{n}"
        records.append(copy)

    async def deliver() -> bool:
        reporter = UsageReporter(
            (shared_controlplane.address,), shared_controlplane.secrets.bridged, None,
            batch_size=DEFAULT_BATCH_SIZE, flush_interval=60, capacity=len(records),
        )  # fmt: skip
        try:
            for r in records:
                reporter.record(r)
            return await reporter.flush(timeout=30)
        finally:
            await reporter.close()

    assert asyncio.run(deliver())  # no batch refused
    assert totals(shared_controlplane, "model")[LLAMA * 200][0] == len(records)


def test_usage_follows_a_provider_across_renames(controlplane: Controlplane) -> None:
    """Usage is keyed by provider id: a renamed provider keeps one row and its history,
    under its current name; a deleted one's name says so."""
    cp = controlplane
    admin = cp.admin
    first = admin.create_provider("openai").provider
    bridged = cp.secrets.bridged

    def call(request_id: str, name: str, provider_id: str, tokens: int) -> usage_pb2.Interception:
        record = interception(request_id, timedelta(minutes=1), provider=name, tokens=(tokens,) * 4)
        record.provider_id = provider_id
        return record

    report(cp, [call("before", "openai", first.id, 1)], bridged)
    admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref="openai", name="openai-eu"))
    report(cp, [call("after", "openai-eu", first.id, 2)], bridged)
    # Another provider now takes the old name: its calls are its own.
    second = admin.create_provider("openai").provider
    report(cp, [call("other", "openai", second.id, 4)], bridged)

    by_provider = cp.admin.QueryUsage(admin_pb2.QueryUsageRequest(group_by="provider")).rows
    assert [(r.key, r.provider_id, r.requests, r.input_tokens) for r in by_provider] == [
        ("openai", second.id, 1, 4), ("openai-eu", first.id, 2, 3),
    ]  # fmt: skip
    assert totals(cp, provider="openai-eu") == {"openai-eu": (2, 0, 3, 3, 3, 3)}
    assert totals(cp, provider=first.id) == {"openai-eu": (2, 0, 3, 3, 3, 3)}
    assert totals(cp, "model", provider="openai") == {"gpt-4o": (1, 0, 4, 4, 4, 4)}

    admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref="openai-eu"))
    assert totals(cp) == {
        "openai": (1, 0, 4, 4, 4, 4), "openai-eu (deleted)": (2, 0, 3, 3, 3, 3),
    }  # fmt: skip
    # With no live provider of that name, the deleted one's history is still found by it.
    assert totals(cp, provider="openai-eu") == {"openai-eu (deleted)": (2, 0, 3, 3, 3, 3)}

    table = ctl(cp, "usage", "--provider", "openai-eu", check=True).stdout.splitlines()
    assert table[1].split()[:3] == ["openai-eu", "(deleted)", "2"], table
