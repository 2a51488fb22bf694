"""bridged/capture, without processes: what a record says of a call, given the request
body and headers a client sends and the response an upstream streams (or sends whole).
The streams are the mock upstream's own (mockupstream/replies.py), fed as bridged feeds
them: chunk by chunk, however the network splits them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from aibridge.v1 import snapshot_pb2
from bridged.capture import CaptureSettings, Recording
from bridged.capture.answer import Answer
from bridged.capture.chat import ChatReader
from bridged.capture.responses import ResponsesReader
from bridged.capture.settings import MAX_TOOL_CALLS, RECORD_TEXT_BYTES
from bridged.capture.texts import BoundedText, Bounds
from bridged.routes import RouteBuilder
from bridged.usage import Usage
from mockupstream import replies
from mockupstream.replies import REASONING, TOOL_CALLS, Event, sse

ON = CaptureSettings(reasoning=True)
ANTHROPIC_MESSAGE = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
    "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 13, "output_tokens": 5, "cache_creation_input_tokens": 2,
              "cache_read_input_tokens": 4},
}  # fmt: skip
CHAT_BASE = {"id": "chatcmpl-1", "created": 1, "model": "gpt-x"}
CHAT_USAGE = {"prompt_tokens": 11, "completion_tokens": 7,
              "prompt_tokens_details": {"cached_tokens": 3}}  # fmt: skip
RESPONSE = {
    "id": "resp_1", "object": "response", "model": "gpt-x", "status": "completed",
    "usage": {"input_tokens": 21, "output_tokens": 9, "input_tokens_details": {"cached_tokens": 5}},
}  # fmt: skip
# route → (the ids the client answers with, the stop reason, the usage recorded)
EXPECTED = {
    "messages": (["toolu_01", "toolu_02"], "tool_use", Usage("claude-x", 13, 5, 4, 2)),
    "chat.completions": (["call_1", "call_2"], "tool_calls", Usage("gpt-x", 11, 7, 3, 0)),
    "responses": (["call_1", "call_2"], "completed", Usage("gpt-x", 21, 9, 5, 0)),
}


def turn(route: str) -> tuple[dict[str, Any], list[Event]]:
    """An agent's turn, whole and as events, with reasoning."""
    if route == "messages":
        return replies.anthropic_turn(ANTHROPIC_MESSAGE, thinking=True)
    if route == "chat.completions":
        return replies.chat_turn(CHAT_BASE, CHAT_USAGE, include_usage=True)
    return replies.responses_turn(RESPONSE, reasoning=True)


def stream_bytes(route: str) -> bytes:
    data = sse(turn(route)[1])
    return data + (b"data: [DONE]\n\n" if route == "chat.completions" else b"")


def answer(
    route: str, chunks: list[bytes], *, stream: bool = True, status: int = 200,
    settings: CaptureSettings = ON,
) -> tuple[dict[str, Any], Usage]:  # fmt: skip
    """The record's fields and usage, after the response came in `chunks`."""
    recording = Recording(settings, route)
    recorder = recording.responding(status, stream)
    for chunk in chunks:
        recorder.feed(chunk)
    usage = recorder.finish().usage
    return recording.fields(), usage


def request(
    route: str, body: Any, headers: dict[str, str] | None = None,
    settings: CaptureSettings = ON,
) -> tuple[dict[str, Any], tuple[str, bool]]:  # fmt: skip
    recording = Recording(settings, route)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    model_and_stream = recording.read_request(CIMultiDict(headers or {}), bytearray(raw))
    return recording.fields(), model_and_stream


