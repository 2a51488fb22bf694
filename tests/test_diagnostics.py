"""`kill -USR1` on a running process prints what it is doing, and it goes on serving: every
thread's stack, then every asyncio task with the chain of awaits it is suspended in (a
process that waits forever on a future shows no Python frame in its thread stacks)."""

from __future__ import annotations

import signal

import httpx

from tests.harness import Bridged, Controlplane, ManagedProcess, wait_until


def dumps_its_stacks(process: ManagedProcess, task: str) -> None:
    assert process.proc is not None
    process.proc.send_signal(signal.SIGUSR1)
    # The main task waits for SIGTERM; `task` is one of its background tasks.
    wait_until(lambda: "in wait_for_signal" in process.log(), 15, f"{process.name}'s tasks")
    log = process.log()
    assert "Current thread" in log  # faulthandler's part
    assert f"<Task pending name='{task}'" in log
    assert process.proc.poll() is None


def test_usr1_prints_threads_and_tasks_and_the_process_goes_on(
    controlplane: Controlplane, bridged: Bridged
) -> None:
    dumps_its_stacks(controlplane, "publisher")
    dumps_its_stacks(bridged, "usage")
    assert httpx.get(bridged.url + "/readyz", timeout=10).status_code == 200
    controlplane.admin.wait_applied(controlplane.admin.revision())
