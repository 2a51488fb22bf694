"""OpenAI's Responses API: a response streamed as events, or whole. The final event
(response.completed, .incomplete or .failed) carries the whole output: what it says
replaces what the deltas assembled, which stands when a stream is cut before it."""

from __future__ import annotations

from typing import Any

from bridged.capture.answer import Answer, compact_json
from bridged.capture.settings import CaptureSettings

_ARGUMENT_DELTAS = frozenset({
    "response.function_call_arguments.delta", "response.custom_tool_call_input.delta",
    "response.mcp_call_arguments.delta",
})  # fmt: skip
_ITEM_EVENTS = frozenset({"response.output_item.added", "response.output_item.done"})
# In an output item's JSON, the end of a call's type ("function_call", "local_shell_call",
# …): a message's item, whose .done carries the whole answer's text, is not parsed. (A
# quote inside a JSON string is escaped: a text never holds it.)
_CALL_MARKER = b'_call"'
_SUMMARY_DELTA = "response.reasoning_summary_text.delta"
_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
# Events with nothing recorded in them (text, or what other events also carry): their
# JSON parse is skipped. The first two echo the request's instructions and tools.
_SKIPPED = frozenset({
    "response.created", "response.in_progress", "response.queued",
    "response.output_text.delta", "response.output_text.done",
    "response.output_text.annotation.added", "response.refusal.delta", "response.refusal.done",
    "response.content_part.added", "response.content_part.done",
    "response.reasoning_summary_part.added", "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.done", "response.reasoning_text.delta",
    "response.reasoning_text.done", "response.function_call_arguments.done",
    "response.custom_tool_call_input.done",
})  # fmt: skip


class ResponsesReader:
    def __init__(self, answer: Answer, settings: CaptureSettings) -> None:
        self.answer = answer
        skipped = set(_SKIPPED)
        if not settings.reasoning:
            skipped.add(_SUMMARY_DELTA)
        if not settings.tool_calls:
            skipped |= _ARGUMENT_DELTAS | _ITEM_EVENTS
        self._skipped = frozenset(skipped)
        self._summary: tuple[Any, Any] | None = None  # (item, part) the summary deltas are in

    def worth(self, event: str, data: bytes) -> bool:
        if event in self._skipped:
            return False
        return event not in _ITEM_EVENTS or _CALL_MARKER in data

    def event(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind in _ARGUMENT_DELTAS:
            call = self.answer.tool_calls.get(data.get("output_index"))
            if call is not None:
                call.arguments.append(data.get("delta"))
        elif kind == _SUMMARY_DELTA:
            where = (data.get("output_index"), data.get("summary_index"))
            if where != self._summary:
                self._summary = where
                self.answer.next_thought()
            self.answer.think(data.get("delta"))
        elif kind in _ITEM_EVENTS:
            self._tool_call(data.get("output_index"), data.get("item"))
        elif kind in _FINAL:
            response = data.get("response")
            if isinstance(response, dict):
                self.body(response)
        elif kind == "error":
            self.answer.error(data.get("error") or data)

    def body(self, data: dict[str, Any]) -> None:
        self.answer.usage.read_model(data.get("model"))
        self.answer.usage.read_responses(data.get("usage"))
        if data.get("error"):
            self.answer.error(data["error"])
        details = data.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        self.answer.stop(reason or data.get("status"))
        output = data.get("output")
        if not isinstance(output, list) or not output:
            return
        self.answer.tool_calls.clear()
        if self.answer.reasoning is not None:
            self.answer.reasoning.clear()
        for index, item in enumerate(output):
            self._tool_call(index, item)
            if isinstance(item, dict) and item.get("type") == "reasoning":
                self._summary_of(item)

    def _tool_call(self, index: Any, item: Any) -> None:
        """Any call the model made: a function's, a custom tool's (its free-form input),
        and those of the built-in tools (local_shell_call, web_search_call, mcp_call, …),
        whose outputs are recorded as tool results too (conversation.py)."""
        if not isinstance(item, dict):
            return
        kind = item.get("type")
        if not isinstance(kind, str) or not kind.endswith("_call"):
            return
        call_id = item.get("call_id") or item.get("id")
        call = self.answer.tool_calls.start(index, call_id, item.get("name") or kind)
        if call is not None:
            call.arguments.set(_arguments(item))

    def _summary_of(self, item: dict[str, Any]) -> None:
        summary = item.get("summary")
        for part in summary if isinstance(summary, list) else ():
            if isinstance(part, dict):
                self.answer.next_thought()
                self.answer.think(part.get("text"))


def _arguments(item: dict[str, Any]) -> str | None:
    """A call's arguments as the model wrote them: a function's JSON text, a custom tool's
    input, or a built-in tool's action (a command to run, a search) as JSON."""
    for name in ("arguments", "input"):
        value = item.get(name)
        if isinstance(value, str):
            return value
    action = item.get("action")
    return compact_json(action) if action is not None else None
