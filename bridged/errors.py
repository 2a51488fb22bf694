"""Errors in the provider's own JSON shape, so SDKs parse them like the provider's.

The family is the API the client speaks: "openai", "anthropic", or a cloud's own
("bedrock", "vertex") for a client calling the cloud's paths through the gateway."""

from __future__ import annotations

import json

from aiohttp import web

from bridged.clouds.errors import cloud_error
from common.clouds import CLOUD_TYPES

# status → (OpenAI error type, Anthropic error type), as each provider types its own. The
# 503s bridged makes (no snapshot, limit counters unreachable, bodies buffer full) are
# Anthropic's api_error, not overloaded_error: Claude Code reads that as the model's
# capacity, and may switch model.
_TYPES = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("invalid_request_error", "authentication_error"),
    403: ("request_forbidden", "permission_error"),
    404: ("invalid_request_error", "not_found_error"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_error"),
    502: ("api_error", "api_error"),
    503: ("api_error", "api_error"),
    504: ("api_error", "api_error"),
}


def error_response(
    family: str,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> web.Response:
    if family in CLOUD_TYPES:
        cloud_body, cloud_headers = cloud_error(family, status, message)
        return web.Response(
            status=status, body=cloud_body, content_type="application/json",
            headers={"x-aibridge-error": code, **cloud_headers, **(headers or {})},
        )  # fmt: skip
    openai_type, anthropic_type = _TYPES.get(status, ("api_error", "api_error"))
    if family == "anthropic":
        body = {"type": "error", "error": {"type": anthropic_type, "message": message}}
    else:
        body = {"error": {"message": message, "type": openai_type, "param": None, "code": code}}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers={"x-aibridge-error": code, **(headers or {})},
    )


def anthropic_error_type(status: int) -> str:
    return _TYPES.get(status, ("api_error", "api_error"))[1]


def family_for_path(path: str) -> str:
    """Before a route is known, guess the family from the path the client used."""
    if "/v1/messages" in path:
        return "anthropic"
    if path.startswith("/model/"):
        return "bedrock"
    if path.startswith("/v1/projects/"):
        return "vertex"
    return "openai"
