"""Which headers cross the gateway.

Requests reach the upstream with an allowlist of headers, what the real clients send and
need (the OpenAI and Anthropic SDKs, Claude Code, Codex CLI: tests/test_agents.py runs
them through the gateway), and the provider's key. Anything else stays here: a caller
must not choose the organisation or project the provider's key bills
(OpenAI-Organization, OpenAI-Project), pass a credential under another spelling
(x_api_key: some servers read an underscore as a hyphen), or speak for a proxy
(X-Forwarded-*). A header the request's Connection header names is about that hop only
(RFC 9110 §7.6.1) and never goes further, allowlisted or not.
"""

from __future__ import annotations

from multidict import CIMultiDictProxy

from common.wire import HOP_BY_HOP

FORWARDED_REQUEST_HEADERS = frozenset({
    # Content negotiation and the client's name.
    "accept", "accept-language", "content-type", "user-agent",
    # API versions and features.
    "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
    "openai-beta",
    # Retries and tracing.
    "idempotency-key", "x-client-request-id", "traceparent", "tracestate", "baggage",
    # Claude Code's application and session.
    "x-app", "x-claude-code-session-id",
    # Codex CLI's originator, session and subagent (the upstream keys its prompt cache by
    # the session).
    "originator", "session-id", "thread-id", "x-openai-subagent",
})  # fmt: skip
# The SDKs' platform and retry headers (x-stainless-os, x-stainless-retry-count, ...), and
# Codex's turn metadata (x-codex-turn-metadata, x-codex-window-id, ...).
FORWARDED_REQUEST_PREFIXES = ("x-stainless-", "x-codex-")

STRIPPED_RESPONSE = HOP_BY_HOP | {"content-length", "set-cookie"}


def upstream_request_headers(
    headers: CIMultiDictProxy[str], intercepted: bool
) -> list[tuple[str, str]]:
    """The client's headers that the upstream gets, repeated ones included; the caller
    adds the provider's key."""
    hop = {
        t.strip().lower() for named in headers.getall("Connection", ()) for t in named.split(",")
    }
    out = [
        (name, value)
        for name, value in headers.items()
        if _forwarded(lower := name.lower()) and lower not in hop
    ]
    if intercepted:
        out.append(("Accept-Encoding", "identity"))  # usage is read from the bytes as they pass
    elif "Accept-Encoding" in headers:
        out.append(("Accept-Encoding", headers["Accept-Encoding"]))
    return out


def _forwarded(name: str) -> bool:
    return name in FORWARDED_REQUEST_HEADERS or name.startswith(FORWARDED_REQUEST_PREFIXES)
