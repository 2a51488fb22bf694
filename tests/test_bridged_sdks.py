"""The official SDKs against bridged, as a user points them at it: the answers arrive
intact, streams pass through as they are produced, and the upstream sees the provider's
key (injected the provider's way) and never the gateway token."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mockupstream import ANTHROPIC_USAGE, OPENAI_USAGE, RESPONSES_USAGE, MockUpstream, Seen
from tests.harness import Bridged, Controlplane, unique

OPENAI_KEY = "sk-openai-provider-key-0001"
ANTHROPIC_KEY = "sk-ant-provider-key-0002"
BETA = "test-beta-1"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


@dataclass
class Gateway:
    """Two providers of the test's own behind bridged: "oai-…" (OpenAI) on upstream A,
    "ant-…" (Anthropic) on B, named in `providers` by kind ("oai", "ant"). Every request
    an SDK client made is kept in `sent`, as it left the client."""

    bridged: Bridged
    token: str
    providers: dict[str, str]
    openai_upstream: MockUpstream
    anthropic_upstream: MockUpstream
    # httpx2.Request: the SDKs' own flavour of httpx.
    sent: list[Any] = field(default_factory=list)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.provider_url('oai')}/v1", api_key=self.token,
            http_client=openai.DefaultHttpxClient(event_hooks={"request": [self.sent.append]}),
            timeout=15, max_retries=0,
        )  # fmt: skip

    def anthropic(
        self, api_key: str | None = None, auth_token: str | None = None
    ) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            api_key=api_key, auth_token=auth_token,
            base_url=self.provider_url("ant"), default_headers={"anthropic-beta": BETA},
            http_client=anthropic.DefaultHttpxClient(event_hooks={"request": [self.sent.append]}),
            timeout=15, max_retries=0,
        )  # fmt: skip

    def provider_url(self, kind: str) -> str:
        return self.bridged.provider_url(self.providers[kind])

    def assert_no_gateway_token(self, seen: list[Seen]) -> None:
        assert seen, "the upstream saw nothing"
        for s in seen:
            assert self.token not in repr(s.headers), s.headers
            assert self.token not in s.query
            assert self.token.encode() not in s.body

    def assert_openai_upstream_saw_its_key(self) -> None:
        seen = self.openai_upstream.seen
        self.assert_no_gateway_token(seen)
        for s in seen:
            assert s.headers["authorization"] == f"Bearer {OPENAI_KEY}"
            assert "x-api-key" not in s.headers

    def assert_anthropic_upstream_saw_its_key(self) -> None:
        seen = self.anthropic_upstream.seen
        self.assert_no_gateway_token(seen)
        for s in seen:
            assert s.headers["x-api-key"] == ANTHROPIC_KEY
            assert "authorization" not in s.headers

    def assert_bodies_forwarded_unchanged(self, seen: list[Seen]) -> None:
        """Sequential calls: the i-th request sent is the i-th the upstream saw."""
        assert [(s.method, s.path, s.body) for s in seen] == [
            (r.method, path_after_provider(r), r.content) for r in self.sent
        ]


def credential(headers: Any) -> str:
    """The caller's credential, whichever header carries it."""
    bearer = headers.get("authorization", "").removeprefix("Bearer ")
    return bearer or headers.get("x-api-key", "")


def path_after_provider(request: Any) -> str:
    """/api/v2/aibridge/{provider}/v1/… → /v1/…: the path the upstream should see."""
    rest = request.url.path.partition("/api/v2/aibridge/")[2]
    return rest[rest.index("/") :]


@pytest.fixture
def gateway(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    upstream_a: MockUpstream, upstream_b: MockUpstream, monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gateway]:  # fmt: skip
    """The module's controlplane and bridged (one of each per database), with providers
    and upstreams of the test's own."""
    for variable in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_CUSTOM_HEADERS",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(variable, raising=False)  # the SDKs would pick them up
    admin = shared_controlplane.admin
    providers = {"oai": unique("oai"), "ant": unique("ant")}
    admin.create_provider(providers["oai"], upstream_a.url + "/v1", keys=[OPENAI_KEY])
    last = admin.create_provider(
        providers["ant"], upstream_b.url, type="anthropic", keys=[ANTHROPIC_KEY]
    )
    admin.wait_applied(last.revision)
    yield Gateway(shared_bridged, shared_token, providers, upstream_a, upstream_b)


