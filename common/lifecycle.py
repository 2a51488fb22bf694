"""Process lifecycle shared by the three servers."""

from __future__ import annotations

import asyncio
import signal


async def wait_for_signal(stop: asyncio.Event | None = None) -> None:
    """Returns on the first SIGTERM or SIGINT, or once `stop` is set (a supervised task
    failed, say): the caller then shuts down gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def wait_set(event: asyncio.Event, timeout: float | None) -> bool:
    """Waits up to `timeout` seconds for `event`; says whether it was set.

    Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives just as
    the event is set (gh-86296), and a loop around it then runs on with the shutdown
    waiting for it. A controlplane hung at SIGTERM that way. asyncio.timeout has no
    such gap, and no task of its own per wait."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
