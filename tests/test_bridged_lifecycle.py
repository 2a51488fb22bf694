"""bridged's life: fail static without the controlplane, graceful shutdown, health and
metrics, and a provider row it cannot use."""

from __future__ import annotations

import signal
import threading
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from aibridge.v1 import admin_pb2
from mockupstream import OPENAI_USAGE, MockUpstream
from tests.harness import (
    Bridged,
    Controlplane,
    Secrets,
    finish_stream,
    stream_in_background,
    wait_until,
)

KEY = "sk-lifecycle-provider-key-0000001"


def chat(bridged: Bridged, provider: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{bridged.provider_url(provider)}/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def answered_by(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def samples(bridged: Bridged) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(bridged.metrics())
        for s in family.samples
    }


def sample(bridged: Bridged, name: str, **labels: str) -> float | None:
    return samples(bridged).get((name, frozenset(labels.items())))


def readyz(bridged: Bridged) -> dict:
    response = httpx.get(bridged.url + "/readyz", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def usage(controlplane: Controlplane, provider: str) -> tuple[int, int, int]:
    response = controlplane.admin.QueryUsage(admin_pb2.QueryUsageRequest(provider=provider))
    rows = list(response.rows)
    return (
        sum(r.requests for r in rows),
        sum(r.input_tokens for r in rows),
        sum(r.output_tokens for r in rows),
    )


def bridged_subscribers(controlplane: Controlplane) -> list[admin_pb2.Subscriber]:
    status = controlplane.admin.GetStatus(admin_pb2.GetStatusRequest())
    return [s for s in status.subscribers if s.role == "bridged"]


def test_fail_static_then_resync(
    controlplane: Controlplane, bridged: Bridged, token: str, secrets: Secrets,
    tmp_path: Path, upstream_a: MockUpstream, upstream_b: MockUpstream,
) -> None:  # fmt: skip
    created = controlplane.admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY])
    controlplane.admin.wait_applied(created.revision)
    assert answered_by(chat(bridged, "llm", token)) == "hello from A"

    controlplane.kill()  # SIGKILL: no goodbye on the stream
    assert answered_by(chat(bridged, "llm", token)) == "hello from A"
    wait_until(lambda: readyz(bridged)["controlplane_connected"] is False, 30, "bridged to notice")
    state = readyz(bridged)
    assert state["ready"] is True and state["version"] == created.revision
    assert sample(bridged, "aibridge_bridged_controlplane_connected") == 0
    assert answered_by(chat(bridged, "llm", token)) == "hello from A"

    # A change made while bridged's controlplane is down, through another one on the same
    # database, which then goes away too.
    other = Controlplane(controlplane.database_url, tmp_path, secrets, name="other").start()
    try:
        update = admin_pb2.UpdateProviderRequest(ref="llm", base_url=upstream_b.url + "/v1")
        changed = other.admin.UpdateProvider(update).revision
    finally:
        other.stop()
    assert changed > created.revision
    assert answered_by(chat(bridged, "llm", token)) == "hello from A"  # the last snapshot

    controlplane.start()  # same port, same database
    # WaitForRevision covers connected subscribers: first see bridged reconnect. (The
    # restarted replica also lists bridged as its last process saw it, disconnected; a
    # wait no longer covers that once it is older than the fleet grace.)
    wait_until(lambda: [s for s in bridged_subscribers(controlplane) if s.connected], 30,
               "bridged to reconnect")  # fmt: skip
    controlplane.admin.wait_applied(changed)
    assert answered_by(chat(bridged, "llm", token)) == "hello from B"
    state = readyz(bridged)
    assert state["controlplane_connected"] is True and state["version"] == changed
    assert sample(bridged, "aibridge_bridged_controlplane_connected") == 1
    bridged.check_alive()


def test_graceful_shutdown_finishes_streams_and_flushes_usage(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream
) -> None:
    created = controlplane.admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY])
    controlplane.admin.wait_applied(created.revision)
    upstream_a.hold = threading.Event()
    streams = [stream_in_background(bridged, "llm", token) for _ in range(2)]
    for _thread, _result, first_chunk in streams:
        assert first_chunk.wait(30), "the streams did not start"

    assert bridged.proc is not None
    bridged.proc.send_signal(signal.SIGTERM)

    def refuses_connections() -> bool:
        try:
            httpx.get(bridged.url + "/healthz", timeout=2)
        except httpx.ConnectError:
            return True
        return False

    wait_until(refuses_connections, 15, "bridged to stop accepting")
    # Still draining: both streams are open and the process is alive.
    assert all(thread.is_alive() for thread, _r, _f in streams)
    assert bridged.proc.poll() is None

    upstream_a.hold.set()
    for thread, result, _first in streams:
        finish_stream(thread, result)

    assert bridged.proc.wait(30) == 0, bridged.log()
    # Usage of both streams was flushed before exit.
    wait_until(lambda: usage(controlplane, "llm")[0] >= 2, 15, "the usage of both streams")
    assert usage(controlplane, "llm") == (
        2, 2 * OPENAI_USAGE["prompt_tokens"], 2 * OPENAI_USAGE["completion_tokens"]
    )  # fmt: skip


