"""Short garbage-collection pauses with thousands of streams open.

CPython's collector walks every tracked object of the generations it collects, and a
full collection walks them all. A stream through bridged keeps about a hundred objects
alive for its whole life (request, response, connections, tasks, their frames); with
2,000 streams open that is 200,000 objects, and a full collection over them stalled
every stream for 100-250 ms (issue 17). It found nothing to free: those objects go by
reference counting when their stream ends, so walking them again and again is wasted.

So what survives a moment is frozen: every `freeze_every` seconds gc.freeze() moves the
tracked objects into the permanent generation (a list splice, whatever their number),
and each automatic collection walks only what was allocated since. A frozen object
freed by reference counting is freed as usual; only a reference cycle among frozen
objects waits, for a full collection over everything (unfreeze, collect, freeze): once
nothing has been in flight for `quiet_for` seconds (at each tick: calls one after another
are not quiet), at most every `quiet_every` seconds, and else every `full_every`
seconds, however busy the process is. Each is logged when it found anything or took
long, and its pause is in the GC pause metric like any other.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Collector:
    def __init__(
        self,
        in_flight: Callable[[], float],
        freeze_every: float = 0.05,
        quiet_for: float = 1.0,
        quiet_every: float = 60.0,
        full_every: float = 900.0,
    ) -> None:
        self._in_flight = in_flight
        self.freeze_every = freeze_every
        self.quiet_for = quiet_for
        self.quiet_every = quiet_every
        self.full_every = full_every
        self._last_full = self._last_busy = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.freeze_every, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = time.monotonic()
        since = now - self._last_full
        busy = bool(self._in_flight())
        if busy:
            self._last_busy = now
        quiet = not busy and now - self._last_busy >= self.quiet_for
        if (quiet and since >= self.quiet_every) or since >= self.full_every:
            self.collect_all("quiet" if quiet else "due")
        gc.freeze()
        self._handle = asyncio.get_running_loop().call_later(self.freeze_every, self._tick)

    def collect_all(self, why: str) -> int:
        """A full collection over every object, frozen ones included; returns what it
        freed. The caller freezes the survivors again."""
        gc.unfreeze()
        started = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - started
        self._last_full = time.monotonic()
        # Reported when it mattered: an idle process does this every `quiet_every`.
        level = logging.INFO if found or took > 0.05 else logging.DEBUG
        log.log(level, "full garbage collection (%s): %d unreachable objects in %.0f ms", why,
                found, took * 1000)  # fmt: skip
        return found
