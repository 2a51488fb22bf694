"""The controlplane's gRPC bounds: a refused call costs no memory, each service takes
requests up to its own size, and calls and streams beyond their bounds wait or are refused
(controlplane/limits.py)."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from aibridge.v1 import admin_pb2, admin_pb2_grpc, sync_pb2, sync_pb2_grpc
from common.channel import auth_metadata, channel_options
from common.subscriber import ApplyResult, ProviderSnapshot, SkippedProvider, Subscriber
from controlplane import config
from tests.grpc_flood import Flood, rss_mb
from tests.harness import (
    Controlplane,
    Secrets,
    async_wait_until,
    health_stub,
    instance_key,
    refused,
    wait_until,
)

RSS_GROWTH_MB = 100  # issue 11: the flood must leave the controlplane's RSS under +100 MB


@pytest.fixture
def sqlite_controlplane(tmp_path: Path, secrets: Secrets) -> Iterator[Controlplane]:
    cp = Controlplane(f"sqlite:///{tmp_path / 'aibridge.db'}", tmp_path, secrets).start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def small_controlplane(tmp_path: Path, secrets: Secrets) -> Iterator[Controlplane]:
    """Two unary calls per service at once, three streams, three calls waiting."""
    cp = Controlplane(
        f"sqlite:///{tmp_path / 'aibridge.db'}", tmp_path, secrets,
        extra_args=("--max-calls", "2", "--max-streams", "3"),
    ).start()  # fmt: skip
    try:
        yield cp
    finally:
        cp.stop()


def metric(cp: Controlplane, name: str, **labels: str) -> float:
    url = f"http://127.0.0.1:{cp.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}{{{wanted}}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize(
    ("caller", "code", "details"),
    [
        ("nobody", "UNAUTHENTICATED", "missing or unknown credential"),
        ("bridged", "PERMISSION_DENIED",
         "the bridged credential may not call /aibridge.v1.Admin/CreateProvider"),
    ],
)  # fmt: skip
def test_a_flood_of_refused_4mb_calls_costs_no_memory(
    sqlite_controlplane: Controlplane, caller: str, code: str, details: str
) -> None:
    """Issue 11: 200 concurrent CreateProvider calls with a 4 MB field, without a credential
    (or with one that may not call it), are refused before their payload is received: the
    controlplane's RSS stays within 100 MB of its resting size, and a legitimate call is
    served all along."""
    cp = sqlite_controlplane
    assert cp.proc is not None
    cp.admin.GetStatus(admin_pb2.GetStatusRequest())  # warm: channel, threads, database
    at_rest = rss_mb(cp.proc.pid)
    token = "" if caller == "nobody" else getattr(cp.secrets, caller)
    flood = Flood(cp.address, token, calls=200, channels=20, field_bytes=4_000_000, seconds=5)
    served = 0
    try:
        while flood.running():
            growth = rss_mb(cp.proc.pid) - at_rest
            assert growth < RSS_GROWTH_MB, f"the controlplane grew by {growth:.0f} MB"
            assert cp.admin.GetStatus(admin_pb2.GetStatusRequest()).revision >= 1
            served += 1
        result = flood.result()
    finally:
        flood.stop()
    assert served > 0
    assert list(result["codes"]) == [code], result
    assert result["codes"][code] >= 200, result
    assert result["details"][code] == details
    assert rss_mb(cp.proc.pid) - at_rest < RSS_GROWTH_MB
    cp.check_alive()


def test_an_admin_request_over_its_limit_is_refused_by_size(
    sqlite_controlplane: Controlplane,
) -> None:
    cp = sqlite_controlplane
    too_big = admin_pb2.CreateProviderRequest(
        name="big", type="openai", base_url="https://big.example/v1", display_name="x" * 300_000
    )
    details = refused(cp, grpc.StatusCode.RESOURCE_EXHAUSTED, cp.admin.CreateProvider, too_big)
    assert details == (
        f"request of {too_big.ByteSize()} bytes: aibridge.v1.Admin takes at most 262144 bytes"
    )
    assert metric(cp, "aibridge_controlplane_limit_hits_total",
                  limit="request_bytes", service="aibridge.v1.Admin") == 1  # fmt: skip

    # A large admin request within the limit is served: 40 keys of the longest allowed.
    keys = [f"sk-{n:02d}-" + "k" * 4090 for n in range(40)]
    created = cp.admin.create_provider("many-keys", keys=keys)
    assert len(created.provider.keys) == 40

    # The server-wide limit (the usage batches') still holds for everyone.
    huge = admin_pb2.CreateProviderRequest(name="huge", display_name="x" * 5_000_000)
    assert refused(cp, grpc.StatusCode.RESOURCE_EXHAUSTED, cp.admin.CreateProvider, huge)


def test_large_acknowledgements_are_taken(sqlite_controlplane: Controlplane) -> None:
    """An Ack lists every provider row the subscriber skipped. At 10,000 providers with
    reasons of a realistic length it is about 2 MB and goes whole; with every reason at
    the 500 characters kept it would pass the Sync limit (4 MiB), so the subscriber sends
    the rows that fit and says how many it left out."""
    cp = sqlite_controlplane

    def rows(reason: str) -> list[SkippedProvider]:
        return [
            SkippedProvider(f"prv_{n:032x}", f"provider-{n:05d}", f"{reason} {n}")
            for n in range(10_000)
        ]

    def skipped_of(subscriber_id: str) -> list[admin_pb2.SkippedProviderInfo]:
        with grpc.insecure_channel(cp.address, options=channel_options()) as channel:
            stub = admin_pb2_grpc.AdminStub(channel)
            status = stub.GetStatus(
                admin_pb2.GetStatusRequest(), metadata=auth_metadata(cp.secrets.admin), timeout=15
            )
        found = [s for s in status.subscribers if s.id == subscriber_id]
        return list(found[0].skipped) if found and found[0].applied_version else []

    def reporting(skipped: list[SkippedProvider]) -> Callable[[ProviderSnapshot], ApplyResult]:
        return lambda _s: ApplyResult(skipped=skipped)

    async def scenario() -> None:
        usual = rows("host api.example.com:443 is already routed to provider-00000:")
        longest = rows("x" * 600)
        subscribers = [
            Subscriber([cp.address], "proxyd", cp.secrets.proxyd, reporting(skipped),
                       subscriber_id=name)
            for name, skipped in (("usual", usual), ("longest", longest))
        ]  # fmt: skip

        Skipped = list[admin_pb2.SkippedProviderInfo]

        def both() -> tuple[Skipped, Skipped] | None:
            whole, cut = skipped_of("usual"), skipped_of("longest")
            return (whole, cut) if whole and cut else None

        tasks = [asyncio.create_task(s.run()) for s in subscribers]
        try:
            whole, cut = await async_wait_until(both, 30, "both acknowledgements")
            assert [(s.provider_id, s.name, s.reason) for s in whole] == [
                (r.provider_id, r.name, r.reason) for r in usual
            ]
            kept, last = cut[:-1], cut[-1]
            assert 6_000 < len(kept) < 10_000
            assert all(len(s.reason) == 500 for s in kept)
            assert last.reason.startswith(f"and {10_000 - len(kept)} more skipped providers")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


def watch(cp: Controlplane, subscriber_id: str, key: str = "") -> grpc.Future[object]:
    """A Watch stream that has its first snapshot and never acknowledges anything."""
    channel = grpc.insecure_channel(cp.address)
    request = sync_pb2.WatchRequest(
        subscriber_id=subscriber_id, role="bridged", instance_key=key or instance_key()
    )
    stream = sync_pb2_grpc.SyncStub(channel).Watch(
        request,
        metadata=auth_metadata(cp.secrets.bridged),
    )
    next(stream)
    return stream


def test_unary_calls_beyond_the_bound_wait_their_turn_or_are_refused(
    small_controlplane: Controlplane,
) -> None:
    cp = small_controlplane
    admin = admin_pb2_grpc.AdminStub(grpc.insecure_channel(cp.address))
    metadata = auth_metadata(cp.secrets.admin)

    def in_progress() -> float:
        return metric(cp, "aibridge_controlplane_calls_in_progress", service="aibridge.v1.Admin")

    def waiting() -> float:
        return metric(cp, "aibridge_controlplane_calls_waiting", service="aibridge.v1.Admin")

    # Two waits on a subscriber that never acknowledges hold both of Admin's turns.
    laggard = watch(cp, "laggard")
    revision = cp.admin.create_provider("p").revision
    # No fleet grace: the waits end as soon as the laggard's stream does.
    wait = admin_pb2.WaitForRevisionRequest(
        revision=revision, timeout_seconds=60, fleet_grace_seconds=0
    )
    holders = [admin.WaitForRevision.future(wait, metadata=metadata, timeout=90) for _ in "ab"]
    wait_until(lambda: in_progress() == 2, what="both turns taken")

    # A call that gets no turn before its deadline is told so, a little before it.
    with pytest.raises(grpc.RpcError) as busy:
        admin.GetStatus(admin_pb2.GetStatusRequest(), metadata=metadata, timeout=2)
    assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = busy.value.details()
    assert details is not None
    assert details.startswith("aibridge.v1.Admin is busy: 2 calls in progress")

    # Up to --max-streams calls wait; the next is refused at once.
    queued = [
        admin.GetStatus.future(admin_pb2.GetStatusRequest(), metadata=metadata, timeout=60)
        for _ in range(3)
    ]
    wait_until(lambda: waiting() == 3, what="three calls waiting")
    with pytest.raises(grpc.RpcError) as full:
        admin.GetStatus(admin_pb2.GetStatusRequest(), metadata=metadata, timeout=30)
    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert metric(cp, "aibridge_controlplane_limit_hits_total",
                  limit="calls", service="aibridge.v1.Admin") == 2  # fmt: skip

    # Other services have turns of their own.
    with grpc.insecure_channel(cp.address) as channel:
        health = health_stub(channel)
        check = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert check.status == health_pb2.HealthCheckResponse.SERVING

    # The laggard leaves: the waits end, and the waiting calls are served in their turn.
    laggard.cancel()
    assert all(h.result(timeout=30).done for h in holders)
    assert all(q.result(timeout=30).revision == revision for q in queued)
    wait_until(lambda: in_progress() == 0 and waiting() == 0, what="every turn given back")


def test_streams_beyond_the_bound_are_refused_and_do_not_take_call_turns(
    small_controlplane: Controlplane,
) -> None:
    cp = small_controlplane
    first_key = instance_key()
    streams = [watch(cp, f"s{n}", first_key if n == 0 else "") for n in range(3)]
    try:
        with pytest.raises(grpc.RpcError) as refused_stream:
            watch(cp, "one-too-many")
        assert refused_stream.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused_stream.value.details() == (
            "aibridge.v1.Sync has 3 streams open (the controlplane's --max-streams); "
            "try again later"
        )
        # Three streams, and still every unary call is served (--max-calls 2).
        assert len(cp.admin.GetStatus(admin_pb2.GetStatusRequest()).subscribers) == 3
        ack = sync_pb2.AckRequest(
            subscriber_id="s0", instance_key=first_key, version=cp.admin.revision()
        )
        sync = sync_pb2_grpc.SyncStub(grpc.insecure_channel(cp.address))
        sync.Ack(ack, metadata=auth_metadata(cp.secrets.bridged), timeout=10)

        streams.pop().cancel()

        def another() -> grpc.Future[object] | None:
            try:
                return watch(cp, "another")
            except grpc.RpcError:
                return None

        streams.append(wait_until(another, what="a stream once one closed"))
    finally:
        for stream in streams:
            stream.cancel()


def test_the_bounds_are_flags_with_environment_equivalents(tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path)]
    defaults = config.parse(state, env={})
    assert (defaults.max_calls, defaults.max_streams) == (16, 1000)
    from_env = config.parse(state, env={"AIBRIDGE_MAX_CALLS": "5", "AIBRIDGE_MAX_STREAMS": "50"})
    assert (from_env.max_calls, from_env.max_streams) == (5, 50)
    with pytest.raises(SystemExit):
        config.parse([*state, "--max-calls", "0"], env={})
