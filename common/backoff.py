"""The pause between a retry loop's attempts: exponential in the consecutive failures,
capped, and jittered so that replicas retrying together do not retry in step.

Every retry loop uses it and none computes its own: a copy without the cap once killed
two loops after 1,024 failures (`2 ** 1024` does not fit a float).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]

# Past this many doublings any base has long passed any cap; the exponent stops here so
# that no failure count, however large, overflows.
MAX_DOUBLINGS = 64


def backoff_delay(
    failures: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after `failures` consecutive failures: base·2^failures, at most
    `cap`, jittered to between half of that and all of it."""
    ceiling = min(cap, base * 2.0 ** min(max(failures, 0), MAX_DOUBLINGS))
    return ceiling * (0.5 + 0.5 * rand())


class Backoff:
    """One loop's count of consecutive failures and the pause that follows each.

    `sleep` is injectable so that a test can drive a loop through thousands of failures
    in a moment, recording the pauses instead of taking them."""

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._sleep = sleep
        self._rand = rand

    def reset(self) -> None:
        """The loop succeeded: the next failure starts from the base again."""
        self.failures = 0

    def failed(self) -> None:
        self.failures += 1

    def delay(self) -> float:
        return backoff_delay(self.failures, self.base, self.cap, self._rand)

    async def pause(self) -> None:
        """Waits the delay the failures so far call for."""
        await self._sleep(self.delay())
