"""Every retry loop outlives a long outage of what it retries, and recovers when it
returns: the publisher (the database), the usage reporter and the subscriber (the
controlplane), the LISTEN connection (PostgreSQL).

Each loop is driven through more than 2,000 consecutive failures (an uncapped
`2 ** failures` raises OverflowError at the 1,024th) with a sleep that takes no time and
records the pauses; then the dependency comes back, and the loop must do its job."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from aibridge.v1 import snapshot_pb2
from bridged.usage_reporter import UsageReporter
from common.subscriber import Subscriber
from controlplane.auth import Role
from controlplane.cache import SnapshotCache
from controlplane.publisher import MAX_UNEXPECTED_FAILURES, SnapshotPublisher
from controlplane.store import Database, DatabaseUnavailable, KeyRing
from controlplane.store.models import Interception
from controlplane.store.notify import RevisionListener
from controlplane.store.providers import Providers
from tests.harness import Controlplane, Secrets, async_wait_until
from tests.relay import Relay
from tests.test_usage import interception

OUTAGE = 2_050  # consecutive failures, well past the 1,024th


class RecordedPauses:
    """A sleep that takes no time: it records each pause and lets the loop go on."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


async def outlive_the_outage(pauses: RecordedPauses, loop: asyncio.Task[None], cap: float) -> None:
    """Waits for OUTAGE failures; the loop must still run, each pause within its cap, the
    last ones at it."""
    await async_wait_until(
        lambda: len(pauses.delays) > OUTAGE or loop.done(), 60, f"{OUTAGE} failures"
    )
    if loop.done():
        loop.result()  # the loop's own error, if it died of one
        raise AssertionError(f"the loop ended after {len(pauses.delays)} failures")
    assert all(0 < d <= cap for d in pauses.delays), max(pauses.delays)
    assert min(pauses.delays[-100:]) >= cap / 2  # still backing off: no reset, no overflow


