"""Several controlplane replicas on one PostgreSQL database, and losing that database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from aibridge.v1 import admin_pb2
from tests.harness import (
    PG_ADMIN_DSN,
    Controlplane,
    RecordingSubscriber,
    Secrets,
    health,
    providers_or_none,
    wait_until,
)

pytestmark = pytest.mark.postgres

# Long enough that only NOTIFY can deliver a change within the test's deadlines.
NO_POLLING = ("--revision-check-interval", "600")


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def backends(dbname: str, query_prefix: str = "") -> list[int]:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, query FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall()
    return [pid for pid, query in rows if (query or "").startswith(query_prefix)]


def terminate(pids: list[int]) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def replicas(url: str, tmp_path: Path, secrets: Secrets) -> tuple[Controlplane, Controlplane]:
    a = Controlplane(url, tmp_path, secrets, name="replica-a", extra_args=NO_POLLING).start()
    b = Controlplane(url, tmp_path, secrets, name="replica-b", extra_args=NO_POLLING).start()
    return a, b


def test_change_through_one_replica_reaches_subscribers_of_the_other(
    postgres_url: str, tmp_path: Path, secrets: Secrets
) -> None:
    async def scenario() -> None:
        a, b = await asyncio.to_thread(replicas, postgres_url, tmp_path, secrets)
        on_b = RecordingSubscriber([b.address], "bridged", secrets.bridged).start()
        try:
            await on_b.wait_version(b.admin.revision())
            for i in range(5):
                created = await asyncio.to_thread(a.admin.create_provider, f"via-a-{i}")
                await on_b.wait_version(created.revision, timeout=10)
            assert [p.name for p in on_b.snapshot.providers] == [f"via-a-{i}" for i in range(5)]
            # Waiting through replica b covers its own subscribers.
            await asyncio.to_thread(b.admin.wait_applied, created.revision)
        finally:
            await on_b.stop()
            await asyncio.to_thread(a.stop)
            await asyncio.to_thread(b.stop)

    asyncio.run(scenario())


def test_listen_is_reestablished_after_its_connection_dies(
    postgres_url: str, tmp_path: Path, secrets: Secrets
) -> None:
    async def scenario() -> None:
        a, b = await asyncio.to_thread(replicas, postgres_url, tmp_path, secrets)
        on_b = RecordingSubscriber([b.address], "proxyd", secrets.proxyd).start()
        try:
            await on_b.wait_version(b.admin.revision())
            dbname = database_name(postgres_url)
            listeners = wait_until(lambda: backends(dbname, "LISTEN"), what="LISTEN sessions")
            assert len(listeners) == 2
            terminate(listeners)
            # A change committed while b may not be listening still arrives ...
            first = await asyncio.to_thread(a.admin.create_provider, "during")
            await on_b.wait_version(first.revision, timeout=20)
            # ... and b listens again, so later changes arrive through NOTIFY too.
            wait_until(lambda: len(backends(dbname, "LISTEN")) == 2, what="LISTEN again")
            second = await asyncio.to_thread(a.admin.create_provider, "after")
            await on_b.wait_version(second.revision, timeout=10)
            assert "LISTEN connection lost" in b.log()
        finally:
            await on_b.stop()
            await asyncio.to_thread(a.stop)
            await asyncio.to_thread(b.stop)

    asyncio.run(scenario())


def set_connections(dbname: str, allowed: bool) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS {str(allowed).lower()}')


def test_database_outage_is_unavailable_then_recovers(
    postgres_url: str, tmp_path: Path, secrets: Secrets
) -> None:
    async def scenario() -> None:
        cp = Controlplane(postgres_url, tmp_path, secrets).start()
        sub = RecordingSubscriber([cp.address], "bridged", secrets.bridged).start()
        dbname = database_name(postgres_url)
        try:
            before = await asyncio.to_thread(cp.admin.create_provider, "kept")
            await sub.wait_version(before.revision)

            set_connections(dbname, False)
            terminate(backends(dbname))
            with pytest.raises(grpc.RpcError) as caught:
                await asyncio.to_thread(cp.admin.create_provider, "lost")
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "database unavailable" in (caught.value.details() or "")
            with pytest.raises(grpc.RpcError) as caught:
                await asyncio.to_thread(cp.admin.ListProviders, admin_pb2.ListProvidersRequest())
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            # The data plane keeps its snapshot meanwhile; health says the truth.
            assert [p.name for p in sub.snapshot.providers] == ["kept"]
            await asyncio.to_thread(
                wait_until, lambda: health(cp) == health_pb2.HealthCheckResponse.NOT_SERVING
            )

            set_connections(dbname, True)
            listing = await asyncio.to_thread(
                lambda: wait_until(
                    lambda: providers_or_none(cp), timeout=20, what="the admin API to recover"
                )
            )
            assert [p.name for p in listing.providers] == ["kept"], "half-written change"
            await asyncio.to_thread(
                wait_until, lambda: health(cp) == health_pb2.HealthCheckResponse.SERVING
            )
            assert listing.revision == before.revision
            after = await asyncio.to_thread(cp.admin.create_provider, "after")
            assert after.revision == before.revision + 1
            await sub.wait_version(after.revision)
            assert sorted(p.name for p in sub.snapshot.providers) == ["after", "kept"]
        finally:
            set_connections(dbname, True)
            await sub.stop()
            await asyncio.to_thread(cp.stop)

    asyncio.run(scenario())


def test_status_and_wait_through_one_replica_cover_the_others(
    postgres_url: str, tmp_path: Path, secrets: Secrets
) -> None:
    async def scenario() -> None:
        a, b = await asyncio.to_thread(replicas, postgres_url, tmp_path, secrets)
        on_a = RecordingSubscriber([a.address], "proxyd", secrets.proxyd, subscriber_id="on-a")
        on_b = RecordingSubscriber([b.address], "bridged", secrets.bridged, subscriber_id="on-b")
        on_a.start(), on_b.start()
        try:
            start = await asyncio.to_thread(a.admin.revision)
            await on_a.wait_version(start)
            await on_b.wait_version(start)

            def listed() -> dict[str, str]:
                status = a.admin.GetStatus(admin_pb2.GetStatusRequest())
                return {s.id: s.controlplane_id for s in status.subscribers}

            seen = await asyncio.to_thread(
                wait_until, lambda: listed() if len(listed()) == 2 else None
            )
            assert seen == {"on-a": "replica-a", "on-b": "replica-b"}

            # A wait through a covers b's subscriber: it returns once that one applied.
            created = await asyncio.to_thread(a.admin.create_provider, "p1")
            await asyncio.to_thread(a.admin.wait_applied, created.revision)
            assert on_b.version >= created.revision

            # And it names b's subscriber when that one cannot apply.
            on_b.reject = lambda s: "refused on b" if s.version > created.revision else None
            second = await asyncio.to_thread(a.admin.create_provider, "p2")
            waited = await asyncio.to_thread(
                a.admin.WaitForRevision,
                admin_pb2.WaitForRevisionRequest(revision=second.revision, timeout_seconds=2),
            )
            assert not waited.done
            assert [(s.id, s.controlplane_id) for s in waited.laggards] == [("on-b", "replica-b")]
            assert "refused on b" in waited.laggards[0].last_error

            # A replica that stops takes its subscribers out of the others' view.
            await on_b.stop()
            await asyncio.to_thread(b.stop)
            await asyncio.to_thread(wait_until, lambda: set(listed()) == {"on-a"})
        finally:
            await on_a.stop()
            await on_b.stop()
            await asyncio.to_thread(a.stop)
            await asyncio.to_thread(b.stop)

    asyncio.run(scenario())
