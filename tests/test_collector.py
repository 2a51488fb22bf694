"""common/collector.py: what survives a tick is frozen out of automatic collections, and a
cycle among frozen objects is still freed by the full collection, when quiet or due."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from common.collector import Collector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def frozen_cycle() -> weakref.ref[Node]:
    """Two objects that refer to each other, already frozen, and nothing else to them."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    gc.freeze()
    return weakref.ref(a)


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    """The test process's collector as it found it."""
    yield
    gc.unfreeze()
    gc.collect()


def ticks(collector: Collector, n: int) -> None:
    async def run() -> None:
        collector.start()
        try:
            for _ in range(n):
                await asyncio.sleep(collector.freeze_every * 2)
        finally:
            collector.stop()

    asyncio.run(run())


def test_what_survives_a_tick_is_left_out_of_automatic_collections() -> None:
    collector = Collector(lambda: 1, freeze_every=0.01)
    kept = Node()
    assert any(o is kept for o in gc.get_objects())
    ticks(collector, 2)
    assert not any(o is kept for o in gc.get_objects())  # in the permanent generation
    gc.collect()  # an automatic collection's kind: it does not free a frozen cycle
    cycle = frozen_cycle()
    gc.collect()
    assert cycle() is not None


def test_a_frozen_cycle_is_freed_once_nothing_has_been_in_flight_for_a_while() -> None:
    cycle = frozen_cycle()
    ticks(Collector(lambda: 1, freeze_every=0.01, quiet_for=0.0, quiet_every=0.0), 3)
    assert cycle() is not None  # busy: no full collection before it is due
    ticks(Collector(lambda: 0, freeze_every=0.01, quiet_for=60.0, quiet_every=0.0), 3)
    assert cycle() is not None  # idle, but not for long enough (calls one after another)
    ticks(Collector(lambda: 0, freeze_every=0.01, quiet_for=0.0, quiet_every=0.0), 2)
    assert cycle() is None


def test_a_frozen_cycle_is_freed_when_a_full_collection_is_due_however_busy() -> None:
    cycle = frozen_cycle()
    ticks(Collector(lambda: 5, freeze_every=0.01, full_every=0.0), 2)
    assert cycle() is None


def test_it_reports_what_a_full_collection_freed() -> None:
    frozen_cycle()
    assert Collector(lambda: 0).collect_all("test") >= 2