class RefusingPort:
    """A port for a server that is not up yet: bound but not listening, so that every
    connection to it is refused, and no other process takes it meanwhile."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def release(self) -> None:
        """Just before the server starts on it."""
        self._socket.close()


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class FlakyDatabase(Database):
    """The real database, which can be made unreachable: reads then fail as they do when
    the server is gone."""

    down = False

    @contextmanager
    def read(self) -> Iterator[Session]:
        if self.down:
            raise DatabaseUnavailable("connection refused (injected outage)")
        with super().read() as session:
            yield session

    def current_revision(self) -> int:
        if self.down:
            raise DatabaseUnavailable("connection refused (injected outage)")
        return super().current_revision()


def test_publisher_outlives_a_database_outage_and_publishes_what_changed_meanwhile(
    database_url: str, secrets: Secrets
) -> None:
    async def scenario() -> None:
        db = FlakyDatabase(database_url)
        await asyncio.to_thread(db.migrate)
        keyring = KeyRing.parse(secrets.encryption_key)
        cache = SnapshotCache()
        pauses = RecordedPauses()
        # No periodic check: the retries after a failed build alone must bring it back.
        publisher = SnapshotPublisher(db, keyring, cache, "cp-test", 600, sleep=pauses)
        await publisher.publish_now()
        before = cache.version
        running = asyncio.create_task(publisher.run())
        try:
            db.down = True
            publisher.changed()  # a change it cannot read
            await outlive_the_outage(pauses, running, cap=5.0)
            # Committed during the outage (through another connection), read once it ends.
            revision, _ = await asyncio.to_thread(
                Providers(Database(database_url), keyring).create,
                "tester", name="during-the-outage", type="openai",
                base_url="https://api.example.com/v1",
            )  # fmt: skip
            assert revision > before
            db.down = False
            await async_wait_until(lambda: cache.version == revision, 15, "the new snapshot")
            current = cache.current()
            assert current is not None
            names = [p.name for p in current.for_role(Role.BRIDGED).providers]
            assert names == ["during-the-outage"]
            assert not running.done()
        finally:
            await stop(running)
            db.dispose()

    asyncio.run(scenario())


class BrokenBuilds(Database):
    """The real database, whose reads fail the way a bug would (not as an outage)."""

    broken = False

    @contextmanager
    def read(self) -> Iterator[Session]:
        if self.broken:
            raise RuntimeError("a bug in the snapshot build (injected)")
        with super().read() as session:
            yield session


def test_publisher_gives_up_on_a_build_that_fails_every_time(
    database_url: str, secrets: Secrets
) -> None:
    """Unlike the database being away, a build that fails for any other reason is not
    retried forever: the loop ends after MAX_UNEXPECTED_FAILURES in a row, so that its
    supervisor restarts the process rather than it serving an old snapshot as if all
    were well."""

    async def scenario() -> None:
        db = BrokenBuilds(database_url)
        await asyncio.to_thread(db.migrate)
        pauses = RecordedPauses()
        cache = SnapshotCache()
        keyring = KeyRing.parse(secrets.encryption_key)
        publisher = SnapshotPublisher(db, keyring, cache, "cp-test", 600, sleep=pauses)
        await publisher.publish_now()
        running = asyncio.create_task(publisher.run())
        try:
            db.broken = True
            publisher.changed()
            await async_wait_until(running.done, 15, "the publisher to give up")
            with pytest.raises(RuntimeError, match="injected"):
                running.result()
            assert len(pauses.delays) == MAX_UNEXPECTED_FAILURES - 1
        finally:
            if not running.done():
                await stop(running)
            db.dispose()

    asyncio.run(scenario())


def stored_request_ids(database_url: str) -> list[str]:
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return sorted(conn.scalars(sqlalchemy.select(Interception.request_id)))
    finally:
        engine.dispose()


def start_controlplane(on: RefusingPort, tmp_path: Path, secrets: Secrets) -> Controlplane:
    """A controlplane on the port that refused until now. (Its metrics port is chosen only
    now: one found free before a long wait may have been taken since.)"""
    on.release()
    url = f"sqlite:///{tmp_path / 'aibridge.db'}"
    return Controlplane(url, tmp_path, secrets, port=on.port).start()


def test_usage_reporter_outlives_a_controlplane_outage_and_delivers_what_it_buffered(
    tmp_path: Path, secrets: Secrets
) -> None:
    async def scenario() -> None:
        unreachable = RefusingPort()
        pauses = RecordedPauses()
        reporter = UsageReporter(
            (unreachable.address,), secrets.bridged, None,
            batch_size=100, flush_interval=0.2, capacity=1000, sleep=pauses,
        )  # fmt: skip
        ids = [f"req-{i}" for i in range(250)]
        for request_id in ids:
            reporter.record(interception(request_id, timedelta(minutes=1)))
        running = asyncio.create_task(reporter.run())
        cp = None
        try:
            await outlive_the_outage(pauses, running, cap=10.0)
            cp = await asyncio.to_thread(start_controlplane, unreachable, tmp_path, secrets)
            url = cp.database_url
            await async_wait_until(
                lambda: stored_request_ids(url) == sorted(ids), 30, "every record stored"
            )
            assert reporter.pending == 0
            assert not running.done()
        finally:
            await stop(running)
            await reporter.close()
            if cp is not None:
                await asyncio.to_thread(cp.stop)

    asyncio.run(scenario())


def test_subscriber_outlives_a_controlplane_outage_and_applies_its_snapshot(
    tmp_path: Path, secrets: Secrets
) -> None:
    async def scenario() -> None:
        unreachable = RefusingPort()
        applied: list[snapshot_pb2.ProviderSnapshot] = []
        pauses = RecordedPauses()
        subscriber = Subscriber(
            [unreachable.address], "bridged", secrets.bridged, applied.append, sleep=pauses
        )
        running = asyncio.create_task(subscriber.run())
        cp = None
        try:
            await outlive_the_outage(pauses, running, cap=5.0)
            assert applied == []
            cp = await asyncio.to_thread(start_controlplane, unreachable, tmp_path, secrets)
            created = await asyncio.to_thread(cp.admin.create_provider, "after-the-outage")
            await async_wait_until(
                lambda: subscriber.applied_version >= created.revision, 30, "the snapshot"
            )
            assert [p.name for p in applied[-1].providers] == ["after-the-outage"]
            assert subscriber.connected_to == cp.address
        finally:
            await subscriber.leave()
            await stop(running)
            if cp is not None:
                await asyncio.to_thread(cp.stop)

    asyncio.run(scenario())


@pytest.mark.postgres
def test_listener_outlives_a_postgresql_outage_then_listens_again(postgres_url: str) -> None:
    async def scenario() -> None:
        db = Database(postgres_url)
        await asyncio.to_thread(db.migrate)
        # PostgreSQL as the listener sees it: behind a port that, for now, refuses.
        unreachable = RefusingPort()
        conninfo = db.libpq_conninfo().replace("127.0.0.1:5432", f"127.0.0.1:{unreachable.port}")
        assert conninfo != db.libpq_conninfo()
        changes: list[None] = []
        pauses = RecordedPauses()
        listener = RevisionListener(conninfo, lambda: changes.append(None), 600, sleep=pauses)
        running = asyncio.create_task(listener.run())
        try:
            await outlive_the_outage(pauses, running, cap=5.0)
            assert changes == []
            unreachable.release()
            with Relay(5432, port=unreachable.port):
                # Connected again: told to check what it may have missed ...
                await async_wait_until(lambda: len(changes) == 1, 30, "the LISTEN connection")
                # ... and a revision committed from now on arrives by NOTIFY.
                await asyncio.to_thread(
                    Providers(db, KeyRing.parse(Secrets().encryption_key)).create,
                    "tester", name="notified", type="openai",
                    base_url="https://api.example.com/v1",
                )  # fmt: skip
                await async_wait_until(lambda: len(changes) == 2, 15, "the notification")
                assert not running.done()
                await stop(running)
        finally:
            await stop(running)
            db.dispose()

    asyncio.run(scenario())