def calls(fields: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Tool calls as (id, name, arguments parsed)."""
    return [(c.id, c.name, json.loads(c.arguments)) for c in fields["tool_calls"]]


# The response side.


@pytest.mark.parametrize("route", list(EXPECTED))
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_tool_calls_stop_reason_usage_and_reasoning_of_each_api(route: str, stream: bool) -> None:
    whole, _events = turn(route)
    data = stream_bytes(route) if stream else json.dumps(whole).encode()
    fields, usage = answer(route, [data], stream=stream)
    ids, stop_reason, expected_usage = EXPECTED[route]
    assert calls(fields) == [
        (call_id, name, args) for call_id, (name, args) in zip(ids, TOOL_CALLS, strict=True)
    ]
    assert not any(c.arguments_truncated for c in fields["tool_calls"])
    assert fields["stop_reason"] == stop_reason
    assert usage == expected_usage
    if route != "chat.completions":  # chat has no reasoning to record
        assert fields["reasoning"] == "\n\n".join(REASONING)
    assert not fields["partial"] and not fields["error_message"]


@pytest.mark.parametrize("route", list(EXPECTED))
def test_arguments_are_the_json_text_as_the_model_streamed_it(route: str) -> None:
    fields, _ = answer(route, [stream_bytes(route)])
    assert [c.arguments for c in fields["tool_calls"]] == [
        replies.arguments(args) for _name, args in TOOL_CALLS
    ]


@pytest.mark.parametrize("route", list(EXPECTED))
@given(data=st.data())
@hypothesis_settings(max_examples=60, deadline=None)
def test_any_split_of_a_stream_gives_the_same_record(route: str, data: st.DataObject) -> None:
    stream = stream_bytes(route)
    whole, whole_usage = answer(route, [stream])
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=40)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert answer(route, chunks) == (whole, whole_usage)


def test_reasoning_is_recorded_only_when_the_setting_is_on() -> None:
    for route in ("messages", "responses"):
        fields, _ = answer(route, [stream_bytes(route)], settings=CaptureSettings())
        assert fields["reasoning"] == "" and len(fields["tool_calls"]) == 2


def test_tool_calls_off_records_no_tool_calls_nor_results() -> None:
    off = CaptureSettings(tool_calls=False)
    for route in EXPECTED:
        fields, usage = answer(route, [stream_bytes(route)], settings=off)
        assert fields["tool_calls"] == [] and usage == EXPECTED[route][2]
    body = {"messages": [
        {"role": "user", "content": "do it"},
        {"role": "assistant",
         "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"},
                                     {"type": "text", "text": "and then?"}]},
    ]}  # fmt: skip
    fields, _ = request("messages", body, settings=off)
    assert fields["tool_results"] == [] and fields["prompt"] == "and then?"
    fields, _ = request("messages", body, settings=CaptureSettings(prompts=False))
    assert fields["prompt"] == "" and [r.tool_call_id for r in fields["tool_results"]] == ["t1"]


def test_responses_prefers_the_completed_output_and_falls_back_on_the_deltas() -> None:
    whole, events = replies.responses_turn(RESPONSE, reasoning=False)
    # The final event says otherwise than the deltas did: it wins.
    final = json.loads(json.dumps(events[-1]))
    final[1]["response"]["output"][0]["arguments"] = '{"city": "Lyon"}'
    fields, _ = answer("responses", [sse([*events[:-1], final])])
    assert calls(fields)[0] == ("call_1", "get_weather", {"city": "Lyon"})
    # Cut before it (and before the second call's item was done): what the deltas built.
    cut = [e for e in events[:-1] if e[1].get("output_index") != 1 or "delta" in e[1]
           or e[0] == "response.output_item.added"]  # fmt: skip
    fields, usage = answer("responses", [sse(cut)])
    assert calls(fields) == [("call_1", *TOOL_CALLS[0]), ("call_2", *TOOL_CALLS[1])]
    assert usage == Usage()  # usage comes with the final event only
    assert fields["stop_reason"] == ""


def test_custom_tool_calls_record_their_free_form_input() -> None:
    patch = "*** Begin Patch\n*** Update File: a.py\n+print('hi')\n*** End Patch"
    item = {"id": "ctc_1", "type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch"}
    events: list[Event] = [
        ("response.output_item.added", {"type": "response.output_item.added",
                                        "output_index": 0, "item": item | {"input": ""}}),
        *[("response.custom_tool_call_input.delta",
           {"type": "response.custom_tool_call_input.delta", "output_index": 0, "delta": p})
          for p in replies.pieces(patch)],
    ]  # fmt: skip
    fields, _ = answer("responses", [sse(events)])
    assert [(c.id, c.name, c.arguments) for c in fields["tool_calls"]] == [
        ("call_p", "apply_patch", patch)
    ]
    body = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "tool_calls": [{"id": "c1", "type": "custom", "custom": {"name": "apply_patch",
                                                                 "input": patch}}]}}]}  # fmt: skip
    fields, _ = answer("chat.completions", [json.dumps(body).encode()], stream=False)
    assert [(c.id, c.name, c.arguments) for c in fields["tool_calls"]] == [
        ("c1", "apply_patch", patch)
    ]


def test_an_anthropic_tool_use_without_input_deltas_has_empty_object_arguments() -> None:
    events: list[Event] = [
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_9", "name": "now", "input": {}}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ]  # fmt: skip
    fields, _ = answer("messages", [sse(events)])
    assert [(c.id, c.arguments) for c in fields["tool_calls"]] == [("toolu_9", "{}")]


def anthropic_block(index: int, block: dict[str, Any], pieces: list[str]) -> list[Event]:
    """A tool use block as events: its start as given, then its input in `pieces`."""
    return [
        ("content_block_start", {"type": "content_block_start", "index": index,
                                 "content_block": block}),
        *[("content_block_delta", {"type": "content_block_delta", "index": index,
                                   "delta": {"type": "input_json_delta", "partial_json": p}})
          for p in pieces],
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]  # fmt: skip


def test_an_anthropic_tool_use_whose_start_holds_the_whole_input_records_it_whole() -> None:
    """Some Anthropic-compatible upstreams send the whole input in the block's start, and
    no input_json_delta: those are the arguments, bounded like any (and flagged if cut).
    Pieces that follow a start replace its input."""
    command = {"command": "grep -rn " + "x" * 500 + " ."}
    block = {"type": "tool_use", "id": "toolu_9", "name": "bash", "input": command}
    fields, _ = answer("messages", [sse(anthropic_block(0, block, []))])
    [call] = fields["tool_calls"]
    assert calls(fields) == [("toolu_9", "bash", command)]
    assert not call.arguments_truncated and not fields["partial"]

    small = CaptureSettings(max_text_bytes=100)
    fields, _ = answer("messages", [sse(anthropic_block(0, block, []))], settings=small)
    [call] = fields["tool_calls"]
    assert call.arguments_truncated and len(call.arguments) == 100 and fields["partial"]

    pieces = ["", '{"command": ', '"ls"}']  # Anthropic's first piece is often empty
    fields, _ = answer("messages", [sse(anthropic_block(0, block, pieces))])
    assert calls(fields) == [("toolu_9", "bash", {"command": "ls"})]


def test_every_kind_of_tool_call_is_recorded() -> None:
    """Calls of the tools a provider runs or a client has built in: Codex's local shell,
    web search, MCP (Responses); server and MCP tool uses (Anthropic). Their name is the
    tool's, else the call's type; their arguments are the input, or the action taken."""
    shell = {
        "id": "lsh_1",
        "type": "local_shell_call",
        "call_id": "call_sh",
        "status": "completed",
        "action": {"type": "exec", "command": ["ls", "-la"], "env": {}},
    }
    search = {
        "id": "ws_1",
        "type": "web_search_call",
        "status": "completed",
        "action": {"type": "search", "query": "weather in Paris"},
    }
    mcp = {
        "id": "mcp_1",
        "type": "mcp_call",
        "server_label": "docs",
        "name": "search_docs",
        "arguments": '{"q": "sse"}',
    }
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Done.", "annotations": []}],
    }
    expected = [
        ("call_sh", "local_shell_call", shell["action"]),
        ("ws_1", "web_search_call", search["action"]),
        ("mcp_1", "search_docs", {"q": "sse"}),
    ]
    output = [shell, search, mcp, message]
    fields, _ = answer("responses", [json.dumps(RESPONSE | {"output": output}).encode()],
                       stream=False)  # fmt: skip
    assert calls(fields) == expected
    events: list[Event] = []
    for index, item in enumerate(output):
        added = item | {"arguments": ""} if item is mcp else item
        events.append(
            (
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": index, "item": added},
            )
        )
    events += [("response.mcp_call_arguments.delta", {  # and no .done: the stream is cut
        "type": "response.mcp_call_arguments.delta", "output_index": 2, "delta": p})
        for p in ['{"q": ', '"sse"}']]  # fmt: skip
    fields, _ = answer("responses", [sse(events)])
    assert calls(fields) == expected

    server = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    mcp_use = {
        "type": "mcp_tool_use",
        "id": "mcptoolu_1",
        "name": "search_docs",
        "server_name": "docs",
        "input": {"q": "sse"},
    }
    expected = [("srvtoolu_1", "web_search", {"query": "paris"}),
                ("mcptoolu_1", "search_docs", {"q": "sse"})]  # fmt: skip
    stream = sse([*anthropic_block(0, server, ['{"query"', ': "paris"}']),
                  *anthropic_block(1, mcp_use, [])])  # fmt: skip
    assert calls(answer("messages", [stream])[0]) == expected
    whole = ANTHROPIC_MESSAGE | {"content": [server | {"input": {"query": "paris"}}, mcp_use]}
    assert calls(answer("messages", [json.dumps(whole).encode()], stream=False)[0]) == expected


@pytest.mark.parametrize(
    ("route", "event", "message"),
    [
        ("messages", ("error", {"type": "error", "error": {"type": "overloaded_error",
                                                           "message": "Overloaded"}}),
         "Overloaded"),
        ("responses", ("error", {"type": "error", "code": "server_error",
                                 "message": "The server had an error"}),
         "The server had an error"),
        ("responses", ("response.failed", {"type": "response.failed", "response": RESPONSE | {
            "status": "failed", "error": {"code": "server_error", "message": "it failed"}}}),
         "it failed"),
        ("chat.completions", ("", {"error": {"message": "stream broke", "type": "server_error"}}),
         "stream broke"),
    ],
)  # fmt: skip
def test_an_error_event_in_a_stream_is_the_error_message(
    route: str, event: Event, message: str
) -> None:
    fields, _ = answer(route, [sse([event])])
    assert fields["error_message"] == message


def test_an_error_answer_gives_its_message_or_its_first_words() -> None:
    anthropic = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    fields, _ = answer("messages", [json.dumps(anthropic).encode()], stream=False, status=429)
    assert fields["error_message"] == "slow down"
    openai = {"error": {"message": "bad model", "type": "invalid_request_error"}}
    fields, _ = answer("responses", [json.dumps(openai).encode()], stream=True, status=400)
    assert fields["error_message"] == "bad model"
    html = b"<html>502 Bad Gateway</html>" + b"x" * 200_000
    fields, _ = answer("chat.completions", [html[:1000], html[1000:]], stream=False, status=502)
    assert fields["error_message"] == html[:1000].decode()  # its first characters
    assert not fields["partial"]


def test_the_gateway_s_own_failures_are_the_error_message_unless_the_upstream_gave_one() -> None:
    refused = Recording(ON, "messages")
    refused.refused(403, b'{"type": "error", "error": {"message": "model not allowed"}}')
    assert refused.fields()["error_message"] == "model not allowed"
    unreachable = Recording(ON, "chat.completions")
    unreachable.failed("the provider is unreachable")
    assert unreachable.fields()["error_message"] == "the provider is unreachable"
    assert not unreachable.fields()["partial"]
    cut = Recording(ON, "messages")
    recorder = cut.responding(200, True)
    recorder.feed(sse([("error", {"type": "error", "error": {"message": "Overloaded"}})]))
    recorder.finish()
    cut.failed("the provider cut the response short", cut_short=True)
    assert (cut.fields()["error_message"], cut.fields()["partial"]) == ("Overloaded", True)


def test_a_malformed_event_or_a_stream_cut_mid_event_marks_the_record_partial() -> None:
    data = stream_bytes("messages")
    fields, _ = answer("messages", [data])
    assert not fields["partial"]
    broken = b'event: oops\ndata: {"type": "error", "error": {"message": \n\n'
    fields, usage = answer("messages", [broken, data])
    assert fields["partial"] and len(fields["tool_calls"]) == 2  # the rest still read
    assert usage == EXPECTED["messages"][2]
    fields, _ = answer("messages", [data[: len(data) // 2]])
    assert fields["partial"]
    fields, _ = answer("chat.completions", [stream_bytes("chat.completions")])
    assert not fields["partial"]  # [DONE] is not a malformed event


def test_a_whole_answer_too_large_or_not_json_marks_the_record_partial() -> None:
    fields, usage = answer("messages", [b"{" + b" " * (9 * 1024 * 1024) + b"}"], stream=False)
    assert fields["partial"] and usage == Usage()
    fields, _ = answer("messages", [b"not json"], stream=False)
    assert fields["partial"]


@pytest.mark.parametrize("route", list(EXPECTED))
@pytest.mark.parametrize(
    "ending", [b"\n", b"", b"\r\n"], ids=["no-blank-line", "no-line-end", "crlf"]
)
def test_a_stream_whose_last_event_has_no_blank_line_is_complete(route: str, ending: bytes) -> None:
    """Some upstreams end a stream without the blank line after its last event (Chat's
    `data: [DONE]`, or any last event): the answer is whole, not partial."""
    stream = stream_bytes(route)
    whole = answer(route, [stream])
    if route == "chat.completions":
        last = stream.removesuffix(b"data: [DONE]\n\n") + b"data: [DONE]" + ending
    else:
        last = stream.removesuffix(b"\n\n") + ending
    if ending == b"" and route != "chat.completions":
        assert answer(route, [last])[0]["partial"]  # a line may have been cut: partial
    else:
        assert answer(route, [last]) == whole
    assert answer(route, [stream[:-20]])[0]["partial"]  # cut in its last event's line


# Bounds.


def with_arguments(args: dict[str, Any]) -> bytes:
    big = ((TOOL_CALLS[0][0], args), TOOL_CALLS[1])
    message = ANTHROPIC_MESSAGE
    blocks = [{"type": "tool_use", "id": f"toolu_0{n}", "name": name, "input": a}
              for n, (name, a) in enumerate(big, 1)]  # fmt: skip
    events: list[Event] = []
    for index, block in enumerate(blocks):
        events += replies._anthropic_block(index, block)
    return sse([("message_start", {"type": "message_start", "message": message}), *events])


def test_huge_arguments_are_cut_at_a_character_boundary_and_mark_the_record_partial() -> None:
    limit = 1000
    fields, _ = answer(
        "messages", [with_arguments({"text": "🦙" * 5000})],
        settings=CaptureSettings(max_text_bytes=limit),
    )  # fmt: skip
    first, second = fields["tool_calls"]
    assert first.arguments_truncated and fields["partial"]
    assert first.arguments.startswith('{"text": "') and set(first.arguments[10:]) == {"🦙"}
    assert limit - 4 < len(first.arguments.encode()) <= limit
    assert not second.arguments_truncated  # each text has its own limit


def test_a_record_holds_at_most_64_tool_calls_and_one_mib_of_text() -> None:
    many = [
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": i,
                "content_block": {"type": "tool_use", "id": f"t{i}", "name": "f", "input": {}},
            },
        )
        for i in range(100)
    ]
    many += [("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
        "type": "input_json_delta", "partial_json": '"' + "x" * 40_000 + '"'}})
        for i in range(100)]  # fmt: skip
    fields, _ = answer("messages", [sse(many)])
    recorded = fields["tool_calls"]
    assert len(recorded) == MAX_TOOL_CALLS and fields["partial"]
    assert [c.id for c in recorded] == [f"t{i}" for i in range(MAX_TOOL_CALLS)]
    total = sum(len(c.arguments.encode()) for c in recorded)
    assert RECORD_TEXT_BYTES - 40_000 < total <= RECORD_TEXT_BYTES
    # Nothing left for the last ones but the bytes their `{}` held from their start.
    assert recorded[-1].arguments_truncated and len(recorded[-1].arguments) <= 2


def test_chunks_with_null_tool_calls_are_not_parsed() -> None:
    """Some upstreams send `"tool_calls": null` in every delta: a chunk that says so is
    text, its JSON parse skipped, and the record the same."""
    _whole, events = turn("chat.completions")
    nulled: list[Event] = []
    for name, data in events:
        data = json.loads(json.dumps(data))
        for choice in data["choices"]:
            choice["delta"].setdefault("tool_calls", None)
        nulled.append((name, data))
    reader = ChatReader(Answer(ON, Bounds()), ON)

    def parsed(stream: list[Event]) -> list[int]:
        return [
            n for n, (_, data) in enumerate(stream) if reader.worth("", json.dumps(data).encode())
        ]

    assert parsed(nulled) == parsed(events)
    text = {"choices": [{"index": 0, "delta": {"content": "hi", "tool_calls": None}}]}
    assert not reader.worth("", json.dumps(text, separators=(",", ":")).encode())
    # Another choice's null does not hide the first choice's calls.
    two = {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c"}]}},
                       {"index": 1, "delta": {"tool_calls": None}}]}  # fmt: skip
    assert reader.worth("", json.dumps(two).encode())
    assert answer("chat.completions", [sse(nulled) + b"data: [DONE]\n\n"]) == answer(
        "chat.completions", [stream_bytes("chat.completions")]
    )


def test_a_message_item_is_not_parsed_for_the_text_it_carries() -> None:
    """A Responses message's item, when done, holds the whole answer's text: only a
    call's item is read (and none when tool calls are not recorded)."""
    message = {"type": "response.output_item.done", "output_index": 0, "item": {
        "id": "msg_1", "type": "message", "role": "assistant",
        "content": [{"type": "output_text", "text": "x" * 100_000}]}}  # fmt: skip
    call = {
        "type": "response.output_item.done",
        "output_index": 1,
        "item": {
            "id": "fc_1",
            "type": "function_call",
            "call_id": "c",
            "name": "f",
            "arguments": "{}",
        },
    }
    done = "response.output_item.done"
    reader = ResponsesReader(Answer(ON, Bounds()), ON)
    assert not reader.worth(done, json.dumps(message).encode())
    assert reader.worth(done, json.dumps(call).encode())
    off = CaptureSettings(tool_calls=False)
    assert not ResponsesReader(Answer(off, Bounds()), off).worth(done, json.dumps(call).encode())


def test_a_huge_piece_is_encoded_only_as_far_as_it_can_be_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[int] = []
    utf8 = Bounds.utf8

    def counted(bounds: Bounds, text: str) -> bytes:
        encoded.append(len(text))
        return utf8(bounds, text)

    monkeypatch.setattr(Bounds, "utf8", counted)
    text = BoundedText(1000, Bounds())
    text.append("é" * 4_000_000)
    assert max(encoded) <= 1001 and text.truncated and text.text() == "é" * 500
    for size, truncated in ((999, False), (1000, False), (1001, True)):
        text = BoundedText(1000, Bounds())
        text.append("x" * size)
        assert (text.text(), text.truncated) == ("x" * min(size, 1000), truncated)


# The request side.


def anthropic_loop(result_error: bool = False) -> dict[str, Any]:
    return {"model": "claude-x", "stream": True, "messages": [
        {"role": "user", "content": "What is the weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "w",
                                           "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny",
             "is_error": result_error},
            {"type": "tool_result", "tool_use_id": "toolu_02", "content": "no such file"}]},
    ]}  # fmt: skip


