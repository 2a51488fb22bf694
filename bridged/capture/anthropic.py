"""Anthropic's Messages API: a message streamed as events, or whole."""

from __future__ import annotations

from typing import Any

from bridged.capture.answer import Answer, compact_json
from bridged.capture.settings import MAX_NAME, CaptureSettings


class MessagesReader:
    def __init__(self, answer: Answer, settings: CaptureSettings) -> None:
        self.answer = answer
        # Deltas that carry nothing recorded. Quotes inside a JSON string are escaped, so
        # these (quotes included) are found only as the delta's type, never in a text.
        skipped = [b'"text_delta"', b'"signature_delta"', b'"citations_delta"']
        if not settings.reasoning:
            skipped.append(b'"thinking_delta"')
        if not settings.tool_calls:
            skipped.append(b'"input_json_delta"')
        self._skipped = tuple(skipped)

    def worth(self, event: str, data: bytes) -> bool:
        """Most events of a stream carry text: their JSON parse is skipped."""
        if event != "content_block_delta":
            return True
        for marker in self._skipped:
            if marker in data:
                return False
        return True

    def event(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "content_block_delta":
            delta = data.get("delta")
            if not isinstance(delta, dict):
                return
            if delta.get("type") == "input_json_delta":
                call = self.answer.tool_calls.get(data.get("index"))
                if call is not None:
                    call.arguments.append(delta.get("partial_json"))
            elif delta.get("type") == "thinking_delta":
                self.answer.think(delta.get("thinking"))
        elif kind == "content_block_start":
            self._block(data.get("index"), data.get("content_block"), streamed=True)
        elif kind == "message_start":
            message = data.get("message")
            if isinstance(message, dict):
                self.answer.usage.read_model(message.get("model"))
                self.answer.usage.read_anthropic(message.get("usage"))
        elif kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict):
                self.answer.stop(delta.get("stop_reason"))
            self.answer.usage.read_anthropic(data.get("usage"))
        elif kind == "error":
            self.answer.error(data.get("error"))

    def body(self, data: dict[str, Any]) -> None:
        if data.get("type") == "error":
            self.answer.error(data.get("error"))
            return
        self.answer.usage.read_model(data.get("model"))
        self.answer.usage.read_anthropic(data.get("usage"))
        self.answer.stop(data.get("stop_reason"))
        content = data.get("content")
        if isinstance(content, list):
            for index, block in enumerate(content):
                self._block(index, block, streamed=False)

    def _block(self, index: Any, block: Any, streamed: bool) -> None:
        if not isinstance(block, dict):
            return
        kind = block.get("type")
        if kind == "tool_use":
            call = self.answer.tool_calls.start(index, block.get("id"), block.get("name"))
            if call is None:
                return
            arguments = compact_json(block.get("input", {}))
            if streamed:  # input_json_delta pieces follow; `{}` if none does
                call.default = self.answer.bounds.short(arguments, MAX_NAME)
            else:
                call.arguments.set(arguments)
        elif kind == "thinking":
            self.answer.next_thought()
            self.answer.think(block.get("thinking"))
