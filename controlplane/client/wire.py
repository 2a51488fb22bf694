"""Facts the controlplane and both data planes must agree on beyond the protobufs."""

from __future__ import annotations

# OpenAI-compatible kinds speak OpenAI's wire format at their own base URL.
OPENAI_COMPATIBLE_TYPES = ("openai", "openai-compatible", "azure-openai", "openrouter", "ollama")
PROVIDER_TYPES = ("openai", "anthropic", *OPENAI_COMPATIBLE_TYPES[1:])

# Headers about one connection, never forwarded by a hop (RFC 9110 §7.6.1, plus the
# proxy headers clients still send).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "proxy-connection"}
)  # fmt: skip