@pytest.mark.parametrize(
    ("route", "body", "prompt", "results"),
    [
        ("messages", {"messages": [{"role": "user", "content": "hi"}]}, "hi", []),
        ("messages", {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "one"}, {"type": "image", "source": {}},
            {"type": "text", "text": "two"}]}]}, "one\ntwo", []),
        ("messages", anthropic_loop(True), "", [("toolu_01", True), ("toolu_02", False)]),
        # Claude Code's notes beside the prompt are not the prompt.
        ("messages", {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>\nthe date\n</system-reminder>\n"},
            {"type": "text", "text": "read my notes"},
            {"type": "text", "text": "<system-reminder>x</system-reminder> and y"}]}]},
         "read my notes\n<system-reminder>x</system-reminder> and y", []),
        # A prefill: the user's turn is before it.
        ("messages", {"messages": [{"role": "user", "content": "hi"},
                                   {"role": "assistant", "content": "{"}]}, "hi", []),
        ("chat.completions", {"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"},
                                         {"type": "image_url", "image_url": {}}]}]}, "a", []),
        ("chat.completions", {"messages": [
            {"role": "user", "content": "old"},
            {"role": "assistant", "tool_calls": [{"id": "call_1"}, {"id": "call_2"}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "x"},
            {"role": "tool", "tool_call_id": "call_2", "content": "y"}]},
         "", [("call_1", False), ("call_2", False)]),
        ("responses", {"input": "just text"}, "just text", []),
        ("responses", {"input": [
            {"type": "message", "role": "developer", "content": "rules"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "fix"}, {"type": "input_text", "text": "it"}]},
        ]}, "fix\nit", []),
        ("responses", {"input": [
            {"role": "user", "content": "go"},
            {"type": "reasoning", "summary": []},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": ""},
            {"type": "function_call_output", "call_id": "call_1", "output": "ok"},
            {"type": "custom_tool_call_output", "call_id": "call_p", "output": "done"},
            {"role": "user", "content": "and now?"}]},
         "and now?", [("call_1", False), ("call_p", False)]),
    ],
)  # fmt: skip
def test_the_prompt_and_the_tool_results_since_the_model_last_turn(
    route: str, body: dict[str, Any], prompt: str, results: list[tuple[str, bool]]
) -> None:
    fields, _ = request(route, body)
    assert fields["prompt"] == prompt
    assert [(r.tool_call_id, r.is_error) for r in fields["tool_results"]] == results
    assert not fields["partial"]


