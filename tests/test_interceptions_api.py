"""Reading interceptions back through the Admin API: records go in through the real Usage
service, as bridged sends them, and come out filtered, newest first, a page at a time,
as previews in listings and whole one by one; sessions group them per client session
and token. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from aibridge.v1 import admin_pb2, usage_pb2
from controlplane.ctl.options import to_timestamp
from tests.harness import Controlplane, interception, report, rss_bytes

MINUTE = timedelta(minutes=1)


def send(cp: Controlplane, records: list[usage_pb2.Interception]) -> None:
    assert report(cp, records, cp.secrets.bridged) == len(records)


def listing(
    cp: Controlplane, limit: int = 0, cursor: str = "", timeout: float = 15, **filter: Any
) -> admin_pb2.ListInterceptionsResponse:
    request = admin_pb2.ListInterceptionsRequest(
        filter=admin_pb2.InterceptionFilter(**filter), limit=limit, cursor=cursor
    )
    return cp.admin.ListInterceptions(request, timeout=timeout)


def ids(cp: Controlplane, **filter: Any) -> list[str]:
    response = listing(cp, **filter)
    assert response.next_cursor == ""
    return [r.id for r in response.interceptions]


def every_page(call: Callable[[str], Any], items: str, cursor: str = "") -> list[list[Any]]:
    """Each page's items, following next_cursor from `cursor` (the first page) to the last."""
    pages = []
    while True:
        response = call(cursor)
        pages.append(list(getattr(response, items)))
        if not response.next_cursor:
            return pages
        cursor = response.next_cursor


def test_each_filter_newest_first(controlplane: Controlplane) -> None:
    cp = controlplane
    now = datetime.now(UTC)
    send(cp, [
        interception("r1", 10 * MINUTE, now, client="claude-code", session_id="s1"),
        interception("r2", 5 * MINUTE, now, "anthropic", "claude-sonnet", "bob", status=500,
                     client="codex", session_id="s2", tokens=(5, 6, 0, 0)),
        interception("r3", 3 * MINUTE, now, model="gpt-4o-mini", status=429, client="curl"),
        interception("r4", 2 * MINUTE, now, status=0, client="unknown"),
        interception("r5", MINUTE, now, status=302, client="openai-python"),
        interception("r6", timedelta(days=3), now, "anthropic", "claude-sonnet", "bob",
                     client="codex"),
    ])  # fmt: skip

    assert ids(cp) == ["r5", "r4", "r3", "r2", "r1", "r6"]
    hour_ago = to_timestamp(now - timedelta(hours=1))
    assert ids(cp, since=hour_ago) == ["r5", "r4", "r3", "r2", "r1"]
    assert ids(cp, until=hour_ago) == ["r6"]
    assert ids(cp, since=to_timestamp(now - 5 * MINUTE), until=to_timestamp(now - MINUTE)) == [
        "r4", "r3", "r2",
    ]  # fmt: skip
    assert ids(cp, token="bob") == ids(cp, token="tok_bob") == ["r2", "r6"]
    assert ids(cp, provider="anthropic") == ["r2", "r6"]
    assert ids(cp, provider="nobody") == []
    assert ids(cp, model="gpt-4o-mini") == ["r3"]
    assert ids(cp, client="codex") == ["r2", "r6"]
    assert ids(cp, session_id="s1") == ["r1"]
    assert ids(cp, status_class="2xx") == ["r1", "r6"]
    assert ids(cp, status_class="3xx") == ["r5"]
    assert ids(cp, status_class="4xx") == ["r3"]
    assert ids(cp, status_class="5xx") == ["r2"]
    assert ids(cp, status_class="error") == ["r4", "r3", "r2"]
    assert ids(cp, token="alice", status_class="error", since=hour_ago) == ["r4", "r3"]

    by_client = cp.admin.QueryUsage(admin_pb2.QueryUsageRequest(group_by="client")).rows
    assert [(r.key, r.requests, r.errors, r.input_tokens) for r in by_client] == [
        ("claude-code", 1, 0, 0), ("codex", 2, 1, 5, ), ("curl", 1, 1, 0),
        ("openai-python", 1, 0, 0), ("unknown", 1, 1, 0),
    ]  # fmt: skip


