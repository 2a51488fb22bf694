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