def test_the_model_and_streaming_come_from_the_body() -> None:
    assert request("messages", anthropic_loop())[1] == ("claude-x", True)
    assert request("messages", {"model": 3, "stream": "yes"})[1] == ("", False)


UA = "User-Agent"


@pytest.mark.parametrize(
    ("headers", "client"),
    [
        ({UA: "claude-cli/2.1.12 (external, cli)"}, "claude-code"),
        ({UA: "codex_exec/0.171.0 (Ubuntu 24.4.0; x86_64) xterm"}, "codex"),
        ({UA: "something/1.0", "originator": "codex_cli_rs"}, "codex"),
        ({UA: "OpenAI/Python 3.57.0"}, "openai-python"),
        ({UA: "Anthropic/Python 2.14.0"}, "anthropic-python"),
        ({UA: "OpenAI/JS 6.1.0"}, "openai-node"),
        ({UA: "Anthropic/JS 0.70.0"}, "anthropic-node"),
        ({UA: "curl/8.5.0"}, "curl"),
        ({UA: "python-httpx/0.28"}, "unknown"),
        ({}, "unknown"),
    ],
)  # fmt: skip
def test_the_client_is_told_by_its_user_agent(headers: dict[str, str], client: str) -> None:
    assert request("messages", {}, headers)[0]["client"] == client