def test_pages_never_miss_or_repeat_a_record_of_equal_start(controlplane: Controlplane) -> None:
    """25 calls started in 5 instants (5 at each), 12 of them in sessions of their own:
    pages of 4 follow the order across the ties, and a call recorded
    between two pages does not shift the rest."""
    cp = controlplane
    now = datetime.now(UTC) - MINUTE
    records = [
        interception(f"c{n:02d}", timedelta(seconds=n // 5), now,
                     session_id=f"s{n:02d}" if n < 12 else "")
        for n in range(25)
    ]  # fmt: skip
    send(cp, records)
    expected = sorted(records, key=lambda r: (r.started_at.ToDatetime(), r.request_id))[::-1]

    pages = every_page(lambda cursor: listing(cp, 4, cursor), "interceptions")
    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 4, 1]
    assert [r.id for p in pages for r in p] == [r.request_id for r in expected]

    first = listing(cp, limit=4)
    send(cp, [interception("newer", timedelta(0))])
    rest = every_page(
        lambda c: listing(cp, limit=4, cursor=c or first.next_cursor), "interceptions"
    )
    assert [r.id for p in [first.interceptions, *rest] for r in p] == [
        r.request_id for r in expected
    ]

    def sessions_page(cursor: str) -> admin_pb2.ListSessionsResponse:
        return cp.admin.ListSessions(admin_pb2.ListSessionsRequest(limit=4, cursor=cursor))

    session_pages = every_page(sessions_page, "sessions")
    assert [len(p) for p in session_pages] == [4, 4, 4]
    in_sessions = [r for r in expected if r.session_id]
    assert [s.session_id for p in session_pages for s in p] == [r.session_id for r in in_sessions]

    # A cursor is its listing's own, and must come back as it was given.
    sessions_cursor = sessions_page("").next_cursor
    for garbled in (first.next_cursor[:-3], first.next_cursor + "x", "not a cursor", "W10"):
        refused_with(cp.admin.ListInterceptions, admin_pb2.ListInterceptionsRequest(cursor=garbled))
    for garbled in (sessions_cursor[:-3], sessions_cursor + "x", "W1td"):
        refused_with(cp.admin.ListSessions, admin_pb2.ListSessionsRequest(cursor=garbled))
    refused_with(
        cp.admin.ListInterceptions,
        admin_pb2.ListInterceptionsRequest(cursor=sessions_cursor),
    )
    refused_with(cp.admin.ListSessions, admin_pb2.ListSessionsRequest(cursor=first.next_cursor))
    refused_with(
        cp.admin.GetSession,
        admin_pb2.GetSessionRequest(session_id="s00", cursor=first.next_cursor),
    )


def refused_with(
    call: Callable[[Any], Any],
    request: Any,
    starts: str = "cursor:",
    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
) -> None:
    """The call fails with `code`, its message starting with `starts` (a field's name and
    a colon, for INVALID_ARGUMENT)."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    assert caught.value.code() == code, caught.value.details()
    details = caught.value.details()
    assert details is not None and details.startswith(starts), details


def test_a_page_of_large_records_stops_early_and_the_next_continues(
    controlplane: Controlplane,
) -> None:
    """1,000 previews of 15 tool calls each (arguments cut to 200 characters) would pass
    3 MiB: the page ends before, under gRPC's 4 MiB, and its cursor carries on."""
    cp = controlplane
    calls = [
        usage_pb2.ToolCall(id=f"call_{n}", name="write_file", arguments="x" * 250)
        for n in range(15)
    ]
    for batch in range(4):
        send(cp, [
            interception(f"big{batch}-{n:03d}", timedelta(seconds=n), tool_calls=calls)
            for n in range(250)
        ])  # fmt: skip
    first = listing(cp, limit=1000)
    assert 500 < len(first.interceptions) < 1000
    assert 3 * 2**20 - 10_000 < first.ByteSize() <= 3 * 2**20
    assert first.interceptions[0].tool_calls[0].arguments == "x" * 200
    rest = every_page(
        lambda c: listing(cp, limit=1000, cursor=c or first.next_cursor), "interceptions"
    )
    seen = [r.id for p in [first.interceptions, *rest] for r in p]
    assert len(seen) == len(set(seen)) == 1000


INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


# Timestamps beyond a datetime's years 1 to 9999.
AFTER_9999 = Timestamp(seconds=253402300800)
BEFORE_YEAR_1 = Timestamp(seconds=-62135596801)


def in_filter(**filter: Any) -> admin_pb2.InterceptionFilter:
    return admin_pb2.InterceptionFilter(**filter)


@pytest.mark.parametrize(
    ("call", "message", "starts", "code"),
    [
        ("ListInterceptions", admin_pb2.ListInterceptionsRequest(limit=-1), "limit:", INVALID),
        ("ListInterceptions", admin_pb2.ListInterceptionsRequest(limit=1001), "limit:", INVALID),
        ("ListSessions", admin_pb2.ListSessionsRequest(limit=1001), "limit:", INVALID),
        ("GetSession", admin_pb2.GetSessionRequest(session_id="s", limit=-5), "limit:", INVALID),
        ("ListInterceptions", admin_pb2.ListInterceptionsRequest(cursor="%%%"), "cursor:", INVALID),
        ("ListSessions", admin_pb2.ListSessionsRequest(cursor="é"), "cursor:", INVALID),
        (
            "ListInterceptions",
            admin_pb2.ListInterceptionsRequest(filter=in_filter(status_class="2XX")),
            "status_class:",
            INVALID,
        ),
        (
            "ListSessions",
            admin_pb2.ListSessionsRequest(filter=in_filter(status_class="ok")),
            "status_class:",
            INVALID,
        ),
        (
            "ListInterceptions",
            admin_pb2.ListInterceptionsRequest(filter=in_filter(token="a\x00")),
            "token:",
            INVALID,
        ),
        (
            "ListInterceptions",
            admin_pb2.ListInterceptionsRequest(filter=in_filter(since=AFTER_9999)),
            "since:",
            INVALID,
        ),
        (
            "ListSessions",
            admin_pb2.ListSessionsRequest(filter=in_filter(until=Timestamp(nanos=-1))),
            "until:",
            INVALID,
        ),
        ("QueryUsage", admin_pb2.QueryUsageRequest(since=BEFORE_YEAR_1), "since:", INVALID),
        ("QueryUsage", admin_pb2.QueryUsageRequest(until=AFTER_9999), "until:", INVALID),
        ("GetInterception", admin_pb2.GetInterceptionRequest(), "id:", INVALID),
        ("GetInterception", admin_pb2.GetInterceptionRequest(id="r404"), "interception", NOT_FOUND),
        ("GetSession", admin_pb2.GetSessionRequest(), "session_id:", INVALID),
        ("GetSession", admin_pb2.GetSessionRequest(session_id="s404"), "session 's404'", NOT_FOUND),
    ],
)
def test_bad_requests_are_refused(
    shared_controlplane: Controlplane, call: str, message: Any, starts: str, code: grpc.StatusCode
) -> None:
    refused_with(getattr(shared_controlplane.admin, call), message, starts, code)


def test_the_years_1_and_9999_are_times_a_filter_takes(controlplane: Controlplane) -> None:
    cp = controlplane
    send(cp, [interception("r1", MINUTE)])
    year_1, year_9999 = Timestamp(seconds=-62135596800), Timestamp(seconds=253402300799)
    assert ids(cp, since=year_1, until=year_9999) == ["r1"]
    assert ids(cp, since=year_9999) == ids(cp, until=year_1) == []


