"""A cloud's whole answers, in the Anthropic API's words for its clients (way 1)."""

from __future__ import annotations

from typing import Any

import orjson

from bridged.errors import anthropic_error_type


def anthropic_error(status: int, body: bytes) -> bytes:
    """A cloud's error as Anthropic's {"type": "error", "error": {…}}; an error already
    in that shape (Vertex passes on the model's own) stays as it is."""
    try:
        data = orjson.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("type") == "error":
        return body
    message = _cloud_message(data) or "the provider answered with an error"
    error = {"type": anthropic_error_type(status), "message": message[:2000]}
    return orjson.dumps({"type": "error", "error": error})


def _cloud_message(data: Any) -> str | None:
    """The message of a cloud's error: Bedrock's {"message"}, Google's {"error": {…}}."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    message = data.get("message") or data.get("Message")
    return message if isinstance(message, str) else None


def anthropic_token_count(body: bytes) -> bytes:
    """Bedrock's CountTokens answer ({"inputTokens": n}) as Anthropic's."""
    try:
        count = orjson.loads(body)["inputTokens"]
    except (ValueError, KeyError, TypeError):
        return body
    return orjson.dumps({"input_tokens": count})
