"""A process with supervised background tasks, one of which does as told, for
tests/test_supervise.py: python -m tests.run_supervised raise|return|steady [hang]

`raise`: the task dies of the old backoff's OverflowError; `return`: it ends; `steady`:
it runs until SIGTERM. With `hang`, the shutdown never ends by itself."""

from __future__ import annotations

import asyncio
import logging
import sys

from common import runtime
from common.logs import setup_logging
from common.supervise import Supervisor

log = logging.getLogger("run_supervised")

SHUTDOWN_LIMIT = 1.0


async def forever() -> None:
    await asyncio.Event().wait()


async def doomed(how: str) -> None:
    log.info("serving")
    await asyncio.sleep(0.1)
    if how == "raise":
        failures = 1024
        await asyncio.sleep(min(10.0, 0.2 * 2**failures))
    elif how == "steady":
        await forever()


async def serve(how: str, hang: bool) -> None:
    supervisor = Supervisor(shutdown_limit=SHUTDOWN_LIMIT)
    supervisor.start(forever(), "steady")
    supervisor.start(doomed(how), "doomed")
    await supervisor.wait()
    log.info("shutting down")
    if hang:
        await forever()
    await supervisor.stop()
    log.info("stopped")
    supervisor.check()


if __name__ == "__main__":
    setup_logging("text", "info", "supervised")
    runtime.run(serve(sys.argv[1], sys.argv[2:] == ["hang"]), "asyncio")