SESSION = "5b7e7c7e-2a51-4d2f-9a3e-0c1d2e3f4a5b"
CLAUDE_USER_ID = json.dumps(
    {"device_id": "d" * 64, "account_uuid": "", "session_id": SESSION}
)  # fmt: skip


@pytest.mark.parametrize(
    ("route", "headers", "body", "session"),
    [
        ("messages", {"x-claude-code-session-id": SESSION}, {}, SESSION),
        ("messages", {}, {"metadata": {"user_id": CLAUDE_USER_ID}}, SESSION),
        ("messages", {}, {"metadata": {"user_id": f"user_{'a' * 64}_account__session_{SESSION}"}},
         SESSION),
        ("responses", {"session-id": SESSION, "thread-id": "other"}, {}, SESSION),
        ("responses", {"x-codex-turn-metadata": json.dumps({"session_id": SESSION}),
                       "thread-id": "other"}, {}, SESSION),
        ("responses", {"thread-id": SESSION}, {}, SESSION),
        ("responses", {UA: "codex_exec/0.171.0"}, {"prompt_cache_key": SESSION}, SESSION),
        # Another client's cache key is no session: it may be shared by every call.
        ("responses", {UA: "OpenAI/Python 3.57.0"}, {"prompt_cache_key": SESSION}, ""),
        # Anyone may name the session; it comes first.
        ("chat.completions", {"x-aibridge-session-id": "mine",
                              "x-claude-code-session-id": SESSION}, {}, "mine"),
        ("chat.completions", {"x-aibridge-session-id": "x" * 201}, {}, ""),
        ("chat.completions", {"x-aibridge-session-id": "tab\there"}, {}, ""),
        ("messages", {}, {"metadata": {"user_id": json.dumps({"session_id": "é"})}}, ""),
        ("chat.completions", {}, {}, ""),
    ],
)  # fmt: skip
def test_the_session_is_the_one_the_client_names(
    route: str, headers: dict[str, str], body: dict[str, Any], session: str
) -> None:
    assert request(route, body, headers)[0]["session_id"] == session


