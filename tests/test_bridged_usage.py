"""Usage records for calls through bridged: what the controlplane stores is what the
upstream reported, streaming or not, for both provider families; a controlplane outage
delays the records, it does not lose or duplicate them; pass-through calls record nothing.

Totals are read the administrator's way (QueryUsage, `aibridgectl usage`); the fields no
API aggregates (route, status, streaming, user agent, request id) are read from the
controlplane's database, read-only."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from aibridge.v1 import admin_pb2
from mockupstream import ANTHROPIC_USAGE, OPENAI_USAGE, RESPONSES_USAGE, MockUpstream
from tests.harness import Bridged, Controlplane, Secrets, ctl, stored_records, wait_until

OPENAI_KEY = "sk-openai-provider-key-0001"
ANTHROPIC_KEY = "sk-ant-provider-key-0002"
USER_AGENT = "usage-test-client/1.0"
MESSAGES = [{"role": "user", "content": "hi"}]

# Counts as usage.py records them: (input, output, cache read, cache write).
OPENAI_COUNTS = (
    OPENAI_USAGE["prompt_tokens"], OPENAI_USAGE["completion_tokens"],
    OPENAI_USAGE["cached_tokens"], 0,
)  # fmt: skip
RESPONSES_COUNTS = (
    RESPONSES_USAGE["input_tokens"], RESPONSES_USAGE["output_tokens"],
    RESPONSES_USAGE["cached_tokens"], 0,
)  # fmt: skip
ANTHROPIC_COUNTS = (
    ANTHROPIC_USAGE["input_tokens"], ANTHROPIC_USAGE["output_tokens"],
    ANTHROPIC_USAGE["cache_read"], ANTHROPIC_USAGE["cache_write"],
)  # fmt: skip

# One call per case; each asks for its own model, which the upstream answers as
# "<model>-2026": the recorded model is the response's. → (provider, path, body, counts)
CALLS: dict[str, tuple[str, str, dict[str, Any], tuple[int, int, int, int]]] = {
    "chat-plain": ("oai", "/v1/chat/completions", {"messages": MESSAGES}, OPENAI_COUNTS),
    "chat-stream": ("oai", "/v1/chat/completions", {
        "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True},
    }, OPENAI_COUNTS),
    "resp-plain": ("oai", "/v1/responses", {"input": "hi"}, RESPONSES_COUNTS),
    "resp-stream": ("oai", "/v1/responses", {"input": "hi", "stream": True}, RESPONSES_COUNTS),
    "claude-plain": ("ant", "/v1/messages", {"max_tokens": 5, "messages": MESSAGES},
                     ANTHROPIC_COUNTS),
    "claude-stream": ("ant", "/v1/messages", {
        "max_tokens": 5, "messages": MESSAGES, "stream": True,
    }, ANTHROPIC_COUNTS),
}  # fmt: skip
FIELDS = (
    "requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens",
)  # fmt: skip
ROUTES = {"/v1/chat/completions": "chat.completions", "/v1/responses": "responses",
          "/v1/messages": "messages"}  # fmt: skip


def add_providers(cp: Controlplane, upstream: MockUpstream) -> None:
    cp.admin.create_provider("oai", upstream.url + "/v1", keys=[OPENAI_KEY])
    last = cp.admin.create_provider("ant", upstream.url, type="anthropic", keys=[ANTHROPIC_KEY])
    cp.admin.wait_applied(last.revision)


def call(bridged: Bridged, token: str, case: str, leave_after: bytes = b"") -> str:
    """Makes the call `case` and reads the whole answer, or with `leave_after` only up to
    the end of the first event that holds it, and leaves; returns the gateway's request id."""
    provider, path, body, _counts = CALLS[case]
    read = bytearray()
    with httpx.stream(
        "POST", bridged.provider_url(provider) + path, json={"model": case, **body}, timeout=15,
        headers={"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT,
                 "anthropic-version": "2023-06-01"},
    ) as response:  # fmt: skip
        for chunk in response.iter_bytes():
            read += chunk
            at = read.find(leave_after) if leave_after else -1
            if at >= 0 and read.find(b"\n\n", at) >= 0:
                break  # closing the unfinished response closes the connection
    assert response.status_code == 200, read
    assert leave_after or b"from" in read  # the answer, whole or in pieces
    return response.headers["x-aibridge-request-id"]


