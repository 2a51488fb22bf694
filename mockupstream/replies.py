"""An agent's turn, as each API answers it: some reasoning (when the request asks for
it), then two tool calls whose arguments arrive in many small pieces. Built here, apart
from the server, so that unit tests can feed the very streams the server sends to
bridged's recorder (`sse`)."""

from __future__ import annotations

import json
from typing import Any

Event = tuple[str, dict[str, Any]]  # (the SSE event's name, "" for none; its data)
Calls = tuple[tuple[str, dict[str, Any]], ...]  # (name, arguments) of each tool call

# (name, arguments): the second has what JSON escapes, and characters beyond ASCII.
TOOL_CALLS: Calls = (
    ("get_weather", {"city": "Paris", "unit": "celsius", "days": [1, 2, 3]}),
    ("read_file", {"path": "/tmp/notes é 🦙.txt", "why": 'a "quoted" word\nand a line'}),
)
REASONING = ("The weather first.", "Then the file, which may be long.")
PIECE = 3  # characters of arguments (or reasoning) per event


def pieces(text: str, size: int = PIECE) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def arguments(args: dict[str, Any]) -> str:
    return json.dumps(args, ensure_ascii=False)  # as models write it: UTF-8, not escapes


def sse(events: list[Event]) -> bytes:
    return b"".join(
        ((f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n").encode()
        for name, data in events
    )


def anthropic_turn(
    message: dict[str, Any], thinking: bool, calls: Calls = TOOL_CALLS
) -> tuple[dict[str, Any], list[Event]]:
    """`message` (id, model, usage, …) as a tool-using turn: whole, and as events."""
    blocks: list[dict[str, Any]] = []
    if thinking:
        blocks += [{"type": "thinking", "thinking": t, "signature": "c2ln"} for t in REASONING]
    blocks.append({"type": "text", "text": "Let me look."})
    blocks += [
        {"type": "tool_use", "id": f"toolu_0{n}", "name": name, "input": args}
        for n, (name, args) in enumerate(calls, 1)
    ]
    usage = message["usage"]
    whole = message | {"content": blocks, "stop_reason": "tool_use"}
    events: list[Event] = [("message_start", {"type": "message_start", "message": message | {
        "content": [], "stop_reason": None, "usage": usage | {"output_tokens": 1}}})]  # fmt: skip
    for index, block in enumerate(blocks):
        events += _anthropic_block(index, block)
    events += [
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": usage["output_tokens"]}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    return whole, events


def _anthropic_block(index: int, block: dict[str, Any]) -> list[Event]:
    def delta(**fields: Any) -> Event:
        return ("content_block_delta", {"type": "content_block_delta", "index": index,
                                        "delta": fields})  # fmt: skip

    kind = block["type"]
    if kind == "tool_use":
        start = block | {"input": {}}
        deltas = [delta(type="input_json_delta", partial_json=p)
                  for p in ["", *pieces(arguments(block["input"]))]]  # fmt: skip
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": ""}
        deltas = [delta(type="thinking_delta", thinking=p) for p in pieces(block["thinking"])]
        deltas.append(delta(type="signature_delta", signature=block["signature"]))
    else:
        start = {"type": "text", "text": ""}
        deltas = [delta(type="text_delta", text=p) for p in pieces(block["text"])]
    return [
        ("content_block_start", {"type": "content_block_start", "index": index,
                                 "content_block": start}),
        *deltas,
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]  # fmt: skip


def chat_turn(
    base: dict[str, Any], usage: dict[str, Any], include_usage: bool, calls: Calls = TOOL_CALLS
) -> tuple[dict[str, Any], list[Event]]:
    """A chat completion (`base`: id, created, model) that calls the tools."""
    made: list[dict[str, Any]] = [
        {"id": f"call_{n}", "type": "function",
         "function": {"name": name, "arguments": arguments(args)}}
        for n, (name, args) in enumerate(calls, 1)
    ]  # fmt: skip
    whole = base | {
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": None, "tool_calls": made}}],
        "usage": usage,
    }  # fmt: skip
    chunk = base | {"object": "chat.completion.chunk", "usage": None}

    def delta(fields: dict[str, Any], finish: str | None = None) -> Event:
        return ("", chunk | {"choices": [{"index": 0, "delta": fields, "finish_reason": finish}]})

    events = [delta({"role": "assistant", "content": None})]
    for index, call in enumerate(made):
        function = call["function"]
        events.append(delta({"tool_calls": [{
            "index": index, "id": call["id"], "type": "function",
            "function": {"name": function["name"], "arguments": ""}}]}))  # fmt: skip
        events += [
            delta({"tool_calls": [{"index": index, "function": {"arguments": p}}]})
            for p in pieces(function["arguments"])
        ]
    events.append(delta({}, "tool_calls"))
    if include_usage:
        events.append(("", chunk | {"choices": [], "usage": usage}))
    return whole, events


def responses_turn(
    response: dict[str, Any], reasoning: bool, calls: Calls = TOOL_CALLS
) -> tuple[dict[str, Any], list[Event]]:
    """A response (`response`: id, model, usage, …) that calls the tools."""
    output: list[dict[str, Any]] = []
    if reasoning:
        output.append({"id": "rs_1", "type": "reasoning", "summary": [
            {"type": "summary_text", "text": t} for t in REASONING]})  # fmt: skip
    output += [
        {"id": f"fc_{n}", "type": "function_call", "status": "completed", "call_id": f"call_{n}",
         "name": name, "arguments": arguments(args)}
        for n, (name, args) in enumerate(calls, 1)
    ]  # fmt: skip
    whole = response | {"output": output}
    started = response | {"status": "in_progress", "output": [], "usage": None}
    events: list[Event] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
    ]
    for index, item in enumerate(output):
        events += _responses_item(index, item)
    events.append(("response.completed", {"response": whole}))
    return whole, [
        (kind, {"type": kind, **data, "sequence_number": number})
        for number, (kind, data) in enumerate(events)
    ]


def _responses_item(index: int, item: dict[str, Any]) -> list[Event]:
    where = {"item_id": item["id"], "output_index": index}
    if item["type"] == "function_call":
        added = item | {"status": "in_progress", "arguments": ""}
        middle: list[Event] = [
            ("response.function_call_arguments.delta", where | {"delta": p})
            for p in pieces(item["arguments"])
        ]
        middle.append(
            ("response.function_call_arguments.done", where | {"arguments": item["arguments"]})
        )
    else:  # reasoning: its summary, part by part
        added = item | {"summary": []}
        middle = []
        for number, part in enumerate(item["summary"]):
            at = where | {"summary_index": number}
            middle.append(("response.reasoning_summary_part.added",
                           at | {"part": {"type": "summary_text", "text": ""}}))  # fmt: skip
            middle += [("response.reasoning_summary_text.delta", at | {"delta": p})
                       for p in pieces(part["text"])]  # fmt: skip
            middle.append(("response.reasoning_summary_text.done", at | {"text": part["text"]}))
    return [
        ("response.output_item.added", {"output_index": index, "item": added}),
        *middle,
        ("response.output_item.done", {"output_index": index, "item": item}),
    ]
