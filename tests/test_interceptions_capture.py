"""What bridged records of each intercepted call, with real SDKs through a real bridged:
given an upstream whose answers call tools (in many small SSE events), when an agent
calls, then its record holds the client, the session, the last prompt, the tool calls
the client assembled and the tool results it sent, in the order of its turns. Bad input
never changes the client's answer; it marks the record partial.

Records are read from the controlplane's database, read-only. The module's tests share a
controlplane and bridged (per database): each has providers of its own, and asks for
models (and names sessions) no other test does."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from controlplane.store.models import Interception
from mockupstream import MockUpstream
from mockupstream.replies import TOOL_CALLS
from mockupstream.server import MALFORMED_EVENT
from tests.harness import Bridged, Controlplane, free_port, stored_records, unique, wait_until

OPENAI_KEY = "sk-openai-provider-key-0001"
ANTHROPIC_KEY = "sk-ant-provider-key-0002"
SESSION = "0f5d2c9e-7b1a-4e3f-8c6d-9a8b7c6d5e4f"

# Typed Any: the SDKs' parameter types are for their own models and tools.
CHAT_TOOLS: Any = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name, _ in TOOL_CALLS
]
RESPONSES_TOOLS: Any = [
    {"type": "function", "name": name, "parameters": {"type": "object"}} for name, _ in TOOL_CALLS
]
ANTHROPIC_TOOLS: Any = [
    {"name": name, "input_schema": {"type": "object"}} for name, _ in TOOL_CALLS
]

Calls = list[tuple[str, str, Any]]  # (id, name, arguments parsed)


@dataclass
class Gateway:
    """bridged with the test's providers, named in `providers` by kind: "oai" (OpenAI)
    and "ant" (Anthropic)."""

    bridged: Bridged
    token: str
    controlplane: Controlplane
    providers: dict[str, str]

    def provider_url(self, kind: str) -> str:
        return self.bridged.provider_url(self.providers[kind])

    def openai(self, headers: dict[str, str] | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.provider_url('oai')}/v1", api_key=self.token,
            default_headers=headers, timeout=15, max_retries=0,
        )  # fmt: skip

    def anthropic(self, headers: dict[str, str] | None = None) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.provider_url("ant"), api_key=self.token,
            default_headers=headers, timeout=15, max_retries=0,
        )  # fmt: skip

    def record(self, model: str) -> Interception:
        """The one record of the call that asked for `model` (the upstream answers with
        "<model>-2026"), once it arrived."""

        def arrived() -> Interception | None:
            found = [r for r in stored_records(self.controlplane) if r.model == f"{model}-2026"]
            assert len(found) <= 1, found
            return found[0] if found else None

        found: Interception = wait_until(arrived, what=f"the record of {model}")
        return found

    def records(self, session: str, count: int) -> list[Interception]:
        """The session's `count` records, in the order they started."""

        def arrived() -> list[Interception] | None:
            found = [r for r in stored_records(self.controlplane) if r.session_id == session]
            return found if len(found) >= count else None

        found: list[Interception] = wait_until(arrived, what=f"{count} records of {session}")
        assert len(found) == count
        return sorted(found, key=lambda r: r.started_at)


@pytest.fixture
def gateway(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    upstream_a: MockUpstream,
) -> Gateway:  # fmt: skip
    cp = shared_controlplane
    providers = {"oai": unique("oai"), "ant": unique("ant")}
    cp.admin.create_provider(providers["oai"], upstream_a.url + "/v1", keys=[OPENAI_KEY])
    last = cp.admin.create_provider(
        providers["ant"], upstream_a.url, type="anthropic", keys=[ANTHROPIC_KEY]
    )
    cp.admin.wait_applied(last.revision)
    return Gateway(shared_bridged, shared_token, cp, providers)


def recorded_calls(record: Interception) -> Calls:
    return [(c["id"], c["name"], json.loads(c["arguments"])) for c in json.loads(record.tool_calls)]


def recorded_results(record: Interception) -> list[tuple[str, bool]]:
    return [(r["tool_call_id"], r.get("is_error", False)) for r in json.loads(record.tool_results)]


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


# Each makes one call through the SDK, asking for `model`; returns the tool calls as the
# SDK assembled them, and their arguments as it holds them (JSON text, or a dict).


def chat(g: Gateway, model: str) -> tuple[Calls, list[Any]]:
    completion = g.openai().chat.completions.create(
        model=model, messages=user("weather?"), tools=CHAT_TOOLS,
    )  # fmt: skip
    return _chat_calls(completion.choices[0].message.tool_calls)


