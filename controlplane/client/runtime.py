"""How a process runs its event loop: uvloop for the data planes unless told otherwise,
and the objects made at start-up frozen out of the garbage collector's full passes."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any

import uvloop

EVENT_LOOPS = ("uvloop", "asyncio")


def run(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    # Modules, classes and configuration live as long as the process: a full collection
    # that walks them all is pause time for nothing.
    gc.collect()
    gc.freeze()
    if event_loop == "uvloop":
        uvloop.run(main)
    else:
        asyncio.run(main)
