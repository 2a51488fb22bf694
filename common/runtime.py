"""How a process runs its event loop: uvloop for the data planes unless told otherwise,
the objects made at start-up frozen out of the garbage collector's full passes, every
file it creates readable by its own user only, and status 1 if a supervised background
task failed."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import resource
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import uvloop

from common.logs import dump_threads_on_usr1
from common.supervise import BackgroundTaskFailed

EVENT_LOOPS = ("uvloop", "asyncio")
# Connections the kernel queues for a server before it accepts them (capped by
# net.core.somaxconn): a storm of a thousand new streams a second overflowed 1,024 while
# the loop was busy, and each connection dropped there waits a second for its SYN's retry.
LISTEN_BACKLOG = 4096


def raise_descriptor_limit() -> None:
    """Each stream holds two sockets (client and upstream): the soft limit on open files,
    often 1,024, goes up to the hard one, as Go's runtime does at start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    raise_descriptor_limit()
    # What a server writes holds secrets or leads to them (the database and SQLite's -wal
    # and -shm beside it, the CA key, snapshot caches): 0600, whatever the shell's umask.
    os.umask(0o077)
    # Modules, classes and configuration live as long as the process: a full collection
    # that walks them all is pause time for nothing.
    gc.collect()
    gc.freeze()
    try:
        if event_loop == "uvloop":
            uvloop.run(_with_task_dumps(main))
        else:
            asyncio.run(_with_task_dumps(main))
    except BackgroundTaskFailed:
        sys.exit(1)  # logged, with its traceback, when it failed


async def _with_task_dumps(main: Coroutine[Any, Any, None]) -> None:
    """`kill -USR1 PID` prints every thread's stack to stderr (faulthandler, from the
    signal handler itself; logs.py sets it up before the loop) and, while the loop runs,
    every task's too: a process waiting forever on a future shows no Python frame in
    its threads, only in its tasks."""
    loop = asyncio.get_running_loop()
    # The loop's handler goes in first, and faulthandler over it, chaining to it.
    faulthandler.unregister(signal.SIGUSR1)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    faulthandler.register(signal.SIGUSR1, all_threads=True, chain=True)
    try:
        await main
    finally:
        # asyncio's loop puts the default action (which ends the process) back when it
        # closes: the loop's handler goes now, and faulthandler alone stays, threads
        # only, to the process's end.
        faulthandler.unregister(signal.SIGUSR1)
        loop.remove_signal_handler(signal.SIGUSR1)
        dump_threads_on_usr1()


def _dump_tasks() -> None:
    """Each task and the chain of awaits it is suspended in, innermost last."""
    lines = []
    for task in asyncio.all_tasks():
        lines.append(f"{task!r}")
        awaiting: Any = task.get_coro()
        while awaiting is not None:
            frame = _attribute(awaiting, "cr_frame", "gi_frame")
            if frame is not None:
                where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
                lines.append(f"  {where} in {frame.f_code.co_name}")
            awaiting = _attribute(awaiting, "cr_await", "gi_yieldfrom")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _attribute(obj: Any, *names: str) -> Any:
    """The first of `names` that `obj` has and is not None (coroutines and generators
    name theirs differently)."""
    return next((v for name in names if (v := getattr(obj, name, None)) is not None), None)