def chat_stream(g: Gateway, model: str) -> tuple[Calls, list[Any]]:
    with g.openai().chat.completions.stream(
        model=model, messages=user("weather?"), tools=CHAT_TOOLS,
        stream_options={"include_usage": True},
    ) as stream:  # fmt: skip
        completion = stream.get_final_completion()
    return _chat_calls(completion.choices[0].message.tool_calls)


def _chat_calls(tool_calls: Any) -> tuple[Calls, list[Any]]:
    calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in tool_calls]
    return calls, [c.function.arguments for c in tool_calls]


def responses(g: Gateway, model: str) -> tuple[Calls, list[Any]]:
    response = g.openai().responses.create(
        model=model,
        input="weather?",
        tools=RESPONSES_TOOLS,
    )
    return _responses_calls(response.output)


def responses_stream(g: Gateway, model: str) -> tuple[Calls, list[Any]]:
    with g.openai().responses.stream(
        model=model,
        input="weather?",
        tools=RESPONSES_TOOLS,
    ) as stream:
        response = stream.get_final_response()
    return _responses_calls(response.output)


def _responses_calls(output: Any) -> tuple[Calls, list[Any]]:
    items = [i for i in output if i.type == "function_call"]
    return [(i.call_id, i.name, json.loads(i.arguments)) for i in items], [
        i.arguments for i in items
    ]


def messages(g: Gateway, model: str) -> tuple[Calls, list[Any]]:
    message = g.anthropic().messages.create(
        model=model, max_tokens=100, messages=user("weather?"),
        tools=ANTHROPIC_TOOLS,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )  # fmt: skip
    return _anthropic_calls(message.content)


def messages_stream(g: Gateway, model: str) -> tuple[Calls, list[Any]]:
    with g.anthropic().messages.stream(
        model=model, max_tokens=100, messages=user("weather?"),
        tools=ANTHROPIC_TOOLS,
        thinking={"type": "enabled", "budget_tokens": 1024},
    ) as stream:  # fmt: skip
        message = stream.get_final_message()
    return _anthropic_calls(message.content)


def _anthropic_calls(content: Any) -> tuple[Calls, list[Any]]:
    blocks = [b for b in content if b.type == "tool_use"]
    return [(b.id, b.name, b.input) for b in blocks], [b.input for b in blocks]


# case → (how the SDK calls, the client, the stop reason recorded)
SDK_CALLS: dict[str, tuple[Callable[[Gateway, str], tuple[Calls, list[Any]]], str, str]] = {
    "chat": (chat, "openai-python", "tool_calls"),
    "chat-stream": (chat_stream, "openai-python", "tool_calls"),
    "responses": (responses, "openai-python", "completed"),
    "responses-stream": (responses_stream, "openai-python", "completed"),
    "messages": (messages, "anthropic-python", "tool_use"),
    "messages-stream": (messages_stream, "anthropic-python", "tool_use"),
}


def test_recorded_tool_calls_equal_what_the_sdk_assembled(gateway: Gateway) -> None:
    assembled = {case: how(gateway, case) for case, (how, _client, _stop) in SDK_CALLS.items()}

    for case, (_how, client, stop_reason) in SDK_CALLS.items():
        calls, arguments = assembled[case]
        assert [(name, args) for _id, name, args in calls] == list(TOOL_CALLS), case
        record = gateway.record(case)
        assert recorded_calls(record) == calls, case
        if not case.startswith("messages"):  # the SDK keeps OpenAI's arguments as text
            assert [c["arguments"] for c in json.loads(record.tool_calls)] == arguments
        assert record.tool_call_count == 2
        assert (record.client, record.stop_reason, record.prompt) == (
            client, stop_reason, "weather?"
        ), case  # fmt: skip
        assert record.reasoning == ""  # asked for, not recorded: the setting is off
        assert not record.partial and not record.error_message, case


