"""Anthropic's Messages API: a message streamed as events, or whole."""

from __future__ import annotations

from typing import Any

from bridged.capture.answer import Answer, compact_json
from bridged.capture.settings import CaptureSettings


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
        # Calls whose arguments are the input their block started with: the first piece of
        # input that follows replaces it (Anthropic starts with `{}`; some compatible
        # upstreams send the whole input there, and no piece).
        self._started_with_input: set[int] = set()

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
                self._input_piece(data.get("index"), delta.get("partial_json"))
            elif delta.get("type") == "thinking_delta":
                self.answer.think(delta.get("thinking"))
        elif kind == "content_block_start":
            self._block(data.get("index"), data.get("content_block"))
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
                self._block(index, block)

    def _block(self, index: Any, block: Any) -> None:
        if not isinstance(block, dict):
            return
        kind = block.get("type")
        # The client's tools (tool_use) and those the provider runs (server_tool_use,
        # mcp_tool_use, …).
        if kind == "tool_use" or (isinstance(kind, str) and kind.endswith("_tool_use")):
            call = self.answer.tool_calls.start(index, block.get("id"), block.get("name"))
            if call is not None:
                call.arguments.set(compact_json(block.get("input", {})))
                self._started_with_input.add(index)
        elif kind == "thinking":
            self.answer.next_thought()
            self.answer.think(block.get("thinking"))

    def _input_piece(self, index: Any, piece: Any) -> None:
        call = self.answer.tool_calls.get(index)
        if call is None:
            return
        if isinstance(piece, str) and piece and index in self._started_with_input:
            self._started_with_input.discard(index)
            call.arguments.clear()
        call.arguments.append(piece)
