"""`--wait` covers the whole fleet: a data plane between streams (its stream cut, its
replica dead) is waited for until it is back and has applied the change, for as long as
the wait's fleet grace; one gone longer, or one that said goodbye (SIGTERM), is not.
Runs on SQLite and PostgreSQL; the dead replica on PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

from aibridge.v1 import admin_pb2
from tests.harness import (
    Bridged,
    Controlplane,
    Proxyd,
    RecordingSubscriber,
    Secrets,
    async_wait_until,
    ctl,
    lagging_line,
    printed_revision,
    refused,
    wait_until,
)
from tests.relay import Relay


def listed(cp: Controlplane) -> list[tuple[str, str, bool]]:
    """(role, id, connected) of every subscriber `cp` shows."""
    status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
    return sorted((s.role, s.id, s.connected) for s in status.subscribers)


def streaming(cp: Controlplane) -> list[str]:
    """Ids of the subscribers `cp` shows with their stream open (disconnected_at unset)."""
    status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
    return [s.id for s in status.subscribers if not s.HasField("disconnected_at")]


def version(process: Bridged | Proxyd) -> int:
    return httpx.get(process.url + "/readyz", timeout=10).json()["version"]


def test_a_wait_holds_for_a_data_plane_between_streams(
    controlplane: Controlplane, tmp_path: Path, secrets: Secrets
) -> None:
    cp = controlplane
    with Relay(cp.port) as relay, ThreadPoolExecutor(1) as pool:
        bridged = Bridged([relay.address], tmp_path, secrets).start()
        try:
            cp.admin.wait_applied(cp.admin.revision())
            ((_role, bridged_id, _connected),) = listed(cp)

            relay.cut()  # its stream ends; it reconnects, in vain, until the relay is back
            wait_until(lambda: not streaming(cp), what="bridged's stream to end")
            # A change now: the wait does not claim it is everywhere; it names bridged.
            away = ctl(cp, "tokens", "create", "t1", "--wait", "--wait-timeout", "2")
            assert away.returncode == 3, (away.stdout, away.stderr)
            assert listed(cp) == [("bridged", bridged_id, False)]
            assert re.search(r"disconnected \d+s ago", lagging_line(away.stderr, bridged_id))
            assert version(bridged) < printed_revision(away.stdout)
            shown = ctl(cp, "status", check=True).stdout
            assert re.search(r"^subscribers:\s+1 \(1 disconnected\)$", shown, re.M), shown
            assert "disconnected" in lagging_line(shown, bridged_id)

            # A wait started while it is away ends once it is back and has applied.
            before = cp.admin.revision()
            waiting = pool.submit(
                ctl, cp, "tokens", "create", "t2", "--wait", "--wait-timeout", "60"
            )
            wait_until(lambda: cp.admin.revision() > before, what="the change")
            assert not waiting.done(), waiting.result().stdout
            relay.restore()
            back = waiting.result(timeout=90)
            assert back.returncode == 0, (back.stdout, back.stderr)
            assert version(bridged) >= printed_revision(back.stdout)
            assert listed(cp) == [("bridged", bridged_id, True)]
        finally:
            bridged.stop()


def test_a_data_plane_stopped_cleanly_is_not_waited_for_one_killed_is(
    controlplane: Controlplane, tmp_path: Path, secrets: Secrets
) -> None:
    cp = controlplane
    bridged = Bridged([cp.address], tmp_path, secrets).start()
    proxyd = Proxyd([cp.address], bridged.url, tmp_path, secrets).start()
    try:
        cp.admin.wait_applied(cp.admin.revision())
        ids = {role: subscriber_id for role, subscriber_id, _c in listed(cp)}
        bridged.stop()  # SIGTERM: it says goodbye
        proxyd.kill()  # SIGKILL: it just vanishes, and may be back
        wait_until(lambda: not streaming(cp), what="both streams to end")
        result = ctl(cp, "tokens", "create", "t", "--wait", "--wait-timeout", "2")
        assert result.returncode == 3, (result.stdout, result.stderr)
        assert listed(cp) == [("proxyd", ids["proxyd"], False)]
        assert "disconnected" in lagging_line(result.stderr, ids["proxyd"])
        assert ids["bridged"] not in result.stderr
        # With no grace, only the subscribers connected now are waited for: none.
        result = ctl(cp, "tokens", "create", "u", "--wait", "--fleet-grace", "0")
        assert result.returncode == 0, (result.stdout, result.stderr)
    finally:
        proxyd.stop()
        bridged.stop()


def test_a_subscriber_gone_longer_than_the_grace_is_not_waited_for(
    controlplane: Controlplane, secrets: Secrets
) -> None:
    cp = controlplane

    def wait(revision: int, timeout: float, grace: float) -> admin_pb2.WaitForRevisionResponse:
        return cp.admin.WaitForRevision(
            admin_pb2.WaitForRevisionRequest(
                revision=revision, timeout_seconds=timeout, fleet_grace_seconds=grace
            )
        )

    async def scenario() -> None:
        gone = RecordingSubscriber([cp.address], "bridged", secrets.bridged, subscriber_id="gone")
        gone.start()
        await gone.wait_version(cp.admin.revision())
        await gone.stop(leave=False)  # as if the process vanished
        await async_wait_until(lambda: not streaming(cp), what="its stream to end")
        revision = (await asyncio.to_thread(cp.admin.create_provider, "p")).revision

        # Within the grace it is waited for, and named as disconnected, since when.
        waited = await asyncio.to_thread(wait, revision, 1, 600)
        assert not waited.done
        (laggard,) = waited.laggards
        assert (laggard.id, laggard.connected) == ("gone", False)
        away_since = laggard.disconnected_at.ToNanoseconds() / 1e9

        # A wait whose grace runs out while it waits ends then, not at its timeout.
        grace = time.time() - away_since + 1.5
        started = time.monotonic()
        waited = await asyncio.to_thread(wait, revision, 60, grace)
        took = time.monotonic() - started
        assert waited.done and list(waited.laggards) == []
        assert 0.5 < took < 30, f"took {took:.1f}s"

        # And one started after that is done at once; so is the same through aibridgectl.
        assert (await asyncio.to_thread(wait, revision, 60, grace)).done
        result = await asyncio.to_thread(
            ctl, cp, "tokens", "create", "t", "--wait", "--fleet-grace", f"{grace:.3f}"
        )
        assert result.returncode == 0, (result.stdout, result.stderr)

    asyncio.run(scenario())


def test_the_fleet_grace_is_bounded(controlplane: Controlplane) -> None:
    cp = controlplane
    bounded = ctl(cp, "tokens", "create", "t", "--wait", "--fleet-grace", "3601")
    assert bounded.returncode == 2 and "--fleet-grace" in bounded.stderr
    assert cp.admin.revision() == 1  # refused before any change
    for grace in (-1, 3601):
        request = admin_pb2.WaitForRevisionRequest(revision=1, fleet_grace_seconds=grace)
        code = grpc.StatusCode.INVALID_ARGUMENT
        refused(cp, code, cp.admin.WaitForRevision, request, "fleet_grace_seconds")


@pytest.mark.postgres
def test_a_dead_replicas_data_plane_is_waited_for_until_it_is_back(
    postgres_url: str, tmp_path: Path, secrets: Secrets
) -> None:
    a = Controlplane(postgres_url, tmp_path, secrets, name="replica-a").start()
    b = Controlplane(postgres_url, tmp_path, secrets, name="replica-b").start()
    bridged = None
    try:
        bridged = Bridged([a.address], tmp_path, secrets).start()  # on a only
        b.admin.wait_applied(b.admin.revision())
        ((_role, bridged_id, _connected),) = wait_until(lambda: listed(b), what="bridged, via b")
        a.kill()
        # b stops trusting a's rows once a no longer refreshes them: bridged is then
        # disconnected since a's last refresh, not forgotten.
        wait_until(lambda: not streaming(b), 30, "a's rows to go stale")
        away = ctl(b, "tokens", "create", "t1", "--wait", "--wait-timeout", "2")
        assert away.returncode == 3, (away.stdout, away.stderr)
        assert listed(b) == [("bridged", bridged_id, False)]
        assert "disconnected" in lagging_line(away.stderr, bridged_id)

        a.start()  # same id, same port: bridged comes back to it
        back = ctl(b, "tokens", "create", "t2", "--wait", "--wait-timeout", "60")
        assert back.returncode == 0, (back.stdout, back.stderr)
        assert version(bridged) >= printed_revision(back.stdout)
    finally:
        if bridged is not None:
            bridged.stop()
        a.stop()
        b.stop()
