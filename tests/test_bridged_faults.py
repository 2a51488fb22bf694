"""bridged when things go wrong: bad callers, bad routes, bad upstreams, rate-limited
keys, a lost controlplane, and SIGTERM in the middle of streams."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import sqlalchemy as sa

from aibridge.v1 import admin_pb2
from tests.harness import Bridged, Controlplane, Secrets, free_port, wait_until
from tests.upstream import FakeUpstream

KEY1 = "sk-first-key-00000000000001"
KEY2 = "sk-second-key-0000000000002"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def chat(bridged: Bridged, provider: str, token: str | None, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        f"{bridged.provider_url(provider)}/v1/chat/completions",
        headers=headers, json=kw.pop("json", CHAT), timeout=30, **kw,
    )  # fmt: skip


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def test_clean_errors_with_honest_status_codes(
    controlplane: Controlplane, tmp_path: Path, secrets: Secrets, token: str,
    upstream_a: FakeUpstream,
) -> None:  # fmt: skip
    admin = controlplane.admin
    bridged = Bridged(
        [controlplane.address], tmp_path, secrets,
        extra_args=("--idle-read-timeout", "1", "--max-body-bytes", "10000"),
    ).start()  # fmt: skip
    silent = FakeUpstream("S", silent=True).start()
    try:
        admin.create_provider("ok", upstream_a.url + "/v1", keys=[KEY1])
        admin.create_provider("ant", upstream_a.url, type="anthropic", keys=[KEY1])
        admin.create_provider("off", upstream_a.url + "/v1", keys=[KEY1], disabled=True)
        admin.create_provider("keyless", upstream_a.url + "/v1")
        admin.create_provider("down", f"http://127.0.0.1:{free_port()}/v1", keys=[KEY1])
        last = admin.create_provider("silent", silent.url + "/v1", keys=[KEY1])
        admin.wait_applied(last.revision)

        assert chat(bridged, "ok", "abt_wrong").status_code == 401
        missing = chat(bridged, "ok", None)
        assert (missing.status_code, error_code(missing)) == (401, "invalid_token")
        unknown = chat(bridged, "nope", token)
        assert (unknown.status_code, error_code(unknown)) == (404, "unknown_provider")
        for method, path in (("POST", "/v1/files"), ("GET", "/v1/assistants"),
                             ("POST", "/v1/embeddings"), ("DELETE", "/v1/models/x"),
                             ("GET", "/v1/models/../files")):  # fmt: skip
            refused = httpx.request(
                method, bridged.provider_url("ok") + path,
                headers={"Authorization": f"Bearer {token}"}, timeout=10,
            )  # fmt: skip
            assert refused.status_code == 404, (method, path)
        assert all(s.path in ("/v1/chat/completions",) for s in upstream_a.seen)
        off = chat(bridged, "off", token)
        assert (off.status_code, error_code(off)) == (503, "provider_disabled")
        assert chat(bridged, "keyless", token).status_code == 502
        down = chat(bridged, "down", token)
        assert (down.status_code, error_code(down)) == (502, "upstream_unreachable")
        slow = chat(bridged, "silent", token)
        assert (slow.status_code, error_code(slow)) == (504, "upstream_timeout")
        big = chat(bridged, "ok", token, json={"model": "m", "pad": "x" * 20000})
        assert big.status_code == 413
        outside = httpx.get(bridged.url + "/v1/chat/completions", timeout=10)
        assert outside.status_code == 404 and outside.json()["error"]
        # Anthropic routes answer in Anthropic's error shape.
        ant = httpx.post(bridged.provider_url("ant") + "/v1/messages", json={}, timeout=10)
        assert ant.status_code == 401
        assert (
            ant.json()["type"] == "error" and ant.json()["error"]["type"] == "authentication_error"
        )

        # Still serving after all of that, and the token was never logged.
        assert chat(bridged, "ok", token).status_code == 200
        assert token not in bridged.log() and KEY1 not in bridged.log()
    finally:
        bridged.stop()
        silent.stop()


def test_expired_and_revoked_tokens_are_refused(
    controlplane: Controlplane, bridged: Bridged, upstream_a: FakeUpstream
) -> None:
    admin = controlplane.admin
    admin.create_provider("ok", upstream_a.url + "/v1", keys=[KEY1])
    short = admin.CreateToken(admin_pb2.CreateTokenRequest(name="short", expires_in_seconds=1))
    kept = admin.CreateToken(admin_pb2.CreateTokenRequest(name="kept"))
    admin.wait_applied(kept.revision)
    assert chat(bridged, "ok", kept.token).status_code == 200
    wait_until(lambda: chat(bridged, "ok", short.token).status_code == 401, what="expiry")
    revoked = admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref="kept"))
    admin.wait_applied(revoked.revision)
    assert chat(bridged, "ok", kept.token).status_code == 401


def test_key_failover(controlplane: Controlplane, bridged: Bridged, token: str,
                      upstream_a: FakeUpstream) -> None:  # fmt: skip
    admin = controlplane.admin
    admin.wait_applied(
        admin.create_provider("p", upstream_a.url + "/v1", keys=[KEY1, KEY2]).revision
    )
    upstream_a.key_status[KEY1] = 429

    # First key rate limited → the second answers; the body is replayed byte for byte.
    assert chat(bridged, "p", token).status_code == 200
    first, second = upstream_a.seen
    assert (first.key, second.key) == (KEY1, KEY2) and first.body == second.body
    wait_until(
        lambda: [r.requests for r in controlplane.admin.QueryUsage(
            admin_pb2.QueryUsageRequest()).rows] == [1],
        what="one usage record",
    )  # fmt: skip
    # The first key rests: the next call goes straight to the second.
    assert chat(bridged, "p", token).status_code == 200
    assert [s.key for s in upstream_a.seen[2:]] == [KEY2]

    # Every key rate limited → 429 with Retry-After, in OpenAI's shape.
    upstream_a.key_status[KEY2] = 429
    limited = chat(bridged, "p", token)
    assert limited.status_code == 429
    assert error_code(limited) == "all_keys_rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1

    # Every key refused → 502; a refused key stays out until the next snapshot.
    upstream_a.key_status.clear()
    second_provider = admin.create_provider("q", upstream_a.url + "/v1", keys=[KEY1, KEY2])
    admin.wait_applied(second_provider.revision)
    upstream_a.key_status[KEY1] = 401
    seen_before = len(upstream_a.seen)
    assert chat(bridged, "q", token).status_code == 200
    assert chat(bridged, "q", token).status_code == 200
    assert [s.key for s in upstream_a.seen[seen_before:]] == [KEY1, KEY2, KEY2]
    upstream_a.key_status[KEY2] = 403
    refused = chat(bridged, "q", token)
    assert (refused.status_code, error_code(refused)) == (502, "all_keys_refused")
    upstream_a.key_status.clear()
    changed = admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref="q", display_name="Q"))
    admin.wait_applied(changed.revision)
    seen_before = len(upstream_a.seen)
    assert chat(bridged, "q", token).status_code == 200
    assert [s.key for s in upstream_a.seen[seen_before:]] == [KEY1]
    assert "aibridge_bridged_key_failovers_total" in bridged.metrics()


def test_fail_static_and_a_change_made_while_away(
    controlplane: Controlplane, bridged: Bridged, token: str, secrets: Secrets,
    tmp_path: Path, upstream_a: FakeUpstream, upstream_b: FakeUpstream,
) -> None:  # fmt: skip
    admin = controlplane.admin
    admin.wait_applied(admin.create_provider("p", upstream_a.url + "/v1", keys=[KEY1]).revision)
    controlplane.kill()
    for _ in range(5):
        assert (
            chat(bridged, "p", token).json()["choices"][0]["message"]["content"] == "hello from A"
        )
    wait_until(lambda: '"controlplane_connected": false' in httpx.get(bridged.url + "/readyz").text,
               what="bridged to notice")  # fmt: skip
    assert httpx.get(bridged.url + "/readyz").status_code == 200

    other = Controlplane(controlplane.database_url, tmp_path, secrets, name="other").start()
    try:
        moved = other.admin.UpdateProvider(
            admin_pb2.UpdateProviderRequest(ref="p", base_url=upstream_b.url + "/v1")
        )
    finally:
        other.stop()
    controlplane.start()
    # A wait covers the subscribers connected at the time: let bridged reconnect first.
    wait_until(
        lambda: controlplane.admin.GetStatus(admin_pb2.GetStatusRequest()).subscribers,
        what="bridged to reconnect",
    )
    controlplane.admin.wait_applied(moved.revision)
    assert chat(bridged, "p", token).json()["choices"][0]["message"]["content"] == "hello from B"
    # The usage of the calls served while the controlplane was away arrives, once each.
    wait_until(
        lambda: [r.requests for r in controlplane.admin.QueryUsage(
            admin_pb2.QueryUsageRequest()).rows] == [6],
        what="usage from the outage",
    )  # fmt: skip


def test_sigterm_lets_streams_finish_and_flushes_their_usage(
    controlplane: Controlplane, tmp_path: Path, secrets: Secrets, token: str,
    upstream_a: FakeUpstream,
) -> None:  # fmt: skip
    admin = controlplane.admin
    admin.create_provider("p", upstream_a.url + "/v1", keys=[KEY1])
    bridged = Bridged(
        [controlplane.address], tmp_path, secrets, extra_args=("--usage-flush-interval", "60")
    ).start()
    admin.wait_applied(admin.revision())
    upstream_a.hold = threading.Event()
    results: list[bytes] = []
    started = threading.Barrier(3)

    def stream() -> None:
        with httpx.stream(
            "POST", f"{bridged.provider_url('p')}/v1/chat/completions",
            headers={"Authorization": f"Bearer {token}"},
            json=CHAT | {"stream": True, "stream_options": {"include_usage": True}}, timeout=60,
        ) as response:  # fmt: skip
            chunks = response.iter_raw()
            body = next(chunks)
            started.wait(30)
            results.append(body + b"".join(chunks))

    threads = [threading.Thread(target=stream) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        started.wait(30)
        bridged.proc.send_signal(signal.SIGTERM)
        # New connections are refused while the streams are still open.
        wait_until(lambda: not _accepts(bridged), what="the listener to close")
        assert bridged.proc.poll() is None
        upstream_a.hold.set()
        for t in threads:
            t.join(30)
        assert len(results) == 2
        for body in results:
            assert body.rstrip().endswith(b"data: [DONE]") and b'"prompt_tokens": 11' in body
        assert bridged.proc.wait(30) == 0
        # Their usage was flushed on the way out (the interval alone would take a minute).
        rows = admin.QueryUsage(admin_pb2.QueryUsageRequest()).rows
        assert [(r.requests, r.input_tokens) for r in rows] == [(2, 22)]
    finally:
        upstream_a.hold.set()
        bridged.stop()


def _accepts(bridged: Bridged) -> bool:
    try:
        httpx.get(bridged.url + "/healthz", timeout=2)
        return True
    except httpx.TransportError:
        return False


def test_health_metrics_and_a_skipped_row(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: FakeUpstream
) -> None:
    admin = controlplane.admin
    good = admin.create_provider("good", upstream_a.url + "/v1", keys=[KEY1])
    admin.wait_applied(good.revision)
    assert chat(bridged, "good", token).status_code == 200
    engine = sa.create_engine(controlplane.database_url)
    try:
        with engine.begin() as conn:
            row = dict(conn.execute(sa.text("SELECT * FROM providers")).mappings().one())
            row |= {"id": "prv_broken00000001", "name": "broken", "base_url": "not a url"}
            columns = ", ".join(row)
            conn.execute(
                sa.text(f"INSERT INTO providers ({columns}) VALUES (:{', :'.join(row)})"), row
            )
    finally:
        engine.dispose()
    touched = admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref="good", display_name="G"))
    admin.wait_applied(touched.revision)
    (state,) = admin.GetStatus(admin_pb2.GetStatusRequest()).subscribers
    assert [(s.name, s.provider_id) for s in state.skipped] == [("broken", "prv_broken00000001")]
    assert "unusable base_url" in state.skipped[0].reason
    assert chat(bridged, "good", token).status_code == 200

    assert httpx.get(bridged.url + "/healthz").status_code == 200
    ready = httpx.get(bridged.url + "/readyz").json()
    assert ready["ready"] and ready["version"] == touched.revision
    text = bridged.metrics()
    for series in (
        'aibridge_bridged_requests_total{provider="good",route="chat.completions",status="200"}',
        f"aibridge_bridged_snapshot_version {float(touched.revision)}",
        "aibridge_bridged_controlplane_connected 1.0",
        "aibridge_bridged_seconds_since_snapshot",
        "aibridge_bridged_time_to_first_byte_seconds_bucket",
        'aibridge_bridged_tokens_total{kind="input",provider="good"}',
        "aibridge_bridged_skipped_providers 1.0",
    ):
        assert series in text, series


def test_no_snapshot_yet(tmp_path: Path, secrets: Secrets) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    bridged = Bridged([nowhere], tmp_path, secrets).start(wait_ready=False)
    try:
        assert httpx.get(bridged.url + "/readyz").status_code == 503
        response = chat(bridged, "any", "abt_x")
        assert (response.status_code, error_code(response)) == (503, "no_snapshot")
    finally:
        bridged.stop()
