"""A cloud's whole answers, in the Anthropic API's words for its clients (way 1)."""

from __future__ import annotations

import orjson

from bridged.clouds.errors import cloud_error_message
from bridged.errors import anthropic_error_type


def anthropic_error(status: int, body: bytes) -> bytes:
    """A cloud's error as Anthropic's {"type": "error", "error": {…}}; an error already
    in that shape (Vertex passes on the model's own) stays as it is."""
    message = cloud_error_message(body)
    if message is None:
        try:
            if orjson.loads(body).get("type") == "error":
                return body
        except (ValueError, AttributeError):
            pass
        message = "the provider answered with an error"
    error = {"type": anthropic_error_type(status), "message": message[:2000]}
    return orjson.dumps({"type": "error", "error": error})


def anthropic_token_count(body: bytes) -> bytes:
    """Bedrock's CountTokens answer ({"inputTokens": n}) as Anthropic's."""
    try:
        count = orjson.loads(body)["inputTokens"]
    except (ValueError, KeyError, TypeError):
        return body
    return orjson.dumps({"input_tokens": count})
