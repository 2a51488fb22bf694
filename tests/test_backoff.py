"""The retry loops' pause: exponential, capped, jittered, at any failure count."""

from __future__ import annotations

import asyncio

from common.backoff import Backoff, backoff_delay


def test_the_delay_doubles_up_to_the_cap() -> None:
    ceilings = [backoff_delay(n, 0.1, 5.0, rand=lambda: 1.0) for n in range(10)]
    assert ceilings == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0]


def test_jitter_keeps_between_half_and_all_of_the_ceiling() -> None:
    assert backoff_delay(3, 0.1, 5.0, rand=lambda: 0.0) == 0.4
    assert backoff_delay(3, 0.1, 5.0, rand=lambda: 0.999) <= 0.8


def test_no_failure_count_overflows() -> None:
    # 2 ** 1024 does not fit a float: an uncapped exponent raised OverflowError here.
    for failures in (1023, 1024, 1025, 10**6, 10**18):
        assert 2.5 <= backoff_delay(failures, 0.1, 5.0) <= 5.0


def test_a_success_starts_again_from_the_base() -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    async def scenario() -> None:
        backoff = Backoff(0.2, 10.0, sleep=sleep, rand=lambda: 1.0)
        for _ in range(3000):
            backoff.failed()
            await backoff.pause()
        backoff.reset()
        backoff.failed()
        await backoff.pause()

    asyncio.run(scenario())
    assert pauses[:3] == [0.4, 0.8, 1.6]
    assert pauses[2999] == 10.0
    assert pauses[-1] == 0.4
