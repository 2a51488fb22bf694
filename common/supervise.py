"""Long-lived background tasks that cannot die silently.

A process starts each of its background loops through a Supervisor. Should one raise
(anything but cancellation) or return, though it is meant to run until shutdown, the
failure is logged with its traceback and the supervisor's `wait` returns as a signal
would: the process shuts down as usual and ends with status 1, for its manager to
restart it. A process half alive (serving, with its publisher or usage reporter dead)
is worse than one restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any

from common.lifecycle import wait_for_signal

log = logging.getLogger(__name__)

# What a process's shutdown may take, after a task failed, beyond its own grace for the
# requests in flight (a last usage flush, a goodbye to the controlplane).
SHUTDOWN_MARGIN = 30.0
# A task still running this long after its cancellation is cancelled again.
RECANCEL_AFTER = 1.0


class BackgroundTaskFailed(Exception):
    """A supervised task failed; it was logged then. The process ends with status 1
    (runtime.run)."""


class Supervisor:
    def __init__(self, shutdown_limit: float | None = None) -> None:
        """After a failure, a shutdown that has not ended the process within
        `shutdown_limit` seconds ends it anyway (status 1): a wedged shutdown must not
        keep it half alive either. None: no limit (for tests running in-process)."""
        self.shutdown_limit = shutdown_limit
        self.failed: list[str] = []  # names of the tasks that failed
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping: set[asyncio.Task[None]] = set()  # cancelled on purpose
        self._stop = asyncio.Event()

    def start(self, loop: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(loop, name=name)
        task.add_done_callback(self._ended)
        self._tasks.append(task)
        return task

    async def wait(self) -> None:
        """Returns on SIGTERM or SIGINT, or as soon as a supervised task fails."""
        await wait_for_signal(self._stop)

    async def stop(self, *tasks: asyncio.Task[None]) -> None:
        """Cancels `tasks` (every task, if none is named) and waits for them to end. One
        still running RECANCEL_AFTER later is cancelled again: something it awaited lost
        the cancellation (asyncio.wait_for can on Python 3.11, and redis-py uses it), and
        a shutdown must not wait for it forever."""
        tasks = tasks or tuple(self._tasks)
        self._stopping.update(tasks)
        pending = set(tasks)
        while True:
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER)
            if not pending:
                return
            for task in pending:
                log.warning("%s still running after its cancellation: cancelled again",
                            task.get_name())  # fmt: skip

    def check(self) -> None:
        """Raises BackgroundTaskFailed if a task failed: call it last, once the
        shutdown is done."""
        if self.failed:
            raise BackgroundTaskFailed(", ".join(self.failed))

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        name = task.get_name()
        exc = task.exception()
        if exc is not None:
            log.error("%s failed: shutting down (status 1)", name, exc_info=exc)
        elif task in self._stopping:
            return  # it ended as it was told to
        else:
            log.error("%s ended, though it should run until shutdown: shutting down", name)
        self.failed.append(name)
        self._stop.set()
        if self.shutdown_limit is not None and len(self.failed) == 1:
            _exit_after(self.shutdown_limit, name)


def _exit_after(seconds: float, failed: str) -> None:
    """Ends the process with status 1 in `seconds`, from a thread of its own: it fires
    even if the event loop is stuck, or the interpreter waits for a thread at exit."""

    def expire() -> None:
        # Neither the logging module nor a blocking write: the wedged main thread may
        # hold a handler's lock, or be stuck writing to a full stderr itself.
        message = (
            f"shutdown after {failed} failed has taken over {seconds:.0f}s: "
            "exiting now (status 1)\n"
        )
        with contextlib.suppress(OSError):
            os.set_blocking(2, False)
            os.write(2, message.encode())
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