def with_key_text(cursor: str, text: str) -> str:
    """`cursor` with its last key string (an id) replaced by `text`."""
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data[-1] = text
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_a_cursor_holding_what_no_id_holds_is_refused(controlplane: Controlplane) -> None:
    """PostgreSQL refuses NUL in a text: a cursor crafted with one is refused as the
    filters are, never an internal error."""
    cp = controlplane
    send(cp, [interception(f"r{n}", n * MINUTE, session_id=f"s{n}") for n in range(3)])
    calls = listing(cp, limit=1).next_cursor
    sessions = cp.admin.ListSessions(admin_pb2.ListSessionsRequest(limit=1)).next_cursor
    timeline = cp.admin.GetSession(admin_pb2.GetSessionRequest(session_id="s1", limit=1))
    assert calls and sessions and not timeline.next_cursor
    for bad in ("r\x00", "r\x1b", "r" * 201):
        refused_with(
            cp.admin.ListInterceptions,
            admin_pb2.ListInterceptionsRequest(cursor=with_key_text(calls, bad)),
        )
        refused_with(
            cp.admin.ListSessions,
            admin_pb2.ListSessionsRequest(cursor=with_key_text(sessions, bad)),
        )
        refused_with(
            cp.admin.GetSession,
            admin_pb2.GetSessionRequest(session_id="s1", cursor=with_key_text(calls, bad)),
        )
    # The same cursor, its key as it was: taken.
    assert [r.id for r in listing(cp, cursor=with_key_text(calls, "r0")).interceptions] == [
        "r1", "r2",
    ]  # fmt: skip


def test_a_listing_holds_the_calls_started_before_its_first_page(
    controlplane: Controlplane,
) -> None:
    """Sessions are ordered by their last call: one further down that gets a call while a
    reader pages would move up past the cursor, and never be listed. The first page fixes
    the listing's end: a call made after it is in none of the pages that follow, and a
    session's summaries stay those of the first page."""
    cp = controlplane
    now = datetime.now(UTC)
    send(cp, [
        interception("a1", 1 * MINUTE, now, session_id="a"),
        interception("b1", 2 * MINUTE, now, session_id="b"),
        interception("c1", 4 * MINUTE, now, session_id="c"),
        interception("c2", 3 * MINUTE, now, session_id="c"),
    ])  # fmt: skip

    def sessions_page(cursor: str) -> admin_pb2.ListSessionsResponse:
        return cp.admin.ListSessions(admin_pb2.ListSessionsRequest(limit=1, cursor=cursor))

    first = sessions_page("")
    send(cp, [interception("c3", timedelta(0), session_id="c")])  # c is now the most recent
    rest = every_page(sessions_page, "sessions", first.next_cursor)
    listed = [first.sessions, *rest]
    assert [(s.session_id, s.interceptions) for p in listed for s in p] == [
        ("a", 1), ("b", 1), ("c", 2),
    ]  # fmt: skip
    assert [s.session_id for s in sessions_page("").sessions] == ["c"]  # a new listing has it

    # A session's calls, oldest first: the call made after the first page is not added,
    # and the summary is the first page's on every page.
    def session_page(cursor: str) -> admin_pb2.GetSessionResponse:
        request = admin_pb2.GetSessionRequest(session_id="c", limit=2, cursor=cursor)
        return cp.admin.GetSession(request)

    opened = session_page("")
    send(cp, [interception("c4", timedelta(0), session_id="c")])
    later = session_page(opened.next_cursor)
    assert [r.id for r in [*opened.interceptions, *later.interceptions]] == ["c1", "c2", "c3"]
    assert later.next_cursor == ""
    assert [s.interceptions for s in (*opened.sessions, *later.sessions)] == [3, 3]

    # The filter's own end holds too, when it comes first.
    until = to_timestamp(now - timedelta(seconds=150))
    limited = every_page(lambda c: listing(cp, 1, c, until=until), "interceptions")
    assert [r.id for p in limited for r in p] == ["c2", "c1"]


