"""bridged's reading of Bedrock's event streams (bridged/clouds/eventstream.py), frame by
frame however the bytes are cut, against frames written as Bedrock writes them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from bridged.clouds.eventstream import EventStreamReader, MalformedStream
from mockupstream.clouds import event_stream_frame

EVENTS: list[dict[str, Any]] = [
    {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3}}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "é 🦙"}},
    {"type": "message_stop"},
]
CHUNK = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}


def chunk(event: dict[str, Any]) -> bytes:
    inner = base64.b64encode(json.dumps(event).encode()).decode()
    return event_stream_frame(CHUNK, json.dumps({"bytes": inner, "p": "abc"}).encode())


def sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


STREAM = b"".join(chunk(e) for e in EVENTS)


@pytest.mark.parametrize("piece", [1, 7, 64, len(STREAM)])
def test_frames_become_sse_events_however_the_bytes_arrive(piece: int) -> None:
    reader = EventStreamReader()
    out = b"".join(reader.feed(STREAM[i : i + piece]) for i in range(0, len(STREAM), piece))
    reader.check()
    reader.finish()
    assert out == sse(EVENTS)


def test_each_event_is_given_as_soon_as_its_frame_is_complete() -> None:
    reader = EventStreamReader()
    first = chunk(EVENTS[0])
    assert reader.feed(first[:-1]) == b""
    assert reader.feed(first[-1:]) == sse(EVENTS[:1])


def test_an_exception_frame_ends_the_stream_with_an_anthropic_error() -> None:
    exception = event_stream_frame(
        {":exception-type": "throttlingException", ":content-type": "application/json",
         ":message-type": "exception"},
        b'{"message": "Too many tokens, please wait before trying again."}',
    )  # fmt: skip
    reader = EventStreamReader()
    out = reader.feed(chunk(EVENTS[0]) + exception + chunk(EVENTS[2]))
    assert out.startswith(sse(EVENTS[:1]))
    error = out.split(b"\n\n")[1]
    assert error.startswith(b"event: error\ndata: ")
    data = json.loads(error.partition(b"data: ")[2])
    assert data["error"] == {
        "type": "rate_limit_error",
        "message": "Too many tokens, please wait before trying again.",
    }
    assert reader.ended and reader.feed(chunk(EVENTS[2])) == b""


def test_a_corrupt_frame_stops_the_reading_after_the_events_before_it() -> None:
    second = bytearray(chunk(EVENTS[1]))
    second[-1] ^= 0xFF  # its CRC
    reader = EventStreamReader()
    assert reader.feed(chunk(EVENTS[0]) + bytes(second)) == sse(EVENTS[:1])
    with pytest.raises(MalformedStream):
        reader.check()
    assert reader.feed(chunk(EVENTS[2])) == b""


@pytest.mark.parametrize(
    "payload",
    [b"not json", b'{"bytes": "%%%"}', b"{}", json.dumps({"bytes": "bm90IGpzb24="}).encode()],
)
def test_a_chunk_without_an_anthropic_event_is_malformed(payload: bytes) -> None:
    reader = EventStreamReader()
    assert reader.feed(event_stream_frame(CHUNK, payload)) == b""
    with pytest.raises(MalformedStream):
        reader.check()


def test_a_stream_that_ends_inside_a_frame_is_malformed() -> None:
    reader = EventStreamReader()
    reader.feed(STREAM[:-3])
    with pytest.raises(MalformedStream, match="inside a frame"):
        reader.finish()


def test_pretty_printed_json_is_sent_on_one_data_line() -> None:
    inner = base64.b64encode(json.dumps(EVENTS[2], indent=2).encode()).decode()
    frame = event_stream_frame(CHUNK, json.dumps({"bytes": inner}).encode())
    assert (
        EventStreamReader().feed(frame) == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


def test_a_stream_without_a_frame_is_malformed() -> None:
    with pytest.raises(MalformedStream, match="without a frame"):
        EventStreamReader().finish()
