"""Token usage taken from a response as it streams past.

The forwarder writes each chunk to the client first and feeds it here afterwards, so
extraction never holds a byte back. Counts are recorded as each provider reports them:
OpenAI's input includes its cached tokens; Anthropic's input excludes cache reads and
writes, which are counted separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from bridged.sse import SSEDecoder

MAX_BODY_FOR_USAGE = 8 * 1024 * 1024


@dataclass
class Usage:
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class UsageExtractor:
    def __init__(self, route: str, event_stream: bool) -> None:
        self.route = route
        self.usage = Usage()
        self._sse = SSEDecoder() if event_stream else None
        self._body: list[bytes] = []
        self._body_size = 0

    def feed(self, chunk: bytes) -> None:
        if self._sse is None:
            self._body_size += len(chunk)
            if self._body_size <= MAX_BODY_FOR_USAGE:
                self._body.append(chunk)
            return
        for event, data in self._sse.feed(chunk):
            if _worth_parsing(event, data):
                self._event(_loads(data))

    def finish(self) -> Usage:
        if self._sse is None and self._body and self._body_size <= MAX_BODY_FOR_USAGE:
            body = _loads(b"".join(self._body))
            self._body = []
            if body:
                self._model(body.get("model"))
                self._counts(body.get("usage"))
        return self.usage

    def _event(self, data: dict[str, Any] | None) -> None:
        if not data:
            return
        kind = data.get("type")
        if self.route == "messages":
            if kind == "message_start":
                message = data.get("message") or {}
                self._model(message.get("model"))
                self._counts(message.get("usage"))
            elif kind == "message_delta":
                self._counts(data.get("usage"))
        elif self.route == "responses":
            response = data.get("response")
            if isinstance(response, dict):
                self._model(response.get("model"))
                self._counts(response.get("usage"))
        else:  # chat.completions: the include_usage chunk, usually the last
            self._model(data.get("model"))
            self._counts(data.get("usage"))

    def _model(self, model: Any) -> None:
        if isinstance(model, str) and model:
            self.usage.model = model

    def _counts(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        u = self.usage
        if self.route == "messages":
            u.input_tokens = _int(usage, "input_tokens", u.input_tokens)
            u.output_tokens = _int(usage, "output_tokens", u.output_tokens)
            u.cache_read_tokens = _int(usage, "cache_read_input_tokens", u.cache_read_tokens)
            u.cache_write_tokens = _int(usage, "cache_creation_input_tokens", u.cache_write_tokens)
        elif self.route == "responses":
            u.input_tokens = _int(usage, "input_tokens", u.input_tokens)
            u.output_tokens = _int(usage, "output_tokens", u.output_tokens)
            details = usage.get("input_tokens_details") or {}
            u.cache_read_tokens = _int(details, "cached_tokens", u.cache_read_tokens)
        else:
            u.input_tokens = _int(usage, "prompt_tokens", u.input_tokens)
            u.output_tokens = _int(usage, "completion_tokens", u.output_tokens)
            details = usage.get("prompt_tokens_details") or {}
            u.cache_read_tokens = _int(details, "cached_tokens", u.cache_read_tokens)


def _worth_parsing(event: str, data: bytes) -> bool:
    # Most chunks of a stream carry text, not usage: skip their JSON parse.
    if event == "message_start" or b'"message_start"' in data:
        return True
    return b'"usage"' in data and b'"usage":null' not in data


def _loads(data: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(data)  # several times faster than json, on every answer
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _int(mapping: Any, key: str, default: int) -> int:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, int) and value >= 0 else default