def test_get_is_whole_and_a_listing_holds_previews(controlplane: Controlplane) -> None:
    cp = controlplane
    prompt = "écris 🦙 " * 300  # 2,400 characters, 4-byte ones among them
    recorded = interception(
        "whole", MINUTE, client="claude-code", session_id="sess-9", prompt=prompt,
        tool_calls=[
            usage_pb2.ToolCall(id="toolu_1", name="Write", arguments=f'{{"text": "{"é" * 900}"}}'),
            usage_pb2.ToolCall(id="toolu_2", name="Read", arguments='{"path": "a.py"}'),
        ],
        tool_results=[
            usage_pb2.ToolResult(tool_call_id="toolu_0", is_error=True),
            usage_pb2.ToolResult(tool_call_id="toolu_00"),
        ],
        stop_reason="tool_use", error_message="", reasoning="Let me think. " * 50,
        reasoning_truncated=True, partial=True, status=200, tokens=(11, 22, 33, 44),
    )  # fmt: skip
    plain = interception("plain", 2 * MINUTE, prompt="short", stop_reason="end_turn")
    send(cp, [recorded, plain])

    whole = cp.admin.GetInterception(admin_pb2.GetInterceptionRequest(id="whole"))
    expected = MessageToDict(recorded, preserving_proto_field_name=True)
    expected["id"] = expected.pop("request_id")
    # Priced as stored, gpt-4o's way: OpenAI counts the 77 cached tokens inside the 11
    # input ones, so none is left uncached (USD per million tokens).
    expected["cost_usd"] = (0 * 2.5 + 22 * 10 + 33 * 1.25 + 44 * 2.5) / 1_000_000
    assert MessageToDict(whole, preserving_proto_field_name=True) == expected

    listed = {r.id: r for r in listing(cp).interceptions}
    preview = listed["whole"]
    assert preview.prompt == prompt[:500] and preview.prompt_truncated
    first, second = preview.tool_calls
    assert (first.id, first.name, first.arguments_truncated) == ("toolu_1", "Write", True)
    assert first.arguments == recorded.tool_calls[0].arguments[:200]
    assert second == recorded.tool_calls[1] and not second.arguments_truncated
    assert list(preview.tool_results) == list(recorded.tool_results)
    assert preview.reasoning == "" and preview.reasoning_truncated
    assert (preview.stop_reason, preview.partial, preview.output_tokens) == ("tool_use", True, 22)

    short = listed["plain"]
    assert (short.prompt, short.prompt_truncated, short.reasoning_truncated) == (
        "short", False, False,
    )  # fmt: skip
    assert short == cp.admin.GetInterception(admin_pb2.GetInterceptionRequest(id="plain"))


def test_sessions_group_calls_per_session_and_token(controlplane: Controlplane) -> None:
    """Alice's session s-1 has three calls (the first from an unknown client, one failed),
    Bob's two with the same session id are his own session; s-2 is alice's too; a call
    without a session is in none."""
    cp = controlplane
    now = datetime.now(UTC)
    tool = usage_pb2.ToolCall(id="t", name="Bash", arguments="{}")
    send(cp, [
        interception("a1", 30 * MINUTE, now, session_id="s-1", client="unknown",
                     tokens=(10, 1, 0, 0), tool_calls=[tool, tool]),
        interception("a2", 20 * MINUTE, now, session_id="s-1", client="claude-code", status=500,
                     tokens=(20, 2, 0, 0)),
        interception("a3", 10 * MINUTE, now, session_id="s-1", client="claude-code",
                     tokens=(30, 3, 0, 0), tool_calls=[tool]),
        interception("b1", 8 * MINUTE, now, token="bob", session_id="s-1", client="codex",
                     tokens=(1, 1, 0, 0)),
        interception("b2", 5 * MINUTE, now, token="bob", session_id="s-1", client="codex",
                     status=0),
        interception("a4", 15 * MINUTE, now, session_id="s-2", client="claude-code"),
        interception("none", MINUTE, now),
    ])  # fmt: skip

    def sessions(**filter: Any) -> list[tuple[Any, ...]]:
        request = admin_pb2.ListSessionsRequest(filter=admin_pb2.InterceptionFilter(**filter))
        response = cp.admin.ListSessions(request)
        assert response.next_cursor == ""
        return [summary_of(s, now) for s in response.sessions]

    #   session  token  client  first last calls in out tools errors (minutes ago)
    bob = ("s-1", "bob", "codex", 8, 5, 2, 1, 1, 0, 1)
    alice = ("s-1", "alice", "claude-code", 30, 10, 3, 60, 6, 3, 1)
    alice2 = ("s-2", "alice", "claude-code", 15, 15, 1, 0, 0, 0, 0)
    assert sessions() == [bob, alice, alice2]
    assert sessions(token="alice") == [alice, alice2]
    assert sessions(session_id="s-1", token="tok_bob") == [bob]
    # Calls outside the filter do not count: only a3 of alice's s-1 is this recent.
    assert sessions(since=to_timestamp(now - 12 * MINUTE)) == [
        bob, ("s-1", "alice", "claude-code", 10, 10, 1, 30, 3, 1, 0),
    ]  # fmt: skip
    # The client is that of the latest call the filter admits.
    assert sessions(until=to_timestamp(now - 25 * MINUTE)) == [
        ("s-1", "alice", "unknown", 30, 30, 1, 10, 1, 2, 0),
    ]  # fmt: skip
    assert sessions(status_class="error") == [
        ("s-1", "bob", "codex", 5, 5, 1, 0, 0, 0, 1),
        ("s-1", "alice", "claude-code", 20, 20, 1, 20, 2, 0, 1),
    ]  # fmt: skip

    one_by_one = every_page(
        lambda c: cp.admin.ListSessions(admin_pb2.ListSessionsRequest(limit=1, cursor=c)),
        "sessions",
    )
    assert [[summary_of(s, now) for s in p] for p in one_by_one] == [[bob], [alice], [alice2]]

    both = cp.admin.GetSession(admin_pb2.GetSessionRequest(session_id="s-1"))
    assert [summary_of(s, now) for s in both.sessions] == [bob, alice]
    assert [r.id for r in both.interceptions] == ["a1", "a2", "a3", "b1", "b2"]
    assert both.next_cursor == ""

    def alice_s1(cursor: str) -> admin_pb2.GetSessionResponse:
        request = admin_pb2.GetSessionRequest(session_id="s-1", token="alice", limit=2,
                                              cursor=cursor)  # fmt: skip
        response = cp.admin.GetSession(request)
        assert [summary_of(s, now) for s in response.sessions] == [alice]
        return response

    pages = every_page(alice_s1, "interceptions")
    assert [[r.id for r in p] for p in pages] == [["a1", "a2"], ["a3"]]
    refused_with(
        cp.admin.GetSession,
        admin_pb2.GetSessionRequest(session_id="s-2", token="bob"),
        "session 's-2'",
        grpc.StatusCode.NOT_FOUND,
    )


