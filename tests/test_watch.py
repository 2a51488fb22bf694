"""The snapshot stream: one snapshot per change, cut per role, acknowledged, waited on."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from aibridge.v1 import admin_pb2, sync_pb2, sync_pb2_grpc
from common.subscriber import ApplyResult, ProviderSnapshot, SkippedProvider
from tests.harness import (
    Controlplane,
    RecordingSubscriber,
    Secrets,
    async_wait_until,
    instance_key,
)

KEY = "sk-live-secret-KEY-0123456789abcdef"


async def admin_call(cp: Controlplane, name: str, request: object) -> Any:
    return await asyncio.to_thread(getattr(cp.admin, name), request)


def test_initial_snapshot_then_one_per_change(controlplane: Controlplane, secrets: Secrets) -> None:
    async def scenario() -> None:
        cp = controlplane
        sub = RecordingSubscriber([cp.address], "bridged", secrets.bridged).start()
        try:
            await sub.wait_version(cp.admin.revision())
            assert len(sub.applied) == 1 and sub.applied[0].providers == []
            revisions = []
            requests = [
                ("CreateProvider", admin_pb2.CreateProviderRequest(
                    name="a", type="openai", base_url="https://a.example/v1", keys=[KEY])),
                ("UpdateProvider", admin_pb2.UpdateProviderRequest(ref="a", name="b")),
                ("CreateToken", admin_pb2.CreateTokenRequest(name="alice")),
                ("UpdateProvider", admin_pb2.UpdateProviderRequest(ref="b", enabled=False)),
                ("DeleteProvider", admin_pb2.DeleteProviderRequest(ref="b")),
            ]  # fmt: skip
            for name, request in requests:
                revision = (await admin_call(cp, name, request)).revision
                await sub.wait_version(revision)
                revisions.append(revision)
            versions = [s.version for s in sub.applied]
            assert versions[1:] == revisions
            assert versions == sorted(set(versions)), "versions must strictly increase"
            names = [[p.name for p in s.providers] for s in sub.applied]
            assert names == [[], ["a"], ["b"], ["b"], ["b"], []]
            assert [len(s.tokens) for s in sub.applied] == [0, 0, 0, 1, 1, 1]
            assert sub.applied[1].providers[0].keys[0].secret == KEY
            # A disabled provider is still listed (bridged answers 403), but without keys.
            assert not sub.applied[4].providers[0].enabled
            assert list(sub.applied[4].providers[0].keys) == []
        finally:
            await sub.stop()

    asyncio.run(scenario())


def test_proxyd_cut_never_holds_a_provider_key(
    controlplane: Controlplane, secrets: Secrets
) -> None:
    async def scenario() -> None:
        cp = controlplane
        created = cp.admin.create_provider("openai", keys=[KEY])
        token = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="alice"))
        bridged = RecordingSubscriber([cp.address], "bridged", secrets.bridged).start()
        proxyd = RecordingSubscriber([cp.address], "proxyd", secrets.proxyd).start()
        try:
            await bridged.wait_version(token.revision)
            await proxyd.wait_version(token.revision)
            assert KEY.encode() in bridged.snapshot.SerializeToString()
            cut = proxyd.snapshot
            assert cut.role == "proxyd"
            assert KEY.encode() not in cut.SerializeToString()
            assert [(p.id, p.name, p.type, p.base_url, p.enabled) for p in cut.providers] == [
                (created.provider.id, "openai", "openai", "https://api.example.com/v1", True)
            ]
            assert [t.name for t in cut.tokens] == ["alice"]
            assert len(cut.tokens[0].sha256) == 64
        finally:
            await bridged.stop()
            await proxyd.stop()

    asyncio.run(scenario())


def test_acks_are_shown_and_waited_on(controlplane: Controlplane, secrets: Secrets) -> None:
    async def scenario() -> None:
        cp = controlplane
        good = RecordingSubscriber([cp.address], "bridged", secrets.bridged, subscriber_id="good")
        picky = RecordingSubscriber([cp.address], "proxyd", secrets.proxyd, subscriber_id="picky")
        good.start(), picky.start()
        try:
            start = cp.admin.revision()
            await good.wait_version(start)
            await picky.wait_version(start)
            status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
            seen = {s.id: s for s in status.subscribers}
            assert set(seen) == {"good", "picky"}
            assert (seen["good"].role, seen["picky"].role) == ("bridged", "proxyd")
            assert seen["good"].address.startswith("ipv4:127.0.0.1:")
            assert seen["good"].applied_version == start
            assert seen["good"].connected_since.seconds > 0

            # Every subscriber applied it: the wait returns done.
            created = cp.admin.create_provider("p1")
            await asyncio.to_thread(cp.admin.wait_applied, created.revision)
            assert good.version >= created.revision and picky.version >= created.revision

            # One subscriber rejects the next snapshot: the wait names it, the error is shown.
            picky.reject = lambda s: "cannot apply this" if s.version > created.revision else None
            second = cp.admin.create_provider("p2")
            waited = await admin_call(
                cp, "WaitForRevision",
                admin_pb2.WaitForRevisionRequest(revision=second.revision, timeout_seconds=1),
            )  # fmt: skip
            assert not waited.done
            assert [s.id for s in waited.laggards] == ["picky"]
            status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
            picky_state = next(s for s in status.subscribers if s.id == "picky")
            assert picky_state.applied_version == created.revision
            assert "cannot apply this" in picky_state.last_error
            assert f"version {second.revision}" in picky_state.last_error
        finally:
            await good.stop()
            await picky.stop()

    asyncio.run(scenario())


def test_wait_returns_only_once_applied(controlplane: Controlplane, secrets: Secrets) -> None:
    """A subscriber that applies slowly holds the wait until it has applied."""

    async def scenario() -> None:
        cp = controlplane
        gate = asyncio.Event()

        async def slow_apply(snapshot: ProviderSnapshot) -> ApplyResult:
            if len(snapshot.providers) > 0:
                await gate.wait()
            return ApplyResult()

        from common.subscriber import Subscriber

        sub = Subscriber([cp.address], "bridged", secrets.bridged, slow_apply, subscriber_id="slow")
        task = asyncio.create_task(sub.run())
        try:
            await async_wait_until(lambda: sub.applied_version >= 1, what="first snapshot")
            created = cp.admin.create_provider("p1")
            wait = asyncio.create_task(
                admin_call(
                    cp,
                    "WaitForRevision",
                    admin_pb2.WaitForRevisionRequest(revision=created.revision, timeout_seconds=30),
                )  # fmt: skip
            )

            # The snapshot has reached the subscriber (its apply is waiting on the gate) ...
            def sent() -> int:
                status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
                return max((s.sent_version for s in status.subscribers), default=0)

            await async_wait_until(lambda: sent() >= created.revision, what="snapshot sent")
            assert not wait.done(), "the wait returned before the subscriber applied"
            gate.set()
            response = await wait
            assert response.done
            assert sub.applied_version >= created.revision
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_skipped_rows_are_reported(controlplane: Controlplane, secrets: Secrets) -> None:
    async def scenario() -> None:
        cp = controlplane

        def apply(snapshot: ProviderSnapshot) -> ApplyResult:
            return ApplyResult(
                skipped=[
                    SkippedProvider(p.id, p.name, "unusable base_url") for p in snapshot.providers
                ]
            )

        from common.subscriber import Subscriber

        created = cp.admin.create_provider("odd")
        sub = Subscriber([cp.address], "proxyd", secrets.proxyd, apply, subscriber_id="sk")
        task = asyncio.create_task(sub.run())
        try:
            await async_wait_until(lambda: sub.applied_version >= created.revision, what="apply")
            await asyncio.to_thread(cp.admin.wait_applied, created.revision)
            status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
            (state,) = status.subscribers
            assert [(s.provider_id, s.name, s.reason) for s in state.skipped] == [
                (created.provider.id, "odd", "unusable base_url")
            ]
            assert "odd" in cp.log() and "unusable base_url" in cp.log()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_slow_reader_gets_the_latest_not_a_backlog(
    controlplane: Controlplane, secrets: Secrets
) -> None:
    """A subscriber that stops reading is sent the newest snapshot when it reads again."""
    cp = controlplane
    # Big snapshots fill the transport's buffers quickly, so the server must coalesce.
    padding = "x" * 190
    for i in range(20):
        cp.admin.create_provider(
            f"p{i}", f"https://p{i}.example/{'y' * 4000}", display_name=padding
        )
    channel = grpc.insecure_channel(cp.address, options=[("grpc.http2.bdp_probe", 0)])
    stub = sync_pb2_grpc.SyncStub(channel)
    stream = stub.Watch(
        sync_pb2.WatchRequest(subscriber_id="stalled", role="proxyd", instance_key=instance_key()),
        metadata=(("authorization", f"Bearer {secrets.proxyd}"),),
    )
    try:
        first = next(stream)
        mutations = 40
        last = 0
        for i in range(mutations):
            last = cp.admin.UpdateProvider(
                admin_pb2.UpdateProviderRequest(ref="p0", display_name=f"{padding}{i}")
            ).revision
        # The server has seen every change; now read what the stalled stream holds.
        versions = [first.version]
        while versions[-1] < last:
            versions.append(next(stream).version)
        assert versions == sorted(set(versions))
        assert len(versions) - 1 < mutations, f"received a backlog: {versions}"
    finally:
        stream.cancel()
        channel.close()


@pytest.mark.parametrize("role", ["bridged", "proxyd"])
def test_reconnecting_subscriber_says_what_it_applied(
    controlplane: Controlplane, secrets: Secrets, role: str
) -> None:
    async def scenario() -> None:
        cp = controlplane
        token = secrets.bridged if role == "bridged" else secrets.proxyd
        sub = RecordingSubscriber([cp.address], role, token, subscriber_id="again").start()
        await sub.wait_version(cp.admin.revision())
        await sub.stop()
        created = cp.admin.create_provider("later")
        sub.start()  # the same subscriber object resumes from its applied version
        try:
            await sub.wait_version(created.revision)
            assert [p.name for p in sub.snapshot.providers] == ["later"]
            assert [s.version for s in sub.applied] == sorted({s.version for s in sub.applied})
        finally:
            await sub.stop()

    asyncio.run(scenario())
