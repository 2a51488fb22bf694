"""The subscribers connected to this replica: who they are, what they applied, and waits
for a revision to be applied by all of them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from controlplane.auth import Role
from controlplane.store.models import utcnow


@dataclass(frozen=True)
class Skipped:
    provider_id: str
    name: str
    reason: str


@dataclass
class SubscriberState:
    id: str
    role: Role
    address: str
    connected_since: datetime = field(default_factory=utcnow)
    applied_version: int = 0
    sent_version: int = 0
    last_error: str = ""
    skipped: tuple[Skipped, ...] = ()
    controlplane_id: str = ""


class SubscriberRegistry:
    def __init__(self, controlplane_id: str = "") -> None:
        self.controlplane_id = controlplane_id
        # By (role, id): one role's credential cannot touch another role's entries.
        self._subscribers: dict[tuple[Role, str], SubscriberState] = {}
        # Replaced on every change; waiters hold the one that was current when they looked.
        self._changed = asyncio.Event()

    def connect(
        self, subscriber_id: str, role: Role, address: str, applied_version: int
    ) -> SubscriberState:
        # A reconnect can arrive before the old stream is noticed dead: the newest wins.
        state = SubscriberState(
            subscriber_id, role, address, applied_version=applied_version,
            controlplane_id=self.controlplane_id,
        )  # fmt: skip
        self._subscribers[(role, subscriber_id)] = state
        self._notify()
        return state

    def disconnect(self, state: SubscriberState) -> None:
        if self._subscribers.get((state.role, state.id)) is state:
            del self._subscribers[(state.role, state.id)]
            self._notify()

    def get(self, role: Role, subscriber_id: str) -> SubscriberState | None:
        return self._subscribers.get((role, subscriber_id))

    def ack(
        self, state: SubscriberState, version: int, error: str, skipped: Iterable[Skipped]
    ) -> None:
        if error:
            state.last_error = f"version {version}: {error}"[:1000]
        else:
            # Acks arrive in order (the subscriber awaits each) and say what it holds now,
            # which may be lower than what it claimed on connecting: a snapshot of another
            # database (a cache from before the database was replaced) counts for nothing.
            state.applied_version = version
            state.last_error = ""
            state.skipped = tuple(skipped)
        self._notify()

    def all(self) -> list[SubscriberState]:
        return sorted(self._subscribers.values(), key=lambda s: (s.role, s.id))

    def laggards(self, revision: int) -> list[SubscriberState]:
        return [s for s in self.all() if s.applied_version < revision]

    def changed(self) -> asyncio.Event:
        """An event set at the next change (connect, ack, disconnect)."""
        return self._changed

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
