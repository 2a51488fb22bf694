"""Keeps the snapshot cache at the database's revision.

Three things say "the revision may have moved": a mutation committed through this
replica, a NOTIFY from another replica, and a periodic check (the safety net for a
lost notification). Each only marks the cache dirty; one loop rebuilds, so a burst
of changes costs one rebuild per pass, never a queue.

It also moves the revision forward when a subscriber shows the database went back in
time, so that the gRPC stream handling never writes to the database itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import Counter, Gauge, Histogram

from common.backoff import Backoff, Sleep
from common.lifecycle import wait_set
from controlplane.cache import SnapshotCache
from controlplane.snapshots import SnapshotBuilder
from controlplane.store.db import Database, DatabaseUnavailable
from controlplane.store.keyring import KeyRing
from controlplane.store.revision import advance_past

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = Gauge("aibridge_controlplane_snapshot_version", "Version of the served snapshot")
SNAPSHOT_BUILD_SECONDS = Histogram(
    "aibridge_controlplane_snapshot_build_seconds", "Time to read and cut a snapshot"
)
SNAPSHOT_BUILD_FAILURES = Counter(
    "aibridge_controlplane_snapshot_build_failures_total", "Snapshot builds that failed"
)
# Consecutive unexpected build failures (not the database being away) after which the
# publisher gives up and its process ends, to be restarted.
MAX_UNEXPECTED_FAILURES = 10


class SnapshotPublisher:
    def __init__(
        self,
        db: Database,
        keyring: KeyRing,
        cache: SnapshotCache,
        controlplane_id: str,
        check_interval: float,
        on_database: Callable[[bool], None] = lambda _up: None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.db = db
        self._on_database = on_database  # told when the database is found down or back
        self.cache = cache
        self._builder = SnapshotBuilder(db, keyring, controlplane_id)
        self.check_interval = check_interval
        self._dirty = asyncio.Event()
        # Its own thread: admin calls queued on the default pool must not delay a snapshot.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
        self._backoff = Backoff(0.1, 5.0, sleep=sleep)
        self._ahead: tuple[int, str] | None = None  # the highest version a subscriber holds

    def changed(self) -> None:
        self._dirty.set()

    async def publish_now(self) -> None:
        """Builds and publishes a snapshot of the current revision (used at start-up)."""
        started = time.perf_counter()
        snapshot = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._builder.build
        )
        SNAPSHOT_BUILD_SECONDS.observe(time.perf_counter() - started)
        if self.cache.set(snapshot):
            SNAPSHOT_VERSION.set(snapshot.version)
            log.info("snapshot version %d published", snapshot.version)

    async def run(self) -> None:
        unexpected = 0  # consecutive failures that were not the database being away
        while True:
            if not await wait_set(self._dirty, self.check_interval):
                if not await self._revision_moved():
                    continue
            self._dirty.clear()
            try:
                await self._advance_past_subscribers()
                await self.publish_now()
                self._backoff.reset()
                unexpected = 0
                self._on_database(True)
                continue
            except DatabaseUnavailable as exc:
                self._on_database(False)
                log.warning("snapshot build failed, database unavailable: %s", exc)
            except Exception:
                unexpected += 1
                if unexpected >= MAX_UNEXPECTED_FAILURES:
                    # A build that fails every time is a bug a retry will not fix; a
                    # controlplane serving an old snapshot as if all were well is worse
                    # than one restarted (the supervisor ends the process).
                    raise
                log.exception("snapshot build failed")
            SNAPSHOT_BUILD_FAILURES.inc()
            self._dirty.set()  # try again after a pause
            self._backoff.failed()
            await self._backoff.pause()

    def subscriber_ahead(self, version: int, reason: str) -> None:
        """A subscriber holds `version`, above this database's revision, on the same
        database: the database went back in time (a restored backup). The publisher's
        loop moves the revision past it, or the subscribers would ignore every change
        until the counter caught up, and publishes the new revision."""
        if self._ahead is None or version > self._ahead[0]:
            self._ahead = (version, reason)
        self._dirty.set()

    async def _advance_past_subscribers(self) -> None:
        """Raises DatabaseUnavailable (the advance is then tried again with the build)."""
        if self._ahead is None:
            return
        version, reason = self._ahead
        advanced = await asyncio.get_running_loop().run_in_executor(
            self._executor, advance_past, self.db, version, reason
        )
        self._ahead = None
        if advanced is None:
            return  # the revision is past it already (another replica moved it)
        log.warning(
            "%s, above this database's revision: the database went back in time "
            "(a restored backup?); revision moved to %d so that every subscriber "
            "takes its current state",
            reason,
            advanced,
        )

    async def _revision_moved(self) -> bool:
        try:
            revision = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.db.current_revision
            )
        except DatabaseUnavailable as exc:
            log.warning("revision check failed, database unavailable: %s", exc)
            self._on_database(False)
            return False
        self._on_database(True)
        return revision > self.cache.version