def test_a_body_not_utf8_is_decoded_as_far_as_it_can_be_and_marked_partial() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "caf\xe9 \xff ok"}]}'
    fields, model_and_stream = request("messages", body)
    assert fields["prompt"] == "caf\ufffd \ufffd ok" and fields["partial"]
    assert model_and_stream == ("m", False)


def test_lone_surrogate_escapes_become_replacement_characters() -> None:
    body = b'{"messages": [{"role": "user", "content": "half \\ud83e and \\udd99 whole"}]}'
    fields, _ = request("chat.completions", body)
    assert fields["prompt"] == "half \ufffd and \ufffd whole" and fields["partial"]
    fields["prompt"].encode()  # valid UTF-8: the record can be sent


def test_nul_becomes_a_replacement_character_which_postgresql_can_store() -> None:
    body = {"messages": [{"role": "user", "content": "a\x00b"}],
            "metadata": {"user_id": "\x00"}}  # fmt: skip
    fields, _ = request("messages", body)
    assert fields["prompt"] == "a\ufffdb" and fields["partial"]
    error = {"type": "error", "error": {"type": "x", "message": "bad\x00"}}
    fields, _ = answer("messages", [json.dumps(error).encode()], stream=False, status=400)
    assert fields["error_message"] == "bad\ufffd"