def totals(cp: Controlplane, group_by: str) -> dict[str, tuple[int, ...]]:
    """QueryUsage rows: key → (requests, errors, input, output, cache read, cache write)."""
    rows = cp.admin.QueryUsage(admin_pb2.QueryUsageRequest(group_by=group_by)).rows
    return {
        r.key: (r.requests, r.errors, r.input_tokens, r.output_tokens, r.cache_read_tokens,
                r.cache_write_tokens)
        for r in rows
    }  # fmt: skip


def expected_by_model(cases: list[str]) -> dict[str, tuple[int, ...]]:
    expected: dict[str, tuple[int, ...]] = {}
    for case in cases:
        counts = CALLS[case][3]
        requests, _errors, *tokens = expected.get(f"{case}-2026", (0, 0, 0, 0, 0, 0))
        expected[f"{case}-2026"] = (
            requests + 1,
            0,
            *(t + c for t, c in zip(tokens, counts, strict=True)),
        )
    return expected


def combined(rows: Iterable[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(sum(column) for column in zip(*rows, strict=True))


def wait_for_usage(cp: Controlplane, cases: list[str], timeout: float = 15.0) -> None:
    expected = expected_by_model(cases)
    seen: dict[str, tuple[int, ...]] = {}

    def arrived() -> bool:
        seen.update(totals(cp, "model"))
        return seen == expected

    try:
        wait_until(arrived, timeout, what="the usage records")
    except AssertionError as exc:
        raise AssertionError(f"usage {seen} != expected {expected}") from exc


def bridged_metric(bridged: Bridged, name: str) -> float:
    for line in bridged.metrics().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def test_recorded_counts_equal_what_the_upstream_reported(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream
) -> None:
    add_providers(controlplane, upstream_a)
    request_ids = {case: call(bridged, token, case) for case in CALLS}

    wait_for_usage(controlplane, list(CALLS))
    by_model = totals(controlplane, "model")
    assert totals(controlplane, "token") == {"tester": combined(by_model.values())}
    assert totals(controlplane, "provider") == {
        provider: combined(by_model[f"{case}-2026"] for case in CALLS if CALLS[case][0] == provider)
        for provider in ("oai", "ant")
    }
    # `aibridgectl usage` shows the same.
    shown = json.loads(ctl(controlplane, "usage", "--by", "model", "--json", check=True).stdout)
    assert {row["key"]: tuple(int(row.get(f, 0)) for f in FIELDS) for row in shown["rows"]} == (
        by_model
    )

    # Each record, field by field.
    records = {r.model: r for r in stored_records(controlplane)}
    assert sorted(records) == sorted(f"{case}-2026" for case in CALLS)
    for case, (provider, path, body, counts) in CALLS.items():
        r = records[f"{case}-2026"]
        assert r.request_id == request_ids[case]  # the id the client got in its headers
        assert (r.provider_name, r.provider_type) == (
            provider,
            "anthropic" if provider == "ant" else "openai",
        )
        assert r.route == ROUTES[path]
        assert r.status == 200
        assert r.streaming is bool(body.get("stream")), case
        assert (r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens) == (
            counts
        ), case
        assert r.token_name == "tester" and r.token_id
        assert r.user_agent == USER_AGENT
        assert 0 < r.ttfb_ms <= r.duration_ms


def test_usage_produced_while_the_controlplane_is_down_arrives_after_it_returns(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream
) -> None:
    add_providers(controlplane, upstream_a)
    before = ["chat-plain"]
    ids = [call(bridged, token, case) for case in before]
    wait_for_usage(controlplane, before)

    controlplane.kill()  # SIGKILL: no goodbye
    during = ["chat-plain", "chat-stream", "resp-stream", "claude-plain", "claude-stream"]
    ids += [call(bridged, token, case) for case in during]  # fail static: all answered
    # The records wait in bridged's buffer: produced, not delivered, not dropped. (A call's
    # record is made just after its client has the last byte: waited for, not assumed.)
    wait_until(
        lambda: bridged_metric(bridged, "aibridge_bridged_usage_buffered") == len(during),
        what="every record of the outage in bridged's buffer",
    )
    assert bridged_metric(bridged, "aibridge_bridged_usage_dropped_total") == 0

    controlplane.start()  # same port, same database
    wait_for_usage(controlplane, before + during, timeout=30)
    wait_until(
        lambda: bridged_metric(bridged, "aibridge_bridged_usage_buffered") == 0,
        what="bridged's usage buffer to drain",
    )

    # A call after the return: once its record is in, nothing earlier can still be in flight.
    after = ["resp-plain"]
    ids += [call(bridged, token, case) for case in after]
    wait_for_usage(controlplane, before + during + after)
    records = stored_records(controlplane)
    assert sorted(r.request_id for r in records) == sorted(ids)  # none lost, none twice
    assert len(set(ids)) == len(ids) == 7


def test_pass_through_calls_record_no_usage(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream
) -> None:
    add_providers(controlplane, upstream_a)
    headers = {"Authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    for provider in ("oai", "ant"):
        models = httpx.get(f"{bridged.provider_url(provider)}/v1/models", headers=headers)
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "model-A"
    counted = httpx.post(
        f"{bridged.provider_url('ant')}/v1/messages/count_tokens", headers=headers,
        json={"model": "claude", "messages": MESSAGES},
    )  # fmt: skip
    assert counted.status_code == 200 and counted.json() == {"input_tokens": 10}
    assert [s.path for s in upstream_a.seen] == [
        "/v1/models", "/v1/models", "/v1/messages/count_tokens"
    ]  # fmt: skip

    # Records leave bridged in order: once this one is stored, any earlier one would be.
    request_id = call(bridged, token, "chat-plain")
    wait_for_usage(controlplane, ["chat-plain"])
    assert [r.request_id for r in stored_records(controlplane)] == [request_id]


# Each stream's last event, as the upstream writes it.
LAST_EVENTS = {
    "chat-stream": b"data: [DONE]",
    "resp-stream": b"event: response.completed",
    "claude-stream": b"event: message_stop",
}


@pytest.mark.parametrize("case", [*LAST_EVENTS, "openai-sdk"])
def test_a_client_that_leaves_after_the_last_event_made_a_whole_call(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream, case: str
) -> None:
    """The openai SDK closes its connection at [DONE], and a provider may end the body
    well after its last event: the call is answered (200), not a client gone mid-response."""
    upstream_a.tail_delay = 30  # the body ends long after the last event
    add_providers(controlplane, upstream_a)
    if case == "openai-sdk":
        client = openai.OpenAI(
            base_url=bridged.provider_url("oai") + "/v1", api_key=token, max_retries=0,
            default_headers={"User-Agent": USER_AGENT},
        )  # fmt: skip
        stream = client.chat.completions.create(
            model="chat-stream", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        request_id = stream.response.headers["x-aibridge-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == upstream_a.text()
        case = "chat-stream"
    else:
        request_id = call(bridged, token, case, leave_after=LAST_EVENTS[case])

    [record] = wait_until(lambda: stored_records(controlplane), what="the call's record")
    assert (record.request_id, record.status, record.partial, record.error_message) == (
        request_id, 200, False, "",
    )  # fmt: skip
    counts = (record.input_tokens, record.output_tokens, record.cache_read_tokens,
              record.cache_write_tokens)  # fmt: skip
    assert counts == CALLS[case][3]


def test_a_provider_silent_after_the_last_event_gives_the_client_a_whole_answer(
    controlplane: Controlplane, token: str, upstream_a: MockUpstream, secrets: Secrets,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The anthropic SDK reads to the end of the body. A provider that holds it open past
    --idle-read-timeout after its last event gives the client that end, not a broken
    stream, and the call is recorded whole."""
    upstream_a.tail_delay = 30
    add_providers(controlplane, upstream_a)
    quick = Bridged([controlplane.address], tmp_path, secrets, name="quick",
                    extra_args=("--idle-read-timeout", "1")).start()  # fmt: skip
    try:
        client = anthropic.Anthropic(
            base_url=quick.provider_url("ant"), api_key=token, max_retries=0, timeout=15
        )
        with client.messages.stream(
            model="claude-stream", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            assert "".join(stream.text_stream) == upstream_a.text()
        [record] = wait_until(lambda: stored_records(controlplane), what="the call's record")
    finally:
        quick.stop()
    assert (record.status, record.partial, record.error_message) == (200, False, "")


def test_a_client_that_leaves_before_the_last_event_cut_its_call_short(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream
) -> None:
    upstream_a.hold = threading.Event()  # the stream stops after its first event
    add_providers(controlplane, upstream_a)
    try:
        request_id = call(bridged, token, "chat-stream", leave_after=b"data: ")
        [record] = wait_until(lambda: stored_records(controlplane), what="the call's record")
    finally:
        upstream_a.hold.set()
    assert (record.request_id, record.status, record.partial, record.error_message) == (
        request_id, 499, True, "the client went away mid-response",
    )  # fmt: skip
