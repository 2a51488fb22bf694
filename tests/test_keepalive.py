"""Keepalive: a peer that stops answering is noticed on both sides of the stream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

from aibridge.v1 import admin_pb2
from tests.harness import (
    PYTHON,
    REPO,
    Controlplane,
    RecordingSubscriber,
    Secrets,
    clean_env,
    wait_until,
)

FAST_KEEPALIVE = ("--keepalive-seconds", "1")


def test_subscriber_leaves_a_frozen_controlplane(
    postgres_url: str, tmp_path: Path, secrets: Secrets
) -> None:
    """Replicas share PostgreSQL (on SQLite, a replica frozen in the middle of a write
    would hold the whole database's lock)."""

    async def scenario() -> None:
        a = Controlplane(postgres_url, tmp_path, secrets, name="a", extra_args=FAST_KEEPALIVE)
        b = Controlplane(postgres_url, tmp_path, secrets, name="b", extra_args=FAST_KEEPALIVE)
        await asyncio.to_thread(a.start)
        await asyncio.to_thread(b.start)
        sub = RecordingSubscriber(
            [a.address, b.address], "bridged", secrets.bridged, keepalive_seconds=1
        ).start()
        frozen = None
        try:
            await sub.wait_version(1)
            frozen, alive = (a, b) if sub.subscriber.connected_to == a.address else (b, a)
            assert frozen.proc is not None
            frozen.proc.send_signal(signal.SIGSTOP)  # alive to TCP, silent to HTTP/2
            created = await asyncio.to_thread(alive.admin.create_provider, "after-freeze")
            await sub.wait_version(created.revision, timeout=20)
            assert sub.subscriber.connected_to == alive.address
        finally:
            if frozen is not None and frozen.proc is not None:
                frozen.proc.send_signal(signal.SIGCONT)
            await sub.stop()
            await asyncio.to_thread(a.stop)
            await asyncio.to_thread(b.stop)

    asyncio.run(scenario())


def test_controlplane_drops_a_frozen_subscriber(tmp_path: Path, secrets: Secrets) -> None:
    cp = Controlplane(
        f"sqlite:///{tmp_path / 'aibridge.db'}", tmp_path, secrets, extra_args=FAST_KEEPALIVE
    ).start()
    child = subprocess.Popen(
        [PYTHON, "-m", "tests.run_subscriber", cp.address, "proxyd", secrets.proxyd, "frozen",
         "60"],
        cwd=REPO, env=clean_env(),
    )  # fmt: skip
    try:

        def subscribers() -> list[tuple[str, bool]]:
            status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
            return [(s.id, s.connected) for s in status.subscribers]

        wait_until(lambda: subscribers() == [("frozen", True)], what="the subscriber to connect")
        os.kill(child.pid, signal.SIGSTOP)
        # Its stream is dropped; it is listed as disconnected (it may come back).
        wait_until(
            lambda: subscribers() == [("frozen", False)],
            timeout=20,
            what="the frozen subscriber dropped",
        )
    finally:
        child.kill()
        child.wait()
        cp.stop()
