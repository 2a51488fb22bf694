"""Every replica's subscribers, so that status and waits through any replica cover all.

Each replica mirrors its own registry (its connected subscribers, and the ones whose
stream ended within registry.MEMORY) into the `subscribers` table whenever it changes,
and every few seconds as a heartbeat. It reads the other replicas' rows: a replica that
stops refreshing its rows (it died) counts its connected subscribers as disconnected
since its last refresh, and so does a replica restarted under the same id with the rows
its previous process left.

Who a wait covers is decided in one place: `waited_for`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from operator import attrgetter

from sqlalchemy import delete, select

from common.lifecycle import wait_set
from common.wire import SkippedProvider
from controlplane.auth import Role
from controlplane.registry import MEMORY, SubscriberRegistry, SubscriberState
from controlplane.store.db import Database, DatabaseUnavailable
from controlplane.store.models import SubscriberRow, utcnow

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
STALE_AFTER = timedelta(seconds=5 * HEARTBEAT_SECONDS)
REMOTE_POLL_SECONDS = 0.05
# After a change, the mirror waits this long before it writes: the acks of one snapshot
# by many subscribers arrive together and are written once, not once each.
MIRROR_DELAY_SECONDS = 0.05
DEFAULT_GRACE = timedelta(seconds=30)
MAX_GRACE = MEMORY  # a wait cannot cover what is no longer remembered


def merge(states: Iterable[SubscriberState]) -> list[SubscriberState]:
    """One entry per subscriber process (role, id, instance), from every replica's view.
    A process that moved between replicas is where it is connected (the newest stream,
    if a dead replica still lists it), else where it was seen last. An impostor under
    the same id is another instance: it never hides the real subscriber."""
    newest: dict[tuple[Role, str, str], SubscriberState] = {}
    for state in states:
        kept = newest.get(state.key)
        if kept is None or _recency(state) > _recency(kept):
            newest[state.key] = state
    return sorted(newest.values(), key=attrgetter("key"))


def _recency(state: SubscriberState) -> tuple[bool, datetime]:
    if state.disconnected_at is None:
        return (True, state.connected_since)
    return (False, state.disconnected_at)


def waited_for(
    states: Iterable[SubscriberState], now: datetime, grace: timedelta
) -> list[SubscriberState]:
    """The subscribers a wait covers: every one connected, and every one seen within
    `grace` (it may be reconnecting, and must not be missed), but none that left cleanly.
    One gone longer is presumed gone for good."""
    return [
        s
        for s in states
        if not s.left and (s.disconnected_at is None or s.disconnected_at >= now - grace)
    ]


class Fleet:
    def __init__(self, db: Database, registry: SubscriberRegistry, controlplane_id: str) -> None:
        self.db = db
        self.registry = registry
        self.controlplane_id = controlplane_id

    async def run(self) -> None:
        """Mirrors this replica's registry on every change, and at least every heartbeat."""
        while True:
            changed = self.registry.changed()
            await self.publish()
            if await wait_set(changed, HEARTBEAT_SECONDS):
                await asyncio.sleep(MIRROR_DELAY_SECONDS)  # gather the rest of the burst

    async def publish(self) -> None:
        """Writes this replica's rows. (On shutdown too, once every stream has ended: the
        other replicas then wait for its subscribers while they reconnect.)"""
        try:
            await asyncio.to_thread(self._publish, self.registry.all())
        except DatabaseUnavailable as exc:
            log.warning("cannot mirror subscribers: %s", exc)

    async def recall(self) -> None:
        """On start: the subscribers an earlier process under this replica's id had are
        reconnecting, not unknown; they are remembered as disconnected since its last
        refresh."""
        try:
            states = await asyncio.to_thread(self._read, True)
        except DatabaseUnavailable as exc:
            log.warning("cannot read the subscribers of this replica's last run: %s", exc)
            return
        self.registry.recall(states)

    async def all(self) -> list[SubscriberState]:
        """Every replica's subscribers, connected or remembered, except those that left."""
        return [s for s in self._merge(await asyncio.to_thread(self._read)) if not s.left]

    def _merge(self, others: list[SubscriberState]) -> list[SubscriberState]:
        return merge([*others, *self.registry.all()])

    async def wait_for(
        self, revision: int, timeout: float, grace: timedelta
    ) -> list[SubscriberState]:
        """Waits until every subscriber `waited_for` covers applied `revision`; returns the
        laggards when the time is up."""
        deadline = time.monotonic() + max(timeout, 0)
        others, read_at = await asyncio.to_thread(self._read), time.monotonic()
        while True:
            changed = self.registry.changed()
            if time.monotonic() - read_at >= REMOTE_POLL_SECONDS:
                # The other replicas' rows, at most once a poll: local acks (the usual
                # wake-up) need no database read.
                others, read_at = await asyncio.to_thread(self._read), time.monotonic()
            covered = waited_for(self._merge(others), utcnow(), grace)
            laggards = [s for s in covered if s.applied_version < revision]
            remaining = deadline - time.monotonic()
            if not laggards or remaining <= 0:
                return laggards
            # Local acks wake us at once. Other replicas' acks, and a disconnected
            # subscriber coming back through another replica, arrive through the table;
            # the same poll notices a disconnected one outstaying the grace.
            polled = any(
                s.controlplane_id != self.controlplane_id or not s.connected for s in laggards
            )
            pause = min(remaining, REMOTE_POLL_SECONDS) if polled else remaining
            await wait_set(changed, pause)

    def _publish(self, states: list[SubscriberState]) -> None:
        now = utcnow()
        with self.db.write() as session:
            session.execute(
                delete(SubscriberRow).where(
                    (SubscriberRow.controlplane_id == self.controlplane_id)
                    | (SubscriberRow.seen_at < now - MEMORY)
                )
            )
            session.add_all(
                SubscriberRow(
                    controlplane_id=self.controlplane_id,
                    role=s.role.value,
                    subscriber_id=s.id,
                    instance=s.instance,
                    address=s.address,
                    connected_since=s.connected_since,
                    applied_version=s.applied_version,
                    sent_version=s.sent_version,
                    last_error=s.last_error,
                    skipped=json.dumps([vars(k) for k in s.skipped]),
                    disconnected_at=s.disconnected_at,
                    left_cleanly=s.left,
                    seen_at=now,
                )
                for s in states
            )

    def _read(self, own: bool = False) -> list[SubscriberState]:
        """The other replicas' rows (with `own`, the rows this replica's id holds), within
        MEMORY. A row its replica has not refreshed for STALE_AFTER (all of them, with
        `own`: they are an earlier process's) is disconnected since its last refresh."""
        now = utcnow()
        stale_before = now if own else now - STALE_AFTER
        replica = SubscriberRow.controlplane_id
        which = replica == self.controlplane_id if own else replica != self.controlplane_id
        with self.db.read() as session:
            rows = session.scalars(select(SubscriberRow).where(which))
            states = [_state(r, stale_before) for r in rows]
        forgotten = now - MEMORY
        return [s for s in states if s.disconnected_at is None or s.disconnected_at >= forgotten]


def _state(row: SubscriberRow, stale_before: datetime) -> SubscriberState:
    disconnected_at = row.disconnected_at
    if disconnected_at is None and row.seen_at < stale_before:
        disconnected_at = row.seen_at  # its replica stopped: last seen then
    return SubscriberState(
        id=row.subscriber_id,
        role=Role(row.role),
        instance=row.instance,
        address=row.address,
        connected_since=row.connected_since,
        applied_version=row.applied_version,
        sent_version=row.sent_version,
        last_error=row.last_error,
        skipped=tuple(SkippedProvider(**k) for k in json.loads(row.skipped)),
        controlplane_id=row.controlplane_id,
        disconnected_at=disconnected_at,
        left=row.left_cleanly,
    )