def test_an_agent_loop_is_recorded_as_one_session_in_order(
    gateway: Gateway, upstream_a: MockUpstream
) -> None:
    """Claude Code's way (Anthropic, its session header) and Codex's (Responses, its
    session-id header): a prompt, the model's tool calls, their results, its answer."""
    claude = gateway.anthropic(
        {"User-Agent": "claude-cli/2.1.12 (external, cli)", "x-claude-code-session-id": SESSION}
    )
    history: list[Any] = user("weather and notes?")
    first = claude.messages.create(
        model="claude-loop", max_tokens=100, messages=history, tools=ANTHROPIC_TOOLS,
    )  # fmt: skip
    uses = [b for b in first.content if b.type == "tool_use"]
    history += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny"},
            {"type": "tool_result", "tool_use_id": uses[1].id, "content": "no such file",
             "is_error": True},
        ]},
    ]  # fmt: skip
    second = claude.messages.create(
        model="claude-loop", max_tokens=100, messages=history, tools=ANTHROPIC_TOOLS,
    )  # fmt: skip
    assert second.stop_reason == "end_turn"
    history += [{"role": "assistant", "content": "done"}, *user("now the next one")]
    claude.messages.create(
        model="claude-loop", max_tokens=100, messages=history, tools=ANTHROPIC_TOOLS,
    )  # fmt: skip

    turns = gateway.records(SESSION, 3)
    assert [(r.client, r.prompt, r.stop_reason) for r in turns] == [
        ("claude-code", "weather and notes?", "tool_use"),
        ("claude-code", "", "end_turn"),  # it only answered the tool calls
        ("claude-code", "now the next one", "tool_use"),
    ]
    assert recorded_calls(turns[0]) == [(b.id, b.name, b.input) for b in uses]
    assert recorded_calls(turns[1]) == []
    assert [recorded_results(r) for r in turns] == [
        [], [(uses[0].id, False), (uses[1].id, True)], []
    ]  # fmt: skip

    codex_session = "codex-thread-0001"
    codex = gateway.openai({"User-Agent": "codex_exec/0.171.0 (Ubuntu 24.4.0; x86_64)",
                            "originator": "codex_exec", "session-id": codex_session})  # fmt: skip
    items: list[Any] = [{"type": "message", "role": "user", "content": "fix it"}]
    made = codex.responses.create(model="codex-loop", input=items, tools=RESPONSES_TOOLS)
    items += [o.model_dump(exclude_none=True) for o in made.output]
    items += [{"type": "function_call_output", "call_id": o.call_id, "output": "ok"}
              for o in made.output if o.type == "function_call"]  # fmt: skip
    codex.responses.create(model="codex-loop", input=items, tools=RESPONSES_TOOLS)

    first_turn, second_turn = gateway.records(codex_session, 2)
    assert (first_turn.client, first_turn.prompt) == ("codex", "fix it")
    assert [c[0] for c in recorded_calls(first_turn)] == ["call_1", "call_2"]
    assert (second_turn.prompt, recorded_results(second_turn)) == (
        "", [("call_1", False), ("call_2", False)]
    )  # fmt: skip
    # The gateway's own session header, were it sent, stays in the gateway.
    assert all("x-aibridge-session-id" not in s.headers for s in upstream_a.seen)


def test_the_gateway_session_header_names_a_session_and_is_not_forwarded(
    gateway: Gateway, upstream_a: MockUpstream
) -> None:
    client = gateway.openai({"x-aibridge-session-id": "my-app-run-7"})
    client.chat.completions.create(model="named", messages=user("hi"))
    record = gateway.record("named")
    assert (record.session_id, record.client, record.prompt) == (
        "my-app-run-7",
        "openai-python",
        "hi",
    )
    assert "x-aibridge-session-id" not in upstream_a.seen[-1].headers


def raw_call(
    g: Gateway, kind: str, path: str, body: bytes, user_agent: bytes = b"curl/8.5.0"
) -> httpx.Response:
    return httpx.post(
        g.provider_url(kind) + path, content=body, timeout=15,
        headers={b"Authorization": f"Bearer {g.token}".encode(),
                 b"Content-Type": b"application/json", b"User-Agent": user_agent,
                 b"anthropic-version": b"2023-06-01"},
    )  # fmt: skip


def test_a_prompt_not_utf8_or_with_lone_surrogates_is_answered_and_recorded_partial(
    gateway: Gateway, upstream_a: MockUpstream
) -> None:
    bad_utf8 = b'{"model": "bad-utf8", "messages": [{"role": "user", "content": "caf\xe9!"}]}'
    answered = raw_call(gateway, "oai", "/v1/chat/completions", bad_utf8)
    assert answered.status_code == 200 and "hello from A" in answered.text
    assert upstream_a.seen[-1].body == bad_utf8  # forwarded as it came
    surrogates = b'{"model": "surrogates", "max_tokens": 5, "messages": [{"role": "user", ' \
                 b'"content": "half \\ud83e a llama"}]}'  # fmt: skip
    answered = raw_call(gateway, "ant", "/v1/messages", surrogates)
    assert answered.status_code == 200 and "hello from A" in answered.text

    record = gateway.record("bad-utf8")
    assert (record.prompt, record.partial, record.client) == ("caf\ufffd!", True, "curl")
    record = gateway.record("surrogates")
    assert (record.prompt, record.partial) == ("half \ufffd a llama", True)