def test_a_body_that_is_not_json_is_partial_and_still_names_its_client() -> None:
    fields, model_and_stream = request("messages", b"\x00\x01 not json", {UA: "curl/8"})
    assert fields["partial"] and fields["client"] == "curl" and model_and_stream == ("", False)


def test_a_prompt_is_cut_to_the_text_limit() -> None:
    body = {"messages": [{"role": "user", "content": "é" * 100}]}
    fields, _ = request("messages", body, settings=CaptureSettings(max_text_bytes=51))
    assert fields["prompt"] == "é" * 25 and fields["prompt_truncated"] and fields["partial"]


# Settings, as the snapshot carries them.


def test_the_route_table_carries_the_snapshot_settings_or_the_defaults() -> None:
    builder = RouteBuilder()
    table, _ = builder.build(snapshot_pb2.ProviderSnapshot(version=1))
    assert table.capture == CaptureSettings() == CaptureSettings(True, True, False, 32768)
    settings = snapshot_pb2.GatewaySettings(
        record_prompts=False, record_tool_calls=True, record_reasoning=True,
        record_max_text_bytes=100,
    )  # fmt: skip
    table, _ = builder.build(snapshot_pb2.ProviderSnapshot(version=2, settings=settings))
    assert table.capture == CaptureSettings(False, True, True, 100)


def test_usage_is_read_whatever_is_recorded() -> None:
    nothing = CaptureSettings(prompts=False, tool_calls=False, reasoning=False)
    for route, (_ids, _stop, usage) in EXPECTED.items():
        assert answer(route, [stream_bytes(route)], settings=nothing)[1] == usage
