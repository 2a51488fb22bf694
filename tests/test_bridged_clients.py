"""The official SDKs against bridged, and the usage recorded for what they did."""

from __future__ import annotations

import threading

import anthropic
import httpx
import openai

from aibridge.v1 import admin_pb2
from tests.harness import Bridged, Controlplane, wait_until
from tests.upstream import ANTHROPIC_USAGE, OPENAI_USAGE, RESPONSES_USAGE, FakeUpstream

OPENAI_KEY = "sk-openai-provider-key-0001"
ANTHROPIC_KEY = "sk-ant-provider-key-0002"


def providers(cp: Controlplane, upstream: FakeUpstream) -> None:
    cp.admin.create_provider("oai", upstream.url + "/v1", keys=[OPENAI_KEY])
    last = cp.admin.create_provider("ant", upstream.url, type="anthropic", keys=[ANTHROPIC_KEY])
    cp.admin.wait_applied(last.revision)


def usage_by_model(cp: Controlplane) -> dict[str, admin_pb2.UsageRow]:
    rows = cp.admin.QueryUsage(admin_pb2.QueryUsageRequest(group_by="model")).rows
    return {r.key: r for r in rows}


def test_sdks_work_and_usage_matches_what_the_upstream_reported(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: FakeUpstream
) -> None:
    providers(controlplane, upstream_a)
    oai = openai.OpenAI(base_url=f"{bridged.provider_url('oai')}/v1", api_key=token)
    messages = [{"role": "user", "content": "hi"}]

    chat = oai.chat.completions.create(model="chat-model", messages=messages)
    assert chat.choices[0].message.content == "hello from A"
    stream = oai.chat.completions.create(
        model="chat-model", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello from A"
    assert chunks[-1].usage.prompt_tokens == OPENAI_USAGE["prompt_tokens"]

    response = oai.responses.create(model="resp-model", input="hi")
    assert response.output_text == "hello from A"
    events = list(oai.responses.create(model="resp-model", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    assert [m.id for m in oai.models.list()] == ["model-A"]

    ant = anthropic.Anthropic(
        base_url=bridged.provider_url("ant"), api_key=token,
        default_headers={"anthropic-beta": "test-beta-1"},
    )  # fmt: skip
    message = ant.messages.create(model="claude-model", max_tokens=10, messages=messages)
    assert message.content[0].text == "hello from A"
    with ant.messages.stream(model="claude-model", max_tokens=10, messages=messages) as s:
        assert "".join(s.text_stream) == "hello from A"
        assert s.get_final_message().usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]
    counted = ant.messages.count_tokens(model="claude-model", messages=messages)
    assert counted.input_tokens == 10
    # Claude Code's way: ANTHROPIC_AUTH_TOKEN sends the token as a bearer.
    bearer = anthropic.Anthropic(base_url=bridged.provider_url("ant"), auth_token=token)
    assert bearer.messages.create(model="claude-model", max_tokens=5, messages=messages).id

    # The upstream saw each provider's key its way, never the gateway token.
    for seen in upstream_a.seen:
        assert token not in repr(seen.headers) and token.encode() not in seen.body
        if seen.path.startswith("/v1/messages"):
            assert seen.headers["x-api-key"] == ANTHROPIC_KEY
            assert "authorization" not in seen.headers
            assert seen.headers["anthropic-version"]
        else:
            assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert any(s.headers.get("anthropic-beta") == "test-beta-1" for s in upstream_a.seen)

    # Usage: exactly what the upstream reported, for the intercepted calls only.
    expected = {
        "chat-model-2026": (2, 2 * OPENAI_USAGE["prompt_tokens"],
                            2 * OPENAI_USAGE["completion_tokens"],
                            2 * OPENAI_USAGE["cached_tokens"], 0),
        "resp-model-2026": (2, 2 * RESPONSES_USAGE["input_tokens"],
                            2 * RESPONSES_USAGE["output_tokens"],
                            2 * RESPONSES_USAGE["cached_tokens"], 0),
        "claude-model-2026": (3, 3 * ANTHROPIC_USAGE["input_tokens"],
                              3 * ANTHROPIC_USAGE["output_tokens"],
                              3 * ANTHROPIC_USAGE["cache_read"],
                              3 * ANTHROPIC_USAGE["cache_write"]),
    }  # fmt: skip

    def recorded() -> dict[str, tuple[int, ...]]:
        return {
            k: (r.requests, r.input_tokens, r.output_tokens, r.cache_read_tokens,
                r.cache_write_tokens)
            for k, r in usage_by_model(controlplane).items()
        }  # fmt: skip

    wait_until(lambda: recorded() == expected, what=f"usage {expected}")
    by_token = controlplane.admin.QueryUsage(admin_pb2.QueryUsageRequest(group_by="token")).rows
    assert [(r.key, r.requests) for r in by_token] == [("tester", 7)]


def test_streams_are_forwarded_as_they_arrive(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: FakeUpstream
) -> None:
    providers(controlplane, upstream_a)
    upstream_a.hold = threading.Event()  # the upstream sends one event, then waits
    try:
        with httpx.stream(
            "POST", f"{bridged.provider_url('oai')}/v1/chat/completions",
            headers={"Authorization": f"Bearer {token}"},
            json={"model": "m", "messages": [], "stream": True}, timeout=30,
        ) as response:  # fmt: skip
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            assert response.headers["content-type"].startswith("text/event-stream")
            chunks = response.iter_raw()
            first = next(chunks)
            assert b'"content": "hello "' in first  # arrived while the upstream is held
            assert not upstream_a.hold.is_set()
            upstream_a.hold.set()
            rest = b"".join(chunks)
        assert rest.rstrip().endswith(b"data: [DONE]")
    finally:
        upstream_a.hold.set()