def test_openai_chat_completions_plain_and_streamed_with_usage(gateway: Gateway) -> None:
    client = gateway.openai()

    chat = client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert chat.choices[0].message.content == "hello from A"
    assert chat.usage is not None and chat.usage.prompt_tokens == OPENAI_USAGE["prompt_tokens"]

    stream = client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello from A"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens == OPENAI_USAGE["prompt_tokens"]
    assert last.usage.completion_tokens == OPENAI_USAGE["completion_tokens"]
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == OPENAI_USAGE["cached_tokens"]

    gateway.assert_openai_upstream_saw_its_key()
    gateway.assert_bodies_forwarded_unchanged(gateway.openai_upstream.seen)


def test_openai_responses_plain_and_streamed(gateway: Gateway) -> None:
    client = gateway.openai()

    response = client.responses.create(model="gpt-test", input="hi")
    assert response.output_text == "hello from A"

    events = list(client.responses.create(model="gpt-test", input="hi", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "hello from A"
    last = events[-1]
    assert last.type == "response.completed"
    completed = last.response
    assert completed.output_text == "hello from A"
    assert completed.usage is not None
    assert completed.usage.input_tokens == RESPONSES_USAGE["input_tokens"]
    assert completed.usage.output_tokens == RESPONSES_USAGE["output_tokens"]

    gateway.assert_openai_upstream_saw_its_key()
    gateway.assert_bodies_forwarded_unchanged(gateway.openai_upstream.seen)


def test_openai_models_list_passes_through(gateway: Gateway) -> None:
    assert [m.id for m in gateway.openai().models.list()] == ["model-A"]
    assert [(s.method, s.path) for s in gateway.openai_upstream.seen] == [("GET", "/v1/models")]
    gateway.assert_openai_upstream_saw_its_key()


def assert_anthropic_headers_unchanged(gateway: Gateway) -> None:
    """anthropic-version and anthropic-beta reached the upstream as the SDK sent them."""
    sent = [(r.headers["anthropic-version"], r.headers["anthropic-beta"]) for r in gateway.sent]
    seen = [
        (s.headers["anthropic-version"], s.headers["anthropic-beta"])
        for s in gateway.anthropic_upstream.seen
    ]
    assert seen == sent
    assert len(set(seen)) == 1 and seen[0][1] == BETA


def test_anthropic_messages_plain_and_streamed(gateway: Gateway) -> None:
    client = gateway.anthropic(api_key=gateway.token)

    message = client.messages.create(model="claude-test", max_tokens=10, messages=MESSAGES)
    assert message.content[0].type == "text" and message.content[0].text == "hello from B"
    assert message.usage.input_tokens == ANTHROPIC_USAGE["input_tokens"]

    with client.messages.stream(model="claude-test", max_tokens=10, messages=MESSAGES) as s:
        assert "".join(s.text_stream) == "hello from B"
        final = s.get_final_message()
    assert final.model == "claude-test-2026"
    assert final.usage.input_tokens == ANTHROPIC_USAGE["input_tokens"]
    assert final.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]
    assert final.usage.cache_read_input_tokens == ANTHROPIC_USAGE["cache_read"]
    assert final.usage.cache_creation_input_tokens == ANTHROPIC_USAGE["cache_write"]

    assert all(credential(r.headers) == gateway.token for r in gateway.sent)
    gateway.assert_anthropic_upstream_saw_its_key()
    assert_anthropic_headers_unchanged(gateway)
    gateway.assert_bodies_forwarded_unchanged(gateway.anthropic_upstream.seen)


def test_anthropic_count_tokens_passes_through(gateway: Gateway) -> None:
    client = gateway.anthropic(api_key=gateway.token)
    counted = client.messages.count_tokens(model="claude-test", messages=MESSAGES)
    assert counted.input_tokens == 10
    assert [s.path for s in gateway.anthropic_upstream.seen] == ["/v1/messages/count_tokens"]
    gateway.assert_anthropic_upstream_saw_its_key()
    assert_anthropic_headers_unchanged(gateway)
    gateway.assert_bodies_forwarded_unchanged(gateway.anthropic_upstream.seen)


def test_anthropic_auth_token_as_claude_code_sends_it(gateway: Gateway) -> None:
    # ANTHROPIC_AUTH_TOKEN: the token travels as a bearer, and there is no x-api-key.
    # (The installed SDK sends api_key as a bearer too; x-api-key is covered with httpx
    # in test_streamed_responses_tell_proxies_not_to_buffer.)
    client = gateway.anthropic(auth_token=gateway.token)

    message = client.messages.create(model="claude-test", max_tokens=10, messages=MESSAGES)
    assert message.content[0].type == "text" and message.content[0].text == "hello from B"
    with client.messages.stream(model="claude-test", max_tokens=10, messages=MESSAGES) as s:
        assert "".join(s.text_stream) == "hello from B"
    counted = client.messages.count_tokens(model="claude-test", messages=MESSAGES)
    assert counted.input_tokens == 10

    for request in gateway.sent:
        assert request.headers["authorization"] == f"Bearer {gateway.token}"
        assert "x-api-key" not in request.headers
    gateway.assert_anthropic_upstream_saw_its_key()  # bearer stripped, provider key injected
    assert_anthropic_headers_unchanged(gateway)


# name → (provider kind, path, body, the caller's credential header, how the stream ends)
STREAMS = {
    "chat": ("oai", "/v1/chat/completions", {"model": "m", "messages": [], "stream": True},
             "authorization", b"data: [DONE]"),
    "responses": ("oai", "/v1/responses", {"model": "m", "input": "hi", "stream": True},
                  "authorization", b'data: {"type": "response.completed"'),
    # x-api-key, as curl users and older SDKs send it
    "messages": ("ant", "/v1/messages",
                 {"model": "m", "max_tokens": 5, "messages": MESSAGES, "stream": True},
                 "x-api-key", b'data: {"type": "message_stop"}'),
}  # fmt: skip


def test_streamed_responses_tell_proxies_not_to_buffer(gateway: Gateway) -> None:
    for name, (provider, path, body, header, end) in STREAMS.items():
        value = f"Bearer {gateway.token}" if header == "authorization" else gateway.token
        with httpx.stream(
            "POST", gateway.provider_url(provider) + path, json=body, timeout=15,
            headers={header: value, "anthropic-version": "2023-06-01"},
        ) as response:  # fmt: skip
            response.read()
        assert response.status_code == 200, (name, response.text)
        assert response.headers["content-type"].startswith("text/event-stream"), name
        assert response.headers["cache-control"] == "no-cache", name
        assert response.headers["x-accel-buffering"] == "no", name
        assert response.content.rstrip().rsplit(b"\n", 1)[-1].startswith(end), name
    gateway.assert_openai_upstream_saw_its_key()
    gateway.assert_anthropic_upstream_saw_its_key()
    assert gateway.anthropic_upstream.seen[0].headers["anthropic-version"] == "2023-06-01"


def test_stream_chunks_are_forwarded_as_they_arrive(gateway: Gateway) -> None:
    """The upstream sends one event and then waits: the client already has that event."""
    upstream_a, upstream_b = gateway.openai_upstream, gateway.anthropic_upstream

    upstream_a.hold = threading.Event()
    try:
        stream = gateway.openai().chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = iter(stream)
        first = next(chunks)  # a buffering gateway would time out here
        assert first.choices[0].delta.content == "hello "
        assert not upstream_a.hold.is_set()
        upstream_a.hold.set()
        rest = list(chunks)
        text = "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
        assert "hello " + text == "hello from A"
        assert rest[-1].usage is not None
    finally:
        upstream_a.hold.set()

    upstream_b.hold = threading.Event()
    try:
        client = gateway.anthropic(api_key=gateway.token)
        with client.messages.stream(model="claude-test", max_tokens=10, messages=MESSAGES) as s:
            events = iter(s)
            assert next(events).type == "message_start"
            assert not upstream_b.hold.is_set()
            upstream_b.hold.set()
            assert "".join(s.text_stream) == "hello from B"
    finally:
        upstream_b.hold.set()
