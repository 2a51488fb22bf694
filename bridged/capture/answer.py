"""What a response says, as far as it is recorded: usage, the tool calls the model made,
why it stopped, its error, its reasoning. Each API's reader (anthropic.py, chat.py,
responses.py) fills one from the events or the body."""

from __future__ import annotations

from typing import Any

import orjson

from aibridge.v1 import usage_pb2
from bridged.capture.settings import MAX_ERROR_MESSAGE, MAX_NAME, MAX_TOOL_CALLS, CaptureSettings
from bridged.capture.texts import BoundedText, Bounds
from bridged.usage import Usage


class ToolCall:
    __slots__ = ("id", "name", "arguments")

    def __init__(self, arguments: BoundedText) -> None:
        self.id = ""
        self.name = ""
        self.arguments = arguments


class ToolCalls:
    """Tool calls by their place in the response (a content block's or an output item's
    index), in the order they first appeared."""

    def __init__(self, settings: CaptureSettings, bounds: Bounds) -> None:
        self._on = settings.tool_calls
        self._limit = settings.max_text_bytes
        self._bounds = bounds
        self._calls: dict[int, ToolCall] = {}

    def start(self, key: Any, call_id: Any = None, name: Any = None) -> ToolCall | None:
        """The call at `key`, made on first sight and named by what this piece says;
        None when tool calls are not recorded, or past the limit."""
        call = self._calls.get(key) if isinstance(key, int) else None
        if call is None:
            if not self._on or not isinstance(key, int):
                return None
            if len(self._calls) >= MAX_TOOL_CALLS:
                self._bounds.partial = True
                return None
            call = self._calls[key] = ToolCall(BoundedText(self._limit, self._bounds))
        if call_id:
            call.id = self._bounds.short(call_id, MAX_NAME)
        if name:
            call.name = self._bounds.short(name, MAX_NAME)
        return call

    def get(self, key: Any) -> ToolCall | None:
        return self._calls.get(key) if isinstance(key, int) else None

    def clear(self) -> None:
        for call in self._calls.values():
            call.arguments.clear()
        self._calls = {}

    def records(self) -> list[usage_pb2.ToolCall]:
        return [
            usage_pb2.ToolCall(
                id=c.id, name=c.name, arguments=c.arguments.text(),
                arguments_truncated=c.arguments.truncated,
            )
            for c in self._calls.values()
        ]  # fmt: skip


class Answer:
    def __init__(self, settings: CaptureSettings, bounds: Bounds) -> None:
        self.bounds = bounds
        self.usage = Usage()
        self.tool_calls = ToolCalls(settings, bounds)
        self.reasoning: BoundedText | None = None
        if settings.reasoning:
            self.reasoning = BoundedText(settings.max_text_bytes, bounds)
        self.stop_reason = ""
        self.error_message = ""

    def stop(self, reason: Any) -> None:
        if reason and isinstance(reason, str):
            self.stop_reason = self.bounds.short(reason, 64)

    def error(self, error: Any) -> None:
        """An error object ({"message": …}) or message."""
        message = error.get("message") if isinstance(error, dict) else error
        if message and isinstance(message, str):
            self.error_message = self.bounds.short(message, MAX_ERROR_MESSAGE)

    def think(self, text: Any) -> None:
        if self.reasoning is not None:
            self.reasoning.append(text)

    def next_thought(self) -> None:
        """A new block of reasoning begins: a blank line from the one before."""
        if self.reasoning:
            self.reasoning.append("\n\n")


def compact_json(value: Any) -> str:
    """Arguments given as a JSON value (Anthropic's `input`), as JSON text."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # a lone surrogate, from a body decoded leniently
        return ""