def test_usage_a_stop_cannot_deliver_is_sent_after_the_next_start(
    controlplane: Controlplane, token: str, upstream_a: MockUpstream, tmp_path: Path,
    secrets: Secrets,
) -> None:  # fmt: skip
    """bridged stopped while the controlplane is away (make run's Ctrl-C stops both at
    once): its usage waits on disk for the next start, it is not lost."""
    created = controlplane.admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY])
    controlplane.admin.wait_applied(created.revision)
    first = Bridged([controlplane.address], tmp_path, secrets, name="first",
                    extra_args=("--usage-flush-interval", "60")).start()  # fmt: skip
    for _ in range(3):
        reply = httpx.post(first.provider_url("llm") + "/v1/chat/completions",
                           headers={"Authorization": f"Bearer {token}"}, json={"model": "m"},
                           timeout=30)  # fmt: skip
        assert reply.status_code == 200
    controlplane.stop()
    first.stop()
    assert first.proc is not None and first.proc.returncode == 0
    assert "3 usage records not delivered yet: kept in" in first.log()
    assert " ERROR " not in first.log()
    spool = tmp_path / "state" / "bridged-usage"
    assert len(list(spool.glob("*.usage"))) == 1

    controlplane.start()
    second = Bridged([controlplane.address], tmp_path, secrets, name="second").start()
    try:
        wait_until(lambda: usage(controlplane, "llm")[0] >= 3, 15, "the spooled usage")
        assert usage(controlplane, "llm") == (
            3, 3 * OPENAI_USAGE["prompt_tokens"], 3 * OPENAI_USAGE["completion_tokens"]
        )  # fmt: skip
        assert list(spool.iterdir()) == []
        assert "3 usage records left by an earlier run" in second.log()
    finally:
        second.stop()


def test_health_readiness_and_metrics(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream
) -> None:
    created = controlplane.admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY])
    controlplane.admin.wait_applied(created.revision)
    revision = controlplane.admin.revision()

    healthz = httpx.get(bridged.url + "/healthz", timeout=10)
    assert healthz.status_code == 200
    assert healthz.json() == {"status": "ok"}
    state = readyz(bridged)
    assert state == {
        "ready": True,
        "version": revision,
        "controlplane_connected": True,
        "from_cache": False,
    }

    assert answered_by(chat(bridged, "llm", token)) == "hello from A"
    metrics = httpx.get(bridged.url + "/metrics", timeout=10)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    chat_labels = {"provider": "llm", "route": "chat.completions"}
    assert sample(bridged, "aibridge_bridged_requests_total", **chat_labels, status="200") == 1
    assert sample(bridged, "aibridge_bridged_snapshot_version") == revision
    assert sample(bridged, "aibridge_bridged_controlplane_connected") == 1
    since = sample(bridged, "aibridge_bridged_seconds_since_snapshot")
    assert since is not None and 0 <= since < 60
    applied_in = sample(bridged, "aibridge_bridged_snapshot_apply_seconds")
    assert applied_in is not None and 0 < applied_in < 10
    assert sample(bridged, "aibridge_bridged_time_to_first_byte_seconds_count", **chat_labels) == 1
    assert sample(bridged, "aibridge_bridged_upstream_seconds_count", **chat_labels) == 1
    tokens = {"provider": "llm"}
    assert (
        sample(bridged, "aibridge_bridged_tokens_total", **tokens, kind="input")
        == (OPENAI_USAGE["prompt_tokens"])
    )
    assert (
        sample(bridged, "aibridge_bridged_tokens_total", **tokens, kind="output")
        == (OPENAI_USAGE["completion_tokens"])
    )
    assert sample(bridged, "aibridge_bridged_requests_in_flight") == 0

    # A new revision shows in readiness and the version gauge.
    update = admin_pb2.UpdateProviderRequest(ref="llm", display_name="LLM")
    changed = controlplane.admin.UpdateProvider(update).revision
    controlplane.admin.wait_applied(changed)
    assert readyz(bridged)["version"] == changed
    assert sample(bridged, "aibridge_bridged_snapshot_version") == changed


def test_a_provider_row_it_cannot_use_is_skipped_and_reported(
    controlplane: Controlplane, bridged: Bridged, token: str,
    upstream_a: MockUpstream, upstream_b: MockUpstream,
) -> None:  # fmt: skip
    admin = controlplane.admin
    admin.create_provider("good", upstream_a.url + "/v1", keys=[KEY])
    created = admin.create_provider("also", upstream_b.url + "/v1", keys=[KEY])
    admin.wait_applied(created.revision)

    # A row the admin API would never accept, written behind its back.
    bad_id = f"prv_{uuid.uuid4().hex[:20]}"
    engine = sa.create_engine(controlplane.database_url)
    try:
        providers = sa.Table("providers", sa.MetaData(), autoload_with=engine)
        with engine.begin() as connection:
            row = (
                connection.execute(sa.select(providers).where(providers.c.name == "good"))
                .one()
                ._asdict()
            )
            connection.execute(
                providers.insert().values(row | {"id": bad_id, "name": "broken",
                                                 "base_url": "not a url"})
            )  # fmt: skip
    finally:
        engine.dispose()
    # Any admin change publishes a snapshot that carries it.
    token_change = admin.CreateToken(admin_pb2.CreateTokenRequest(name="nudge"))
    admin.wait_applied(token_change.revision)

    (subscriber,) = bridged_subscribers(controlplane)
    assert subscriber.applied_version == token_change.revision
    assert not subscriber.last_error
    assert [(s.provider_id, s.name) for s in subscriber.skipped] == [(bad_id, "broken")]
    assert "base_url" in subscriber.skipped[0].reason
    assert sample(bridged, "aibridge_bridged_skipped_providers") == 1

    # Every other provider keeps serving; the broken one is unknown.
    assert answered_by(chat(bridged, "good", token)) == "hello from A"
    assert answered_by(chat(bridged, "also", token)) == "hello from B"
    assert answered_by(chat(bridged, "good", token_change.token)) == "hello from A"
    missing = chat(bridged, "broken", token)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_provider"
    assert readyz(bridged)["version"] == token_change.revision
    bridged.check_alive()
