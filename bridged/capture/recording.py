"""What is recorded of one intercepted call, gathered as the call goes: the request's
side when its body has been read, the response's as it streams past, and bridged's own
message when it failed the call itself."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from aibridge.v1 import usage_pb2
from bridged.capture.answer import Answer
from bridged.capture.clients import client_of, session_of
from bridged.capture.conversation import last_turn
from bridged.capture.recorder import ResponseRecorder
from bridged.capture.settings import MAX_NAME, MAX_TOOL_CALLS, CaptureSettings
from bridged.capture.texts import BoundedText, Bounds

log = logging.getLogger(__name__)

# A body that is not valid UTF-8 is decoded leniently by the standard library's parser,
# which blocks the event loop far longer than orjson: only up to this size.
LENIENT_BODY_MAX = 1024 * 1024


class Recording:
    def __init__(self, settings: CaptureSettings, route: str) -> None:
        self.settings = settings
        self.route = route
        self.bounds = Bounds()
        self.client = "unknown"
        self.session_id = ""
        self.prompt: BoundedText | None = None
        self.tool_results: list[usage_pb2.ToolResult] = []
        self.answer: Answer | None = None
        self.failure = ""  # bridged's own message, when it failed the call

    def read_request(self, headers: Mapping[str, str], body: bytearray) -> tuple[str, bool]:
        """Records what the request says; returns its model and whether it streams."""
        try:
            return self._read_request(headers, body)
        except Exception:  # a bug here must not fail the call
            log.exception("recording a request failed; its record is partial")
            self.bounds.partial = True
            return "", False

    def _read_request(self, headers: Mapping[str, str], body: bytearray) -> tuple[str, bool]:
        data = self._parse(body)
        self.client = client_of(headers)
        self.session_id = session_of(headers, data, self.client)
        if not isinstance(data, dict):
            return "", False
        if self.settings.prompts or self.settings.tool_calls:
            self._read_turn(data)
        model = data.get("model")
        return (model if isinstance(model, str) else "")[:200], data.get("stream") is True

    def responding(self, status: int, event_stream: bool) -> ResponseRecorder:
        recorder = ResponseRecorder(self.route, status, event_stream, self.settings, self.bounds)
        self.answer = recorder.answer
        return recorder

    def refused(self, status: int, body: bytes) -> None:
        """The answer was an upstream's refusal, kept and given whole."""
        recorder = self.responding(status, False)
        recorder.feed(body)
        recorder.finish()

    def failed(self, message: str, cut_short: bool = False) -> None:
        self.failure = message
        if cut_short:
            self.bounds.partial = True

    @property
    def stop_reason(self) -> str:
        return self.answer.stop_reason if self.answer is not None else ""

    def fields(self) -> dict[str, Any]:
        """The Interception's fields about what the agent did."""
        a = self.answer
        reasoning = a.reasoning if a is not None else None
        return {
            "client": self.client,
            "session_id": self.session_id,
            "prompt": self.prompt.text() if self.prompt is not None else "",
            "prompt_truncated": self.prompt is not None and self.prompt.truncated,
            "tool_calls": a.tool_calls.records() if a is not None else [],
            "tool_results": self.tool_results,
            "stop_reason": self.stop_reason,
            "error_message": (a.error_message if a is not None else "") or self.failure,
            "reasoning": reasoning.text() if reasoning is not None else "",
            "reasoning_truncated": reasoning is not None and reasoning.truncated,
            "partial": self.bounds.partial,
        }

    def _parse(self, body: bytearray) -> Any:
        try:
            return orjson.loads(body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
            pass
        self.bounds.partial = True
        if len(body) > LENIENT_BODY_MAX:
            return None
        try:  # invalid UTF-8 becomes U+FFFD; lone surrogates pass, replaced when recorded
            return json.loads(body.decode(errors="replace"))
        except (ValueError, RecursionError):
            return None

    def _read_turn(self, data: dict[str, Any]) -> None:
        prompt, results = last_turn(self.route, data)
        if self.settings.prompts and prompt:
            self.prompt = BoundedText(self.settings.max_text_bytes, self.bounds)
            self.prompt.append(prompt)
        if self.settings.tool_calls:
            if len(results) > MAX_TOOL_CALLS:
                self.bounds.partial = True
            self.tool_results = [
                usage_pb2.ToolResult(
                    tool_call_id=self.bounds.short(call_id, MAX_NAME), is_error=is_error
                )
                for call_id, is_error in results[:MAX_TOOL_CALLS]
            ]
