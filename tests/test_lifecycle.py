"""A shutdown always ends the background loops: a cancellation that arrives just as the
loop's wait ends must not be lost (asyncio.wait_for loses it on Python 3.11, and a
controlplane hung at SIGTERM with its fleet loop running on), and a task that lost one
inside a library is cancelled again."""

from __future__ import annotations

import asyncio
import re

import pytest

from common.lifecycle import wait_set
from common.supervise import Supervisor
from tests.harness import REPO

SHIPPED = ("common", "controlplane", "bridged", "proxyd", "console", "mockupstream")


async def _loop(event: asyncio.Event, turns: list[int]) -> None:
    """The shape of every background loop: wait for a wake-up or a heartbeat, work."""
    while True:
        await wait_set(event, 30)
        event.clear()
        turns.append(1)


def test_a_loop_cancelled_as_its_event_is_set_ends() -> None:
    async def scenario() -> None:
        event, turns = asyncio.Event(), list[int]()
        task = asyncio.create_task(_loop(event, turns))
        await asyncio.sleep(0)  # the loop now waits on the event
        event.set()
        task.cancel()  # in the same turn of the event loop: the race a shutdown can hit
        async with asyncio.timeout(5):
            await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()

    asyncio.run(scenario())


@pytest.mark.parametrize(("timeout", "expected"), [(0.01, False), (None, True)])
def test_wait_set_says_whether_the_event_was_set(timeout: float | None, expected: bool) -> None:
    async def scenario() -> bool:
        event = asyncio.Event()
        if expected:
            asyncio.get_running_loop().call_soon(event.set)
        return await wait_set(event, timeout)

    assert asyncio.run(scenario()) is expected


def test_a_shutdown_cancels_again_a_task_that_lost_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancels: list[int] = []

    async def loses_its_first_cancellation() -> None:
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:  # as a library's asyncio.wait_for may
                cancels.append(1)
                if len(cancels) > 1:
                    raise

    async def scenario() -> None:
        supervisor = Supervisor()
        task = supervisor.start(loses_its_first_cancellation(), "stubborn")
        await asyncio.sleep(0)
        async with asyncio.timeout(10):
            await supervisor.stop()
        assert task.cancelled() and len(cancels) == 2

    asyncio.run(scenario())
    assert "stubborn still running after its cancellation: cancelled again" in caplog.text


def test_no_shipped_module_uses_asyncio_wait_for() -> None:
    users = [
        f"{path.relative_to(REPO)}:{number}"
        for package in SHIPPED
        for path in sorted((REPO / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\basyncio\.wait_for\(|^from asyncio import .*\bwait_for\b", line)
    ]
    assert users == [], "use common.lifecycle.wait_set or asyncio.timeout instead"
