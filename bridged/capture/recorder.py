"""A response read as it streams past. The forwarder writes each chunk to the client
first and feeds it here afterwards: recording never holds a byte back, and nothing here
can fail the client's answer (what cannot be read marks the record partial)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

import orjson

from bridged.capture.answer import Answer
from bridged.capture.anthropic import MessagesReader
from bridged.capture.chat import ChatReader
from bridged.capture.responses import ResponsesReader
from bridged.capture.settings import MAX_ERROR_MESSAGE, CaptureSettings
from bridged.capture.texts import Bounds
from bridged.sse import SSEDecoder

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024 * 1024  # a whole answer read for its record; larger, it is not
MAX_ERROR_BODY = 64 * 1024  # an error answer's first bytes: an error message is no more


class Reader(Protocol):
    def worth(self, event: str, data: bytes) -> bool: ...
    def event(self, data: dict[str, Any]) -> None: ...
    def body(self, data: dict[str, Any]) -> None: ...


# The event that ends each API's stream: once it has passed, the client has the whole
# answer. (The openai SDK closes the connection at [DONE], before the body's end.)
LAST_EVENTS = frozenset({"message_stop", "response.completed", "response.incomplete",
                         "response.failed"})  # fmt: skip

READERS: dict[str, type[MessagesReader] | type[ChatReader] | type[ResponsesReader]] = {
    "messages": MessagesReader,
    "chat.completions": ChatReader,
    "responses": ResponsesReader,
}


class ResponseRecorder:
    def __init__(
        self, route: str, status: int, event_stream: bool, settings: CaptureSettings,
        bounds: Bounds,
    ) -> None:  # fmt: skip
        self.answer = Answer(settings, bounds)
        self._bounds = bounds
        self._reader: Reader = READERS[route](self.answer, settings)
        self._ok = 200 <= status < 300
        self._sse = SSEDecoder() if event_stream and self._ok else None
        self._body = bytearray()
        self._body_limit = MAX_BODY if self._ok else MAX_ERROR_BODY
        self._body_size = 0
        self._broken = False
        self.ended = False  # the stream's last event has passed

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        try:
            self._feed(chunk)
        except Exception:  # a bug here must not fail the answer: this record stops
            self._break()

    def partial(self) -> None:
        """Something the record needed could not be read."""
        self._bounds.partial = True

    def finish(self) -> Answer:
        if not self._broken:
            try:
                self._finish()
            except Exception:
                self._break()
        return self.answer

    def _break(self) -> None:
        log.exception("recording a response failed; its record is partial")
        self._broken = self._bounds.partial = True

    def _feed(self, chunk: bytes) -> None:
        if self._sse is None:
            self._body_size += len(chunk)
            room = self._body_limit - len(self._body)
            if room > 0:
                self._body += chunk[:room]
            return
        self._events(self._sse.feed(chunk))

    def _events(self, events: Iterable[tuple[str, bytes]]) -> None:
        for event, data in events:
            if event in LAST_EVENTS or data.strip() == b"[DONE]":
                self.ended = True
            if self._reader.worth(event, data):
                parsed = _loads(data)
                if parsed is not None:
                    self._reader.event(parsed)
                elif data != b"[DONE]":  # Chat Completions' last event: not JSON
                    self._bounds.partial = True

    def _finish(self) -> None:
        if self._sse is not None:
            self._events(self._sse.end())
            if self._sse.dropped or self._sse.pending:
                self._bounds.partial = True  # an event cut off, or a line past all bounds
            return
        body, self._body = self._body, bytearray()
        if not self._ok:
            self.answer.error(_error_message(body))
        elif self._body_size > len(body):
            self._bounds.partial = True  # too large to read
        elif (parsed := _loads(body)) is not None:
            self._reader.body(parsed)
        elif body:
            self._bounds.partial = True


def _error_message(body: bytearray) -> str:
    """The message of an error answer in either provider's shape, else its first words."""
    data = _loads(body)
    if data is not None:
        error = data.get("error", data)
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str) and message:
            return message
    return body[: MAX_ERROR_MESSAGE * 4].decode(errors="replace").strip()[:MAX_ERROR_MESSAGE]


def _loads(data: bytes | bytearray) -> dict[str, Any] | None:
    try:
        value = orjson.loads(data)  # several times faster than json, on every answer
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