def test_nul_and_bytes_not_utf8_in_the_model_and_user_agent_become_replacement_characters(
    gateway: Gateway,
) -> None:
    """As in every recorded text (common/text.py): the model the upstream names and the
    client's User-Agent are stored with U+FFFD where they held NUL or bytes not UTF-8."""
    body = b'{"model": "nul\\u0000", "max_tokens": 5, "messages": [{"role": "user", ' \
           b'"content": "hi"}]}'  # fmt: skip
    answered = raw_call(gateway, "ant", "/v1/messages", body, user_agent=b"curl/8 \xff")
    assert answered.status_code == 200 and "hello from A" in answered.text
    record = gateway.record("nul\ufffd")
    assert (record.model, record.user_agent) == ("nul\ufffd-2026", "curl/8 \ufffd")


def test_huge_arguments_reach_the_client_whole_and_are_recorded_cut(
    gateway: Gateway, upstream_a: MockUpstream
) -> None:
    huge = {"content": "é" * 40_000}  # 80,000 bytes: past the 32 KiB a text keeps
    upstream_a.tool_calls = (("write_file", huge), TOOL_CALLS[1])
    with gateway.openai().chat.completions.stream(
        model="huge", messages=user("write"), tools=CHAT_TOOLS,
    ) as stream:  # fmt: skip
        completion = stream.get_final_completion()
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and json.loads(calls[0].function.arguments) == huge

    record = gateway.record("huge")
    first, second = json.loads(record.tool_calls)
    assert first["arguments_truncated"] and record.partial
    assert calls[0].function.arguments.startswith(first["arguments"])
    assert 32 * 1024 - 2 <= len(first["arguments"].encode()) <= 32 * 1024
    assert "arguments_truncated" not in second


@pytest.fixture
def malformed_upstream() -> Iterator[MockUpstream]:
    upstream = MockUpstream("M", malformed_sse=True).start()
    yield upstream
    upstream.stop()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": user("x"), "tools": CHAT_TOOLS,
                                  "stream": True}),
        ("/v1/responses", {"input": "x", "tools": RESPONSES_TOOLS, "stream": True}),
        ("/v1/messages", {"messages": user("x"), "tools": ANTHROPIC_TOOLS, "max_tokens": 5,
                          "stream": True}),
    ],
    ids=["chat", "responses", "messages"],
)  # fmt: skip
def test_a_malformed_stream_reaches_the_client_byte_for_byte_and_is_recorded_partial(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    malformed_upstream: MockUpstream, path: str, body: dict[str, Any],
) -> None:  # fmt: skip
    cp, bridged, token, broken = shared_controlplane, shared_bridged, shared_token, unique("broken")
    kind = "anthropic" if path == "/v1/messages" else "openai"
    root = malformed_upstream.url + ("" if kind == "anthropic" else "/v1")
    last = cp.admin.create_provider(broken, root, type=kind, keys=[OPENAI_KEY])
    cp.admin.wait_applied(last.revision)
    g = Gateway(bridged, token, cp, {})
    model = f"malformed-{kind}-{path.rsplit('/', 1)[-1]}"
    with httpx.stream(
        "POST", bridged.provider_url(broken) + path, json={"model": model, **body}, timeout=15,
        headers={"Authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"},
    ) as answered:  # fmt: skip
        received = b"".join(answered.iter_raw())
    assert answered.status_code == 200
    assert received == malformed_upstream.streamed[-1]  # exactly the upstream's bytes
    assert MALFORMED_EVENT in received

    record = g.record(model)
    assert record.partial and record.status == 200
    assert [(name, args) for _id, name, args in recorded_calls(record)] == list(TOOL_CALLS)


def test_error_messages_come_from_the_upstream_or_from_the_gateway(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    upstream_a: MockUpstream,
) -> None:  # fmt: skip
    cp, bridged, token = shared_controlplane, shared_bridged, shared_token
    refusing, gone = unique("refusing"), unique("gone")
    upstream_a.key_status["sk-refused"] = 400
    cp.admin.create_provider(refusing, upstream_a.url + "/v1", keys=["sk-refused"])
    last = cp.admin.create_provider(gone, f"http://127.0.0.1:{free_port()}/v1", keys=[OPENAI_KEY])
    cp.admin.wait_applied(last.revision)
    for provider, model in ((refusing, "refused"), (gone, "unreachable")):
        answered = httpx.post(
            f"{bridged.provider_url(provider)}/v1/chat/completions", timeout=15,
            json={"model": model, "messages": user("hi")},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert answered.status_code in (400, 502)

    def by_request_model(model: str) -> Interception:
        found: Interception = wait_until(
            lambda: next((r for r in stored_records(cp) if r.model == model), None),
            what=f"the record of {model}",
        )
        return found

    refused = by_request_model("refused")
    assert (refused.status, refused.error_message) == (400, "key says 400")
    unreachable = by_request_model("unreachable")
    assert (unreachable.status, unreachable.error_message) == (502, "the provider is unreachable")
    assert not refused.partial and not unreachable.partial
