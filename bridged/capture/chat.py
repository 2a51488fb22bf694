"""OpenAI's Chat Completions: a completion streamed as chunks, or whole. The first choice
is recorded (a request for several is rare, and their tool calls would mix)."""

from __future__ import annotations

from typing import Any

from bridged.capture.answer import Answer
from bridged.capture.settings import CaptureSettings


class ChatReader:
    def __init__(self, answer: Answer, settings: CaptureSettings) -> None:
        self.answer = answer

    def worth(self, event: str, data: bytes) -> bool:
        """Most chunks carry text only: their JSON parse is skipped. (Quotes inside a
        JSON string are escaped: these markers are never found in a text.)"""
        return (
            _has_tool_calls(data)
            or b'"finish_reason":"' in data
            or b'"finish_reason": "' in data
            or b'"error"' in data
            or (b'"usage"' in data and b'"usage":null' not in data)
        )

    def event(self, data: dict[str, Any]) -> None:
        self._completion(data, "delta")

    def body(self, data: dict[str, Any]) -> None:
        self._completion(data, "message")

    def _completion(self, data: dict[str, Any], part: str) -> None:
        if "error" in data:
            self.answer.error(data["error"])
        self.answer.usage.read_model(data.get("model"))
        self.answer.usage.read_chat(data.get("usage"))
        choice = _first_choice(data.get("choices"))
        if choice is None:
            return
        self.answer.stop(choice.get("finish_reason"))
        message = choice.get(part)
        if isinstance(message, dict) and isinstance(message.get("tool_calls"), list):
            self._tool_calls(message["tool_calls"], whole=part == "message")

    def _tool_calls(self, calls: list[Any], whole: bool) -> None:
        for position, piece in enumerate(calls):
            if not isinstance(piece, dict):
                continue
            # A streamed piece names its call by index; a whole message lists them in order.
            key = position if whole else piece.get("index")
            # A function's arguments, or a custom tool's free-form input.
            function = piece.get("function") or piece.get("custom") or {}
            if not isinstance(function, dict):
                continue
            call = self.answer.tool_calls.start(key, piece.get("id"), function.get("name"))
            if call is None:
                continue
            arguments = function.get("arguments", function.get("input"))
            if whole:
                call.arguments.set(arguments)
            else:
                call.arguments.append(arguments)


def _has_tool_calls(data: bytes) -> bool:
    """Some upstreams send `"tool_calls":null` in every delta: that is none."""
    found = data.count(b'"tool_calls"')
    if not found:
        return False
    return found > data.count(b'"tool_calls":null') + data.count(b'"tool_calls": null')


def _first_choice(choices: Any) -> dict[str, Any] | None:
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                return choice
    return None
