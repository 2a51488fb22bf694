"""Key failover through bridged: 429 rests a key for the upstream's Retry-After, 401 for a
cooldown that doubles while it keeps failing, 403 fails over for that request only; the
retried request is byte-identical, and a call is recorded once. The module's tests share a
controlplane and bridged (per database), each with providers and an upstream of its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mockupstream import MockUpstream
from tests.harness import Bridged, Controlplane, unique, usage_requests, wait_until

KEY1 = "sk-failover-first-key-000000000001"
KEY2 = "sk-failover-second-key-00000000002"
KEY3 = "sk-failover-third-key-000000000003"
KEY4 = "sk-failover-fourth-key-00000000004"
KEY5 = "sk-failover-fifth-key-000000000005"
KEY6 = "sk-failover-sixth-key-000000000006"
# Unusual spacing and key order: a re-encoded body would differ from what the client sent.
BODY = b'{"messages":[{"role":"user","content":"hi"}],  "model":"gpt",\n"temperature":0.5}'


def chat(bridged: Bridged, provider: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{bridged.provider_url(provider)}/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        content=BODY,
        timeout=30,
    )


def messages(bridged: Bridged, provider: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{bridged.provider_url(provider)}/v1/messages",
        headers={"x-api-key": token, "anthropic-version": "2023-06-01"},
        json={"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def failovers(bridged: Bridged, provider: str, reason: str) -> float:
    for family in text_string_to_metric_families(bridged.metrics()):
        for sample in family.samples:
            if sample.name == "aibridge_bridged_key_failovers_total" and sample.labels == {
                "provider": provider,
                "reason": reason,
            }:
                return sample.value
    return 0.0


def keys_seen(upstream: MockUpstream, start: int = 0) -> list[str]:
    return [seen.key for seen in upstream.seen[start:]]


def test_rate_limited_key_fails_over_to_the_next_and_rests(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    upstream_a: MockUpstream,
) -> None:  # fmt: skip
    cp, bridged, token, llm = shared_controlplane, shared_bridged, shared_token, unique("llm")
    created = cp.admin.create_provider(llm, upstream_a.url + "/v1", keys=[KEY1, KEY2])
    cp.admin.wait_applied(created.revision)
    upstream_a.key_status[KEY1] = 429

    ok = chat(bridged, llm, token)
    assert ok.status_code == 200, ok.text
    assert ok.json()["choices"][0]["message"]["content"] == "hello from A"
    assert keys_seen(upstream_a) == [KEY1, KEY2]
    first, second = upstream_a.seen
    assert first.body == second.body == BODY  # replayed byte for byte
    assert first.path == second.path == "/v1/chat/completions"
    assert failovers(bridged, llm, "rate_limited") == 1
    # The failed attempt is not a call of its own: one usage record.
    wait_until(lambda: usage_requests(cp, llm) >= 1, 15, "the usage record")
    assert usage_requests(cp, llm) == 1

    # KEY1 rests for the upstream's Retry-After (30s): the next call goes straight to KEY2.
    again = chat(bridged, llm, token)
    assert again.status_code == 200, again.text
    assert keys_seen(upstream_a, 2) == [KEY2]
    assert failovers(bridged, llm, "rate_limited") == 1
    wait_until(lambda: usage_requests(cp, llm) >= 2, 15, "the second usage record")
    assert usage_requests(cp, llm) == 2


def test_every_key_rate_limited_gives_429_with_retry_after(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    upstream_a: MockUpstream,
) -> None:  # fmt: skip
    admin, bridged, token = shared_controlplane.admin, shared_bridged, shared_token
    busy, claude = unique("busy"), unique("claude")
    admin.create_provider(busy, upstream_a.url + "/v1", keys=[KEY1, KEY2])
    created = admin.create_provider(claude, upstream_a.url, type="anthropic", keys=[KEY3, KEY4])
    admin.wait_applied(created.revision)
    for key in (KEY1, KEY2, KEY3, KEY4):
        upstream_a.key_status[key] = 429

    limited = chat(bridged, busy, token)
    assert limited.status_code == 429, limited.text
    retry_after = limited.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 30, retry_after
    error = limited.json()["error"]
    assert error["code"] == "all_keys_rate_limited"
    assert error["type"] == "rate_limit_error"
    assert keys_seen(upstream_a) == [KEY1, KEY2]
    assert failovers(bridged, busy, "rate_limited") == 2

    # While both rest, bridged answers 429 itself, without bothering the upstream.
    resting = chat(bridged, busy, token)
    assert resting.status_code == 429
    assert 1 <= int(resting.headers["Retry-After"]) <= 30
    assert len(upstream_a.seen) == 2

    # Anthropic's shape, and no Retry-After from the upstream: the default cooldown applies.
    upstream_a.retry_after = None
    start = len(upstream_a.seen)
    anthropic = messages(bridged, claude, token)
    assert anthropic.status_code == 429, anthropic.text
    assert 1 <= int(anthropic.headers["Retry-After"]) <= 10  # --default-cooldown
    assert anthropic.json() == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": anthropic.json()["error"]["message"]},
    }
    assert keys_seen(upstream_a, start) == [KEY3, KEY4]
    bridged.check_alive()


@pytest.fixture(scope="module")
def quick_cooldown(
    shared_controlplane: Controlplane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bridged]:
    """bridged whose keys refused with 401 rest 1 s at first (60 s by default)."""
    cp = shared_controlplane
    process = Bridged(
        [cp.address], tmp_path_factory.mktemp("quick"), cp.secrets, name="quick",
        extra_args=("--unauthorized-cooldown", "1"),
    ).start()  # fmt: skip
    try:
        yield process
    finally:
        process.stop()


def test_a_401_rests_the_key_for_a_cooldown_that_grows(
    shared_controlplane: Controlplane, quick_cooldown: Bridged, shared_token: str,
    upstream_a: MockUpstream,
) -> None:  # fmt: skip
    bridged, token, revoked = quick_cooldown, shared_token, unique("revoked")
    admin = shared_controlplane.admin
    admin.wait_applied(
        admin.create_provider(revoked, upstream_a.url + "/v1", keys=[KEY1, KEY2]).revision
    )
    upstream_a.key_status.update({KEY1: 401, KEY2: 401})

    # Every key refused: 502, not a rate limit, and nothing to retry after.
    sent = time.monotonic()  # the rests begin after this
    refused = chat(bridged, revoked, token)
    assert refused.status_code == 502, refused.text
    assert refused.json()["error"]["code"] == "all_keys_refused"
    assert "Retry-After" not in refused.headers
    assert keys_seen(upstream_a) == [KEY1, KEY2]
    assert failovers(bridged, revoked, "unauthorized") == 2
    # They rest: the next call does not reach the upstream...
    assert chat(bridged, revoked, token).status_code == 502
    assert len(upstream_a.seen) == 2

    # ...until a later call tries them again (after 1 s), and they rest twice as long.
    # (Each rest begins after the request that caused it was sent, and is over before the
    # request that found it over has returned: the bounds below cannot be met early.)
    def retried(count: int) -> float:
        """When the call that tried the keys again was sent; 0 while they rest."""
        sent = time.monotonic()
        assert chat(bridged, revoked, token).status_code == 502
        return sent if len(upstream_a.seen) >= count else 0.0

    second_sent = wait_until(lambda: retried(4), 10, "the keys to be tried again")
    assert keys_seen(upstream_a, 2) == [KEY1, KEY2]
    assert time.monotonic() - sent >= 1.0
    wait_until(lambda: retried(6), 10, "the keys to be tried a third time")
    assert time.monotonic() - second_sent >= 2.0, "the cooldown did not double"

    # A key the upstream takes again is back in line, first as before.
    del upstream_a.key_status[KEY1]
    wait_until(lambda: chat(bridged, revoked, token).status_code == 200, 10, "KEY1 back")
    assert keys_seen(upstream_a)[-1] == KEY1
    assert chat(bridged, revoked, token).status_code == 200
    assert keys_seen(upstream_a)[-1] == KEY1


def test_a_403_fails_over_for_that_request_only(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    upstream_a: MockUpstream,
) -> None:  # fmt: skip
    admin, bridged, token = shared_controlplane.admin, shared_bridged, shared_token
    mixed, forbidding = unique("mixed"), unique("forbidden")
    admin.create_provider(mixed, upstream_a.url + "/v1", keys=[KEY1, KEY2])
    created = admin.create_provider(forbidding, upstream_a.url + "/v1", keys=[KEY3, KEY4])
    admin.wait_applied(created.revision)
    upstream_a.key_status.update({KEY1: 403, KEY3: 403, KEY4: 403})

    # The next key serves the request, and the forbidden key stays in use for the next.
    for _ in range(2):
        ok = chat(bridged, mixed, token)
        assert ok.status_code == 200, ok.text
    assert keys_seen(upstream_a) == [KEY1, KEY2, KEY1, KEY2]
    assert failovers(bridged, mixed, "forbidden") == 2

    # Forbidden with every key: the upstream's own 403 reaches the client, which learns
    # why (a model its organisation may not use, say).
    forbidden = chat(bridged, forbidding, token)
    assert forbidden.status_code == 403, forbidden.text
    assert forbidden.json()["error"]["message"] == "key says 403"
    assert "x-aibridge-error" not in forbidden.headers
    assert keys_seen(upstream_a, 4) == [KEY3, KEY4]
    assert chat(bridged, forbidding, token).status_code == 403
    assert keys_seen(upstream_a, 6) == [KEY3, KEY4]


def test_concurrent_401s_count_once_and_a_refusal_reaches_the_client(
    shared_controlplane: Controlplane, quick_cooldown: Bridged, shared_token: str,
    upstream_a: MockUpstream,
) -> None:  # fmt: skip
    """Requests in flight together that all meet a 401 rest the key once (its first
    cooldown, not 2^8 of them); a pass-through's 401 and a 403 concern their request, and
    when no key serves it the client gets the provider's refusal, not a retryable 502."""
    bridged, token, admin = quick_cooldown, shared_token, shared_controlplane.admin
    pair, mixed, scoped = unique("pair"), unique("mixed"), unique("scoped")
    admin.create_provider(pair, upstream_a.url + "/v1", keys=[KEY1, KEY2])
    admin.create_provider(mixed, upstream_a.url + "/v1", keys=[KEY3, KEY4])
    created = admin.create_provider(scoped, upstream_a.url + "/v1", keys=[KEY5, KEY6])
    admin.wait_applied(created.revision)
    upstream_a.key_status.update({KEY1: 401, KEY2: 401})

    def post() -> int:
        return chat(bridged, pair, token).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: post(), range(8))) == [502] * 8
    # One cooldown (1 s): the keys are tried again soon, not in minutes.
    del upstream_a.key_status[KEY1]
    wait_until(lambda: post() == 200, 10, "KEY1 tried again after its first cooldown")

    # A 403 then a 401: the client learns of the 403, as the provider put it.
    upstream_a.key_status.update({KEY3: 403, KEY4: 401})
    refused = chat(bridged, mixed, token)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["message"] == "key says 403"
    assert refused.headers["x-aibridge-request-id"]

    # A 401 on a pass-through endpoint (a key without the scope to list models) fails
    # over for that request, and rests nothing.
    upstream_a.key_status[KEY5] = 401
    start = len(upstream_a.seen)
    models = httpx.get(bridged.provider_url(scoped) + "/v1/models",
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
    assert models.status_code == 200, models.text
    assert keys_seen(upstream_a, start) == [KEY5, KEY6]
    assert chat(bridged, scoped, token).status_code == 200
    assert keys_seen(upstream_a, start + 2) == [KEY5, KEY6]  # KEY5 was not resting
