"""Deleting the interceptions older than the retention period.

Soon after start and then every interval, the calls that started before now − retention
are deleted in small batches, each its own short transaction, so that the Usage service's
inserts never wait long behind a deletion. A database that is away is tried again at the
next interval. Replicas may run this together: on PostgreSQL each batch takes rows the
others have not locked, and on SQLite writers take turns anyway.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from prometheus_client import Counter

from controlplane.store.db import Database, DatabaseUnavailable
from controlplane.store.models import Interception, utcnow

log = logging.getLogger(__name__)

BATCH = 1000
FIRST_RUN_SECONDS = 10.0  # after start: the first run must not slow the start itself

DELETED = Counter(
    "aibridge_controlplane_interceptions_deleted_total",
    "Interceptions deleted for being older than the retention period",
)


class Retention:
    def __init__(
        self, db: Database, period: timedelta, interval: float, batch: int = BATCH
    ) -> None:
        self.db = db
        self.period = period
        self.interval = interval
        self.batch = batch

    async def run(self) -> None:
        await asyncio.sleep(min(FIRST_RUN_SECONDS, self.interval))
        while True:
            try:
                await self.run_once()
            except DatabaseUnavailable as exc:
                log.warning(
                    "retention: database unavailable, trying again in %gs: %s", self.interval, exc
                )
            await asyncio.sleep(self.interval)

    async def run_once(self) -> int:
        """Deletes every interception started before now − period; returns how many."""
        before = utcnow() - self.period
        deleted = 0
        while True:
            count = await asyncio.to_thread(self._delete_batch, before)
            deleted += count
            DELETED.inc(count)
            if count < self.batch:
                break
        if deleted:
            log.info(
                "retention: deleted %d interceptions started before %s",
                deleted,
                before.isoformat(timespec="seconds"),
            )
        return deleted

    def _delete_batch(self, before: datetime) -> int:
        return self.db.delete_before(
            Interception.request_id, Interception.started_at, before, self.batch
        )
