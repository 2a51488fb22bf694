"""Which client headers reach the upstream: an allowlist of what the real clients need,
so that no caller can change what the provider's key does for every other caller. The
module's tests share a controlplane and bridged (per database), each with a provider of
its own."""

from __future__ import annotations

import http.client

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream
from tests.harness import Bridged, Controlplane, unique

KEY1 = "sk-headers-first-key-0000000001"
KEY2 = "sk-headers-second-key-000000002"
BODY = b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}'
ALLOWED = {
    "accept": "application/json",
    "content-type": "application/json",
    "user-agent": "claude-cli/2.1.332 (external, sdk-cli)",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219",
    "openai-beta": "responses=experimental",
    "x-stainless-retry-count": "0",
    "x-stainless-os": "Linux",
    "x-codex-turn-metadata": '{"turn_id": "t1"}',
    "x-claude-code-session-id": "bed8b0ce-ca3d-40f3-a824-6d0be0df87f5",
    "session-id": "01a22dd0-74af-7db2-a704-3a46c8fb76f1",
    "originator": "codex_exec",
    # Tracing off (no --otel-endpoint), the caller's trace context passes as it came.
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tracestate": "caller=kept",
    "baggage": "team=headers",
    "idempotency-key": "retry-1",
}
REFUSED = {
    "openai-organization": "org-someone-else",
    "openai-project": "proj_someone_else",
    "x_api_key": "sk-smuggled-under-an-underscore",
    "x-forwarded-for": "10.0.0.1",
    "x-forwarded-host": "internal.example",
    "forwarded": "for=10.0.0.1",
    "x-real-ip": "10.0.0.1",
    "cookie": "session=1",
    "x-custom": "anything else",
}


def post(bridged: Bridged, provider: str, token: str, headers: list[tuple[str, str]]) -> int:
    """A raw request, so that every header goes on the wire exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", bridged.port, timeout=30)
    try:
        conn.putrequest("POST", f"/api/v2/aibridge/{provider}/v1/chat/completions",
                        skip_accept_encoding=True)  # fmt: skip
        for name, value in [("Authorization", f"Bearer {token}"), *headers,
                            ("Content-Length", str(len(BODY)))]:  # fmt: skip
            conn.putheader(name, value)
        conn.endheaders(BODY)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_only_allowlisted_headers_reach_the_upstream(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    upstream_a: MockUpstream,
) -> None:  # fmt: skip
    admin, bridged, token = shared_controlplane.admin, shared_bridged, shared_token
    llm = unique("llm")
    admin.wait_applied(admin.create_provider(llm, upstream_a.url + "/v1", keys=[KEY1]).revision)

    # Headers the Connection header names are that hop's: dropped, even allowlisted ones.
    hop = [("Connection", "keep-alive, Anthropic-Beta"), ("Connection", "X-Stainless-OS")]
    assert post(bridged, llm, token, [*ALLOWED.items(), *REFUSED.items(), *hop]) == 200
    seen = upstream_a.seen[-1].headers
    expected = {k: v for k, v in ALLOWED.items() if k not in ("anthropic-beta", "x-stainless-os")}
    assert {k: v for k, v in seen.items() if k in ALLOWED} == expected
    assert not set(REFUSED) & set(seen), seen
    assert set(seen) - set(ALLOWED) == {
        "authorization", "host", "content-length", "accept-encoding",
    }, seen  # fmt: skip
    assert seen["authorization"] == f"Bearer {KEY1}"
    assert seen["accept-encoding"] == "identity"  # usage is read from the bytes

    # A header given twice reaches the upstream twice, in order.
    betas = [("anthropic-beta", "one"), ("anthropic-beta", "two")]
    assert post(bridged, llm, token, betas) == 200
    assert [v for k, v in upstream_a.seen[-1].header_list if k == "anthropic-beta"] == [
        "one", "two",
    ]  # fmt: skip


def test_a_caller_cannot_take_the_keys_away_from_everyone(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    upstream_a: MockUpstream,
) -> None:  # fmt: skip
    """OpenAI answers 401 to an OpenAI-Organization its key does not belong to. When that
    header passed, one crafted request took every key out until the next admin change."""
    admin, bridged, token = shared_controlplane.admin, shared_bridged, shared_token
    llm = unique("llm")
    created = admin.create_provider(llm, upstream_a.url + "/v1", keys=[KEY1, KEY2])
    admin.wait_applied(created.revision)
    upstream_a.header_status.update({"openai-organization": 401, "openai-project": 401})

    crafted = [("OpenAI-Organization", "org-someone-else"), ("OpenAI-Project", "proj_x")]
    for _ in range(3):
        assert post(bridged, llm, token, crafted) == 200
    assert post(bridged, llm, token, []) == 200
    assert [s.key for s in upstream_a.seen] == [KEY1] * 4
    listing = admin.ListProviders(admin_pb2.ListProvidersRequest())
    assert [len(p.keys) for p in listing.providers if p.name == llm] == [2]
