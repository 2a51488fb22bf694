"""The current snapshot, and the watches waiting for the next one.

Latest wins: a watch holds one slot, not a queue, so a slow subscriber costs one
reference to a shared snapshot however far behind it is, and is sent the newest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter

from controlplane.snapshots import Snapshot

SUPERSEDED = Counter(
    "aibridge_controlplane_snapshots_superseded_total",
    "Snapshots replaced before a slow subscriber took them (its queue holds one: latest wins)",
)


class WatchSlot:
    def __init__(self) -> None:
        self._latest: Snapshot | None = None
        self._sent_version = 0
        self._ready = asyncio.Event()
        self._closed = False

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    def offer(self, snapshot: Snapshot) -> None:
        if self._latest is None or snapshot.version > self._latest.version:
            if self._latest is not None and self._latest.version > self._sent_version:
                SUPERSEDED.inc()
            self._latest = snapshot
            if snapshot.version > self._sent_version:
                self._ready.set()

    async def next(self) -> Snapshot | None:
        """The newest snapshot not yet taken (versions only go up); None once closed."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._closed:
                return None
            latest = self._latest
            if latest is not None and latest.version > self._sent_version:
                self._sent_version = latest.version
                return latest


class SnapshotCache:
    def __init__(self) -> None:
        self._current: Snapshot | None = None
        self._watches: set[WatchSlot] = set()
        self._closed = False

    def current(self) -> Snapshot | None:
        return self._current

    @property
    def version(self) -> int:
        return self._current.version if self._current else 0

    def set(self, snapshot: Snapshot) -> bool:
        """Publishes `snapshot` if it is newer than the current one."""
        if self._current is not None and snapshot.version <= self._current.version:
            return False
        self._current = snapshot
        for watch in self._watches:
            watch.offer(snapshot)
        return True

    @contextmanager
    def watch(self) -> Iterator[WatchSlot]:
        # Registered before the current snapshot is read: nothing published after this
        # line can be missed (rule 1, no gap).
        watch = WatchSlot()
        self._watches.add(watch)
        try:
            if self._closed:
                watch.close()
            elif self._current is not None:
                watch.offer(self._current)
            yield watch
        finally:
            self._watches.discard(watch)

    def close(self) -> None:
        """Ends every watch (on shutdown), so subscribers move to another replica at once."""
        self._closed = True
        for watch in self._watches:
            watch.close()

    @property
    def watch_count(self) -> int:
        return len(self._watches)
