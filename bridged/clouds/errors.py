"""Errors in the clouds' own shapes, for the clients that call a cloud's API through the
gateway (way 2: the AnthropicBedrock and AnthropicVertex SDKs, Claude Code in its
Bedrock or Vertex mode), and which of a cloud's refusals are about the credential.
(A cloud's error in Anthropic's shape, for way 1: responses.py.)"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

# Bedrock names its error in x-amzn-ErrorType and says it in {"message": …}.
_BEDROCK_TYPES = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    413: "ValidationException",
    429: "ThrottlingException",
    500: "InternalServerException",
    502: "InternalServerException",
    503: "ServiceUnavailableException",
    504: "ModelTimeoutException",
}
# Google's APIs answer {"error": {"code", "message", "status"}}, status a gRPC code name.
_GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def cloud_error(dialect: str, status: int, message: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an error as Bedrock or Vertex would send it."""
    if dialect == "bedrock":
        kind = _BEDROCK_TYPES.get(status, "InternalServerException")
        return orjson.dumps({"message": message}), {"x-amzn-ErrorType": kind}
    google = _GOOGLE_STATUSES.get(status, "UNKNOWN")
    body = {"error": {"code": status, "message": message, "status": google}}
    return orjson.dumps(body), {}


# Bedrock's refusals of the credential itself, which come as 403s: the key rests, as a
# key another provider answers 401 does (not a refusal of this one request).
_CREDENTIAL_REFUSALS = (
    "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
    "IncompleteSignatureException", "MissingAuthenticationTokenException",
)  # fmt: skip


def credential_refused(status: int, headers: Mapping[str, str]) -> bool:
    """Bedrock answered that the key's credential is not good (not this request)."""
    if status != 403:
        return False
    kind = headers.get("x-amzn-ErrorType", "").partition(":")[0]  # "Type:http://…"
    return kind in _CREDENTIAL_REFUSALS
