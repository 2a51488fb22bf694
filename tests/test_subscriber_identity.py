"""A subscriber is the process behind a stream, proven by its instance key, not the id it
claims: another Watch under bridged's id, with bridged's credential, is another subscriber.
It cannot replace the real one, its acks count only for itself, and its end takes only
itself away. Runs on SQLite and PostgreSQL (the fleet table mirrors what status shows)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal

import grpc
import pytest
import sqlalchemy as sa

from aibridge.v1 import admin_pb2, sync_pb2, sync_pb2_grpc
from common.channel import auth_metadata
from tests.harness import (
    Bridged,
    Controlplane,
    RecordingSubscriber,
    Secrets,
    async_wait_until,
    ctl,
    instance_key,
    lagging_line,
    wait_until,
)


def fingerprint(key: str) -> str:
    """What status shows of a process's instance key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def listed(cp: Controlplane, subscriber_id: str) -> list[tuple[str, bool]]:
    """(instance, connected) of each entry under `subscriber_id` that status shows."""
    status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
    return sorted((s.instance, s.connected) for s in status.subscribers if s.id == subscriber_id)


def subscriber_rows(database_url: str) -> str:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return repr(connection.execute(sa.text("SELECT * FROM subscribers")).all())
    finally:
        engine.dispose()


def test_an_impostor_under_bridgeds_id_cannot_replace_it_nor_ack_for_it(
    controlplane: Controlplane, bridged: Bridged, secrets: Secrets
) -> None:
    cp = controlplane
    cp.admin.wait_applied(cp.admin.revision())
    (real,) = cp.admin.GetStatus(admin_pb2.GetStatusRequest()).subscribers
    assert real.role == "bridged"

    key = instance_key()
    impostor = (fingerprint(key), True)
    with grpc.insecure_channel(cp.address) as channel:
        stub = sync_pb2_grpc.SyncStub(channel)
        watch = stub.Watch(
            sync_pb2.WatchRequest(subscriber_id=real.id, role="bridged", instance_key=key),
            metadata=auth_metadata(secrets.bridged),
            timeout=60,
        )
        try:
            next(watch)  # it is registered
            # The impostor acknowledges a version far ahead: that is its own business ...
            ack = sync_pb2.AckRequest(subscriber_id=real.id, instance_key=key, version=999999)
            stub.Ack(ack, metadata=auth_metadata(secrets.bridged), timeout=10)
            # ... so bridged, frozen, cannot apply the next change, and the wait says so.
            assert bridged.proc is not None
            bridged.proc.send_signal(signal.SIGSTOP)
            try:
                result = ctl(cp, "tokens", "create", "t", "--wait", "--wait-timeout", "2")
            finally:
                bridged.proc.send_signal(signal.SIGCONT)
            assert result.returncode == 3, (result.stdout, result.stderr)
            lagging = lagging_line(result.stderr, real.id)
            assert "connected" in lagging and "disconnected" not in lagging
            # Both are listed: two processes under one id is an anomaly, and it shows.
            assert len(real.instance) == 12 and real.instance != impostor[0]
            assert listed(cp, real.id) == sorted([(real.instance, True), impostor])

            # An ack under bridged's id with any other key, or none, counts for nobody.
            for other in (instance_key(), ""):
                forged = sync_pb2.AckRequest(subscriber_id=real.id, instance_key=other, version=9)
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Ack(forged, metadata=auth_metadata(secrets.bridged), timeout=10)
                assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            watch.cancel()

        # The impostor's stream ends: only its own entry goes (it may come back), and
        # bridged is still there, connected.
        wait_until(
            lambda: listed(cp, real.id) == sorted([(real.instance, True), (impostor[0], False)]),
            what="the impostor's entry disconnected, bridged's intact",
        )
        cp.admin.wait_applied(cp.admin.revision())  # bridged, thawed, applied it
        # Its goodbye, with its key, removes it and only it.
        leave = sync_pb2.LeaveRequest(subscriber_id=real.id, instance_key=key)
        stub.Leave(leave, metadata=auth_metadata(secrets.bridged), timeout=10)
        assert listed(cp, real.id) == [(real.instance, True)]

    # The key itself is never shown, logged or stored: status shows its digest's first
    # digits, the fleet table holds the digest.
    shown = ctl(cp, "status", "--json", check=True).stdout + ctl(cp, "status", check=True).stdout
    assert real.instance in shown
    for text in (shown, cp.log(), bridged.log(), subscriber_rows(cp.database_url)):
        assert key not in text


def test_the_same_process_reconnecting_replaces_its_own_entry(
    controlplane: Controlplane, secrets: Secrets
) -> None:
    cp = controlplane

    async def scenario() -> None:
        sub = RecordingSubscriber([cp.address], "proxyd", secrets.proxyd, subscriber_id="again")
        sub.start()
        try:
            await sub.wait_version(cp.admin.revision())
            (entry,) = await asyncio.to_thread(listed, cp, "again")
            await sub.stop(leave=False)  # its stream is cut; the process lives on
            await async_wait_until(
                lambda: listed(cp, "again") == [(entry[0], False)], what="disconnected"
            )
            created = await asyncio.to_thread(cp.admin.create_provider, "while-away")
            sub.start()
            await sub.wait_version(created.revision)
            await asyncio.to_thread(cp.admin.wait_applied, created.revision)
            assert await asyncio.to_thread(listed, cp, "again") == [(entry[0], True)]
        finally:
            await sub.stop()

    asyncio.run(scenario())


def test_watch_without_an_instance_key_is_refused(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    with grpc.insecure_channel(cp.address) as channel:
        stub = sync_pb2_grpc.SyncStub(channel)
        for key in ("", "short"):
            call = stub.Watch(
                sync_pb2.WatchRequest(subscriber_id="keyless", role="proxyd", instance_key=key),
                metadata=auth_metadata(cp.secrets.proxyd),
                timeout=10,
            )
            with pytest.raises(grpc.RpcError) as caught:
                next(call)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            details = caught.value.details()
            assert details is not None and details.startswith("instance_key: required")
    status = json.loads(ctl(cp, "status", "--json", check=True).stdout)
    assert "keyless" not in [s["id"] for s in status["subscribers"]]
