"""Bedrock's streamed answers: AWS event-stream frames, read back into Anthropic's events.

InvokeModelWithResponseStream answers with binary frames (botocore decodes them and
checks their CRCs); each `chunk` event carries one Anthropic streaming event, base64
encoded, and an `exception` frame ends the stream with an error. A client of the
Anthropic API gets them as the SSE events Anthropic itself sends, each as soon as its
frame is complete.
"""

from __future__ import annotations

import base64
import binascii
import logging

import orjson
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from bridged.capture.answer import Answer
from bridged.capture.recorder import ResponseRecorder

log = logging.getLogger(__name__)

EVENT_STREAM = "application/vnd.amazon.eventstream"

# Bedrock's exception events, as the Anthropic error types clients act on. Throttling is
# a rate limit; the rest are the provider's trouble (api_error: not overloaded_error,
# which Claude Code reads as the model's capacity and may switch model over).
_EXCEPTION_TYPES = {
    "throttlingException": "rate_limit_error",
    "validationException": "invalid_request_error",
}


class MalformedStream(Exception):
    """The upstream's bytes are not a valid event stream."""


class EventStreamReader:
    """Bytes of an event stream in, Anthropic SSE events out, frame by frame."""

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self._pending = 0  # bytes fed that no complete frame has taken yet
        self.ended = False  # an exception frame ended the stream
        self._frames = 0
        self.malformed = ""  # why the stream could not be read on, once it could not

    def feed(self, chunk: bytes) -> bytes:
        """The SSE bytes of every frame `chunk` completes (b"" while a frame is partial),
        up to a malformed one: `check()` then raises."""
        if self.ended or self.malformed:
            return b""
        self._buffer.add_data(chunk)
        self._pending += len(chunk)
        out = bytearray()
        try:
            for message in self._buffer:
                self._pending -= message.prelude.total_length
                self._frames += 1
                out += self._event(message)
                if self.ended:
                    break
        except ParserError as exc:
            self.malformed = f"a frame failed to decode ({type(exc).__name__})"
        except MalformedStream as bad:
            self.malformed = str(bad)
        return bytes(out)

    def check(self) -> None:
        """Raises MalformedStream once a frame fed could not be read."""
        if self.malformed:
            raise MalformedStream(self.malformed)

    def _event(self, message: EventStreamMessage) -> bytes:
        headers = message.headers
        kind = headers.get(":message-type")
        if kind == "event":
            if headers.get(":event-type") != "chunk":
                return b""  # Bedrock sends nothing else today; what it may add is not ours
            return _chunk(message.payload)
        if kind in ("exception", "error"):
            self.ended = True
            name = str(headers.get(":exception-type") or headers.get(":error-code") or "")
            return error_event(_EXCEPTION_TYPES.get(name, "api_error"), _message(message, name))
        raise MalformedStream(f"a frame has the unknown message type {kind!r}")

    def finish(self) -> None:
        """At the stream's end: a frame left half-sent is a stream cut short."""
        self.check()
        if not self.ended and self._pending:
            raise MalformedStream("the stream ended inside a frame")
        if not self._frames:
            raise MalformedStream("the stream ended without a frame")


def error_event(error_type: str, message: str) -> bytes:
    """An Anthropic SSE error event, as the API sends one mid-stream."""
    data = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return b"event: error\ndata: " + data + b"\n\n"


def _chunk(payload: bytes) -> bytes:
    try:
        event = base64.b64decode(orjson.loads(payload)["bytes"], validate=True)
        kind = orjson.loads(event)["type"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise MalformedStream("a chunk does not carry an Anthropic event") from None
    if not isinstance(kind, str) or "\n" in kind or "\r" in kind:
        raise MalformedStream("a chunk does not carry an Anthropic event")
    if b"\n" in event or b"\r" in event:  # one data line: JSON written over several is not
        event = orjson.dumps(orjson.loads(event))
    return b"event: " + kind.encode() + b"\ndata: " + event + b"\n\n"


def _message(message: EventStreamMessage, name: str) -> str:
    try:
        text = orjson.loads(message.payload).get("message")
    except (ValueError, AttributeError):
        text = None
    return str(text or name or "the provider ended the stream with an error")[:1000]


class FramesRecorder:
    """Records a stream whose client reads Bedrock's frames themselves (way 2): the
    record reads the Anthropic events inside them. Like every recorder, it can never
    fail the answer: frames it cannot read make the record partial."""

    def __init__(self, recorder: ResponseRecorder) -> None:
        self._recorder = recorder
        self._reader = EventStreamReader()
        self._broken = False

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        events = self._reader.feed(chunk)
        if events:
            self._recorder.feed(events)
        if self._reader.malformed:
            log.warning("a recorded event stream is malformed: %s", self._reader.malformed)
            self._broken = True
            self._recorder.partial()

    @property
    def ended(self) -> bool:
        return self._recorder.ended

    def finish(self) -> Answer:
        return self._recorder.finish()
