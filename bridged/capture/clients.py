"""Which client sent a call, and the session it belongs to, as the client names it.

What the agents send (seen running them against a local upstream): Claude Code 2.1 sends
`User-Agent: claude-cli/…`, the header `x-claude-code-session-id` and, in the body,
`metadata.user_id`: a JSON string {device_id, account_uuid, session_id} (older versions:
a string ending `_session_<uuid>`). Codex 0.171 sends `User-Agent: codex_…` and
`originator: codex_…`, the headers `session-id` and `thread-id`, `x-codex-turn-metadata`
(JSON with session_id), and the body's `prompt_cache_key` is the session id. Any client
may name its session in `x-aibridge-session-id` (bridged keeps it: not forwarded).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from bridged.capture.settings import MAX_NAME

# Claude Code runs on Anthropic's JS SDK: its own name comes first.
_USER_AGENTS = (
    ("claude-cli/", "claude-code"),
    ("codex_", "codex"),
    ("OpenAI/Python", "openai-python"),
    ("Anthropic/Python", "anthropic-python"),
    ("OpenAI/JS", "openai-node"),
    ("Anthropic/JS", "anthropic-node"),
    ("curl/", "curl"),
)
_SESSION_HEADERS = ("x-aibridge-session-id", "x-claude-code-session-id", "session-id")
_OLD_CLAUDE_USER_ID = re.compile(r"_session_([0-9a-fA-F-]{36})$")


def client_of(headers: Mapping[str, str]) -> str:
    user_agent = headers.get("User-Agent", "")
    if headers.get("originator", "").startswith("codex_"):
        return "codex"
    for prefix, client in _USER_AGENTS:
        if user_agent.startswith(prefix):
            return client
    return "unknown"


def session_of(headers: Mapping[str, str], body: Any, client: str) -> str:
    """The session id from the headers, else from the body; "" when there is none that
    is short printable ASCII."""
    for name in _SESSION_HEADERS:
        if found := _valid(headers.get(name)):
            return found
    turn = _json_object(headers.get("x-codex-turn-metadata"))
    if found := _valid(turn.get("session_id")) or _valid(headers.get("thread-id")):
        return found
    if not isinstance(body, dict):
        return ""
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user_id, str):
        if found := _valid(_json_object(user_id).get("session_id")):
            return found
        if old := _OLD_CLAUDE_USER_ID.search(user_id):
            return old.group(1)
    # Only Codex's: another client's cache key may be shared by every call of an app.
    if client == "codex":
        return _valid(body.get("prompt_cache_key"))
    return ""


def _valid(value: Any) -> str:
    if isinstance(value, str) and 0 < len(value) <= MAX_NAME:
        if value.isascii() and value.isprintable():
            return value
    return ""


def _json_object(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text.startswith("{"):
        return {}
    try:
        value = orjson.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