def summary_of(s: admin_pb2.SessionSummary, now: datetime) -> tuple[Any, ...]:
    """The summary, its times in whole minutes before `now`."""

    def ago(ts: Any) -> int:
        return round((now - ts.ToDatetime(tzinfo=UTC)) / MINUTE)

    assert s.token_id == f"tok_{s.token_name}"
    return (
        s.session_id, s.token_name, s.client, ago(s.first_seen), ago(s.last_seen),
        s.interceptions, s.input_tokens, s.output_tokens, s.tool_calls, s.errors,
    )  # fmt: skip


def test_a_listing_reads_large_records_a_few_at_a_time(controlplane: Controlplane) -> None:
    """120 records of about 1 MiB of tool calls each: a listing of them all reads a few rows
    at a time and keeps only their previews (800 characters of arguments each), so the
    controlplane never holds the whole records at once."""
    cp = controlplane
    calls = [
        usage_pb2.ToolCall(id=f"call_{n}", name="write_file", arguments=str(n) * 256 * 1024)
        for n in range(4)
    ]
    for batch in range(40):  # 3 records a batch: under the 4 MiB a request may hold
        send(cp, [
            interception(f"big{batch:02d}-{n}", timedelta(seconds=batch * 3 + n),
                         tool_calls=calls)
            for n in range(3)
        ])  # fmt: skip
    assert cp.proc is not None
    before = rss_bytes(cp.proc.pid, "VmHWM")
    # What is measured is memory, not time: on a machine busy with other test workers,
    # reading 120 MiB of rows a few at a time can take longer than the usual deadline.
    listed = listing(cp, limit=1000, timeout=90)
    grown = rss_bytes(cp.proc.pid, "VmHWM") - before
    assert len(listed.interceptions) == 120 and listed.next_cursor == ""
    assert all(c.arguments_truncated for r in listed.interceptions for c in r.tool_calls)
    assert grown < 80 * 2**20, f"the controlplane grew {grown / 2**20:.0f} MiB"
