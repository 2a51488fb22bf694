"""The subscribers of this replica: who they are, what they applied, and the ones whose
stream ended, remembered for a while (they may be reconnecting: waits cover them for
their fleet grace, see controlplane/fleet.py).

A subscriber is the process behind a stream, not the id it claims: each process makes a
random instance key, sent with its Watch, Acks and Leave, and the registry keys entries
by (role, id, SHA-256 of that key). Another Watch under the same id (a second process, or
an impostor holding the role's credential) is another entry: it cannot replace the real
one, its acks count only for itself, and its end removes only itself.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from common.wire import ACK_ERROR_MAX, SkippedProvider
from controlplane.auth import Role
from controlplane.store.models import utcnow

# How long an entry whose stream ended is remembered: the longest fleet grace a wait may
# ask for, and what status shows of the subscribers that went away.
MEMORY = timedelta(hours=1)
# At most this many such entries (the oldest go first): a subscriber that reconnects
# again and again under new ids cannot grow the registry without bound.
MAX_REMEMBERED = 10_000


def instance_of(key: str) -> str:
    """What the controlplane keeps of an instance key: its SHA-256 (hex), never the key."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class SubscriberState:
    id: str
    role: Role
    instance: str  # instance_of(its instance key)
    address: str
    connected_since: datetime = field(default_factory=utcnow)
    applied_version: int = 0
    sent_version: int = 0
    last_error: str = ""
    skipped: tuple[SkippedProvider, ...] = ()
    controlplane_id: str = ""
    # When it was last seen connected; None while its stream is open.
    disconnected_at: datetime | None = None
    # It said it was going away (Leave): neither shown nor waited for. Remembered like the
    # others, so that it outranks what another replica remembers of the same process.
    left: bool = False

    @property
    def connected(self) -> bool:
        return self.disconnected_at is None

    @property
    def fingerprint(self) -> str:
        """Enough of `instance` to tell two processes under one id apart, in logs and status."""
        return self.instance[:12]

    @property
    def key(self) -> tuple[Role, str, str]:
        return (self.role, self.id, self.instance)


class SubscriberRegistry:
    def __init__(self, controlplane_id: str = "") -> None:
        self.controlplane_id = controlplane_id
        # By (role, id, instance): one role's credential cannot touch another role's
        # entries, nor one process another's.
        self._subscribers: dict[tuple[Role, str, str], SubscriberState] = {}
        # Replaced on every change; waiters hold the one that was current when they looked.
        self._changed = asyncio.Event()

    def connect(
        self, subscriber_id: str, role: Role, instance: str, address: str, applied_version: int
    ) -> SubscriberState:
        # The same process reconnecting can arrive before its old stream is noticed dead:
        # the newest stream wins, and replaces what was remembered of it.
        state = SubscriberState(
            subscriber_id, role, instance, address, applied_version=applied_version,
            controlplane_id=self.controlplane_id,
        )  # fmt: skip
        self._subscribers[state.key] = state
        self._notify()
        return state

    def disconnect(self, state: SubscriberState) -> None:
        """Its stream ended: remembered as disconnected, unless a newer stream of the same
        process replaced it meanwhile."""
        if self._subscribers.get(state.key) is state and state.connected:
            state.disconnected_at = utcnow()
            self._forget_old()
            self._notify()

    def leave(self, state: SubscriberState) -> None:
        """The process said it is going away for good."""
        state.left = True
        if state.connected:
            state.disconnected_at = utcnow()
        self._notify()

    def find(self, role: Role, subscriber_id: str, instance: str) -> SubscriberState | None:
        return self._subscribers.get((role, subscriber_id, instance))

    def recall(self, states: Iterable[SubscriberState]) -> None:
        """Takes in what an earlier process of this replica remembered (read back from the
        fleet table after a restart), without replacing anything newer."""
        for state in states:
            self._subscribers.setdefault(state.key, state)
        self._forget_old()
        self._notify()

    def ack(
        self, state: SubscriberState, version: int, error: str, skipped: Iterable[SkippedProvider]
    ) -> None:
        if error:
            state.last_error = f"version {version}: {error}"[:ACK_ERROR_MAX]
        else:
            # Acks arrive in order (the subscriber awaits each) and say what it holds now,
            # which may be lower than what it claimed on connecting: a snapshot of another
            # database (a cache from before the database was replaced) counts for nothing.
            state.applied_version = version
            state.last_error = ""
            state.skipped = tuple(skipped)
        self._notify()

    def all(self) -> list[SubscriberState]:
        """Every entry: connected, disconnected and left (within MEMORY)."""
        self._forget_old()
        return sorted(self._subscribers.values(), key=lambda s: s.key)

    def changed(self) -> asyncio.Event:
        """An event set at the next change (connect, ack, disconnect, leave)."""
        return self._changed

    def _forget_old(self) -> None:
        too_old = utcnow() - MEMORY
        gone = [
            (s.disconnected_at, s.key)
            for s in self._subscribers.values()
            if s.disconnected_at is not None
        ]
        if len(gone) > MAX_REMEMBERED:
            gone.sort()
            for _at, key in gone[: len(gone) - MAX_REMEMBERED]:
                del self._subscribers[key]
        for at, key in gone:
            if at < too_old:
                self._subscribers.pop(key, None)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
