"""Every replica's subscribers, so that status and waits through any replica cover all.

Each replica mirrors its own registry into the `subscribers` table whenever it changes
(and every few seconds as a heartbeat); it reads the other replicas' rows, ignoring
those whose replica has stopped refreshing them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta
from operator import attrgetter

from sqlalchemy import delete, select

from controlplane.auth import Role
from controlplane.registry import Skipped, SubscriberRegistry, SubscriberState
from controlplane.store.db import Database, DatabaseUnavailable
from controlplane.store.models import SubscriberRow, utcnow

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
STALE_AFTER = timedelta(seconds=5 * HEARTBEAT_SECONDS)
REMOTE_POLL_SECONDS = 0.05
# After a change, the mirror waits this long before it writes: the acks of one snapshot
# by many subscribers arrive together and are written once, not once each.
MIRROR_DELAY_SECONDS = 0.05


class Fleet:
    def __init__(self, db: Database, registry: SubscriberRegistry, controlplane_id: str) -> None:
        self.db = db
        self.registry = registry
        self.controlplane_id = controlplane_id

    async def run(self) -> None:
        """Mirrors this replica's registry on every change, and at least every heartbeat."""
        while True:
            changed = self.registry.changed()
            try:
                await asyncio.to_thread(self._publish, self.registry.all())
            except DatabaseUnavailable as exc:
                log.warning("cannot mirror subscribers: %s", exc)
            try:
                await asyncio.wait_for(changed.wait(), HEARTBEAT_SECONDS)
                await asyncio.sleep(MIRROR_DELAY_SECONDS)  # gather the rest of the burst
            except TimeoutError:
                pass

    async def forget(self) -> None:
        """Removes this replica's rows (on shutdown)."""
        try:
            await asyncio.to_thread(self._publish, [])
        except DatabaseUnavailable:
            pass

    async def all(self) -> list[SubscriberState]:
        """This replica's subscribers (live) and the others' (as last mirrored), one entry
        per subscriber: one that moved here from a replica that died is still in that
        replica's rows until they go stale, and its live entry here is the truth."""
        return self._merge(await asyncio.to_thread(self._others))

    def _merge(self, others: list[SubscriberState]) -> list[SubscriberState]:
        newest: dict[tuple[Role, str], SubscriberState] = {}
        for state in sorted(others, key=attrgetter("connected_since")):
            newest[(state.role, state.id)] = state
        for state in self.registry.all():
            newest[(state.role, state.id)] = state
        return sorted(newest.values(), key=lambda s: (s.role, s.id))

    async def wait_for(self, revision: int, timeout: float) -> list[SubscriberState]:
        """Waits until every subscriber of every replica applied `revision`; returns the
        laggards when the time is up."""
        deadline = time.monotonic() + max(timeout, 0)
        others, read_at = await asyncio.to_thread(self._others), time.monotonic()
        while True:
            changed = self.registry.changed()
            if time.monotonic() - read_at >= REMOTE_POLL_SECONDS:
                # The other replicas' rows, at most once a poll: local acks (the usual
                # wake-up) need no database read.
                others, read_at = await asyncio.to_thread(self._others), time.monotonic()
            laggards = [s for s in self._merge(others) if s.applied_version < revision]
            remaining = deadline - time.monotonic()
            if not laggards or remaining <= 0:
                return laggards
            remote_waiting = any(s.controlplane_id != self.controlplane_id for s in laggards)
            # Local acks wake us at once; other replicas' arrive through the table.
            pause = min(remaining, REMOTE_POLL_SECONDS if remote_waiting else remaining)
            try:
                await asyncio.wait_for(changed.wait(), pause)
            except TimeoutError:
                pass

    def _publish(self, states: list[SubscriberState]) -> None:
        now = utcnow()
        with self.db.write() as session:
            session.execute(
                delete(SubscriberRow).where(
                    (SubscriberRow.controlplane_id == self.controlplane_id)
                    | (SubscriberRow.seen_at < now - STALE_AFTER)
                )
            )
            session.add_all(
                SubscriberRow(
                    controlplane_id=self.controlplane_id,
                    role=s.role.value,
                    subscriber_id=s.id,
                    address=s.address,
                    connected_since=s.connected_since,
                    applied_version=s.applied_version,
                    sent_version=s.sent_version,
                    last_error=s.last_error,
                    skipped=json.dumps([vars(k) for k in s.skipped]),
                    seen_at=now,
                )
                for s in states
            )

    def _others(self) -> list[SubscriberState]:
        with self.db.read() as session:
            rows = session.scalars(
                select(SubscriberRow).where(
                    SubscriberRow.controlplane_id != self.controlplane_id,
                    SubscriberRow.seen_at >= utcnow() - STALE_AFTER,
                )
            )
            return [
                SubscriberState(
                    id=r.subscriber_id,
                    role=Role(r.role),
                    address=r.address,
                    connected_since=r.connected_since,
                    applied_version=r.applied_version,
                    sent_version=r.sent_version,
                    last_error=r.last_error,
                    skipped=tuple(Skipped(**k) for k in json.loads(r.skipped)),
                    controlplane_id=r.controlplane_id,
                )
                for r in rows
            ]
