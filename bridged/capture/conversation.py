"""What a request adds to the conversation: the user's last prompt and the tool results
sent since the model's last turn.

Clients resend the whole history every turn. Only what follows the model's last turn is
new in this call: taking tool results from there records each once in a session, beside
the call that carried it to the model. The prompt is read from the same window: a call
that only answers tool calls has none (Anthropic's tool results come in a user message
without text, Chat's and Responses' in messages or items of their own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

Result = tuple[str, bool]  # (the tool call's id, whether it was an error)


class Shape(NamedTuple):
    """How one API writes a conversation."""

    model_turn: Callable[[dict[str, Any]], bool]
    user_text: Callable[[dict[str, Any]], str | None]  # None: not a user message
    results: Callable[[dict[str, Any]], list[Result]]


class LastTurn(NamedTuple):
    prompt: str | None
    results: list[Result]


def last_turn(route: str, body: dict[str, Any]) -> LastTurn:
    if route == "responses":
        items = body.get("input")
        if isinstance(items, str):
            return LastTurn(items, [])
        shape = RESPONSES
    else:
        items = body.get("messages")
        shape = MESSAGES if route == "messages" else CHAT
    if not isinstance(items, list):
        return LastTurn(None, [])
    prompt = None
    results: list[Result] = []
    for item in _since_model_turn(items, shape.model_turn):
        if isinstance(item, dict):
            text = shape.user_text(item)
            prompt = text if text is not None else prompt
            results += shape.results(item)
    return LastTurn(prompt, results)


def _since_model_turn(items: list[Any], model_turn: Callable[[dict[str, Any]], bool]) -> list[Any]:
    def by_model(item: Any) -> bool:
        return isinstance(item, dict) and model_turn(item)

    end = len(items)
    while end and by_model(items[end - 1]):
        end -= 1  # the start of the model's answer, written for it (Anthropic's prefill)
    start = end
    while start and not by_model(items[start - 1]):
        start -= 1
    return items[start:end]


def _texts(content: Any, kind: str) -> str:
    """A message's content: a string, or its parts of type `kind` joined by lines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(
        p["text"]
        for p in content
        if isinstance(p, dict) and p.get("type") == kind and isinstance(p.get("text"), str)
        and not _client_note(p["text"])
    )  # fmt: skip


def _client_note(text: str) -> bool:
    """A part the client added beside what the user typed: Claude Code puts its
    <system-reminder> notes (attribution rules, the date, …) in the user's message, where
    they would bury the prompt a reviewer is looking for."""
    text = text.strip()
    return text.startswith("<system-reminder>") and text.endswith("</system-reminder>")


def _assistant(item: dict[str, Any]) -> bool:
    return item.get("role") == "assistant"


def _user_text(item: dict[str, Any]) -> str | None:
    """A user message's text: Anthropic's and Chat Completions' messages alike."""
    return _texts(item.get("content"), "text") if item.get("role") == "user" else None


def _anthropic_results(item: dict[str, Any]) -> list[Result]:
    content = item.get("content")
    if item.get("role") != "user" or not isinstance(content, list):
        return []
    return [
        (b["tool_use_id"], b.get("is_error") is True)
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_result"
        and isinstance(b.get("tool_use_id"), str)
    ]  # fmt: skip


def _chat_results(item: dict[str, Any]) -> list[Result]:
    call_id = item.get("tool_call_id")
    return [(call_id, False)] if item.get("role") == "tool" and isinstance(call_id, str) else []


def _responses_model_turn(item: dict[str, Any]) -> bool:
    # The model's message, its reasoning, and its calls (function_call, custom_tool_call,
    # local_shell_call, …; not their outputs).
    kind = item.get("type")
    return (
        item.get("role") == "assistant"
        or kind == "reasoning"
        or (isinstance(kind, str) and kind.endswith("_call"))
    )


def _responses_text(item: dict[str, Any]) -> str | None:
    if item.get("role") != "user" or item.get("type", "message") != "message":
        return None
    return _texts(item.get("content"), "input_text")


def _responses_results(item: dict[str, Any]) -> list[Result]:
    kind, call_id = item.get("type"), item.get("call_id")
    if isinstance(kind, str) and kind.endswith("_call_output") and isinstance(call_id, str):
        return [(call_id, False)]
    return []


MESSAGES = Shape(_assistant, _user_text, _anthropic_results)
CHAT = Shape(_assistant, _user_text, _chat_results)
RESPONSES = Shape(_responses_model_turn, _responses_text, _responses_results)
