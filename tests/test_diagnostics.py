"""`kill -USR1` on a running process prints what it is doing, and it goes on serving: every
thread's stack, then every asyncio task with the chain of awaits it is suspended in (a
process that waits forever on a future shows no Python frame in its thread stacks)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from common.runtime import EVENT_LOOPS
from tests.harness import PYTHON, REPO, Bridged, Controlplane, ManagedProcess, clean_env, wait_until


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


@pytest.mark.parametrize("event_loop", EVENT_LOOPS)
def test_usr1_after_the_loop_has_closed_still_prints_the_threads(
    tmp_path: Path, event_loop: str
) -> None:
    """A process stuck after its loop closed (joining a thread, say) is when one sends
    USR1: it must print its threads, not die of the signal's default action."""
    code = (
        "import asyncio, sys\n"
        "from common import logs, runtime\n"
        "logs.setup_logging('text', 'INFO', 'test')\n"
        f"runtime.run(asyncio.sleep(0), {event_loop!r})\n"
        "print('loop closed', flush=True)\n"
        "sys.stdin.readline()\n"
        "print('still here', flush=True)\n"
    )
    stderr = tmp_path / "stderr"
    with stderr.open("w") as sink:
        process = subprocess.Popen(
            [PYTHON, "-c", code], cwd=REPO, env=clean_env(), text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sink,
        )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:
        assert process.stdout.readline() == "loop closed\n"
        process.send_signal(signal.SIGUSR1)
        wait_until(lambda: "Current thread" in stderr.read_text(), 15, "the thread dump")
        process.stdin.write("go on\n")
        process.stdin.flush()
        assert process.stdout.readline() == "still here\n"  # "" had the signal ended it
        assert process.wait(15) == 0
    finally:
        process.kill()
        process.wait(10)
    assert "in <module>" in stderr.read_text()
