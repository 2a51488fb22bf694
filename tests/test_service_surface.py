"""What the controlplane exposes besides the admin operations: health, reflection, who may
call what, Prometheus metrics, and a clean exit on SIGTERM. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from aibridge.v1 import admin_pb2, admin_pb2_grpc, sync_pb2, sync_pb2_grpc
from tests.harness import Controlplane, Secrets, health_stub, instance_key, unique, wait_until

SERVICES = {"aibridge.v1.Admin", "aibridge.v1.Sync", "aibridge.v1.Usage", "grpc.health.v1.Health"}


def credential(cp: Controlplane, who: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata for `who`: a role's credential, "wrong", "scheme" (the admin token
    without `Bearer`), or None for no credential at all."""
    if who is None:
        return ()
    if who == "wrong":
        return (("authorization", "Bearer aba_not_a_credential"),)
    if who == "scheme":
        return (("authorization", cp.secrets.admin),)
    return (("authorization", f"Bearer {getattr(cp.secrets, who)}"),)


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def metrics(cp: Controlplane) -> str:
    url = f"http://127.0.0.1:{cp.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def metric_value(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


# --- open services ----------------------------------------------------------------------------


def test_health_serves_without_a_credential(shared_controlplane: Controlplane) -> None:
    with grpc.insecure_channel(shared_controlplane.address) as channel:
        stub = health_stub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        watch = stub.Watch(health_pb2.HealthCheckRequest(), timeout=5)
        try:
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        finally:
            watch.cancel()
        # A wrong credential does not matter to an open service either.
        reply = stub.Check(
            health_pb2.HealthCheckRequest(),
            metadata=credential(shared_controlplane, "wrong"),
            timeout=5,
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_the_services(shared_controlplane: Controlplane) -> None:
    with grpc.insecure_channel(shared_controlplane.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert services >= SERVICES, services
        pool = descriptor_pool.DescriptorPool(database)
        admin = pool.FindServiceByName("aibridge.v1.Admin")
        compiled = admin_pb2.DESCRIPTOR.services_by_name["Admin"]
        assert {m.name for m in admin.methods} == {m.name for m in compiled.methods}
        for method in compiled.methods:
            found = admin.methods_by_name[method.name]
            assert found.input_type.full_name == method.input_type.full_name
            assert found.output_type.full_name == method.output_type.full_name
        assert "GetStatus" in admin.methods_by_name
        watch = pool.FindServiceByName("aibridge.v1.Sync").methods_by_name["Watch"]
        assert watch.server_streaming and not watch.client_streaming
        assert watch.output_type.full_name == "aibridge.v1.ProviderSnapshot"


# --- authentication and authorisation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "code"),
    [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ("wrong", grpc.StatusCode.UNAUTHENTICATED),
        ("scheme", grpc.StatusCode.UNAUTHENTICATED),
        ("bridged", grpc.StatusCode.PERMISSION_DENIED),
        ("proxyd", grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_admin_needs_the_admin_credential(
    shared_controlplane: Controlplane, who: str | None, code: grpc.StatusCode
) -> None:
    cp = shared_controlplane
    with grpc.insecure_channel(cp.address) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        metadata = credential(cp, who)
        assert code_of(lambda: stub.GetStatus(
            admin_pb2.GetStatusRequest(), metadata=metadata, timeout=10)) == code  # fmt: skip
        before = cp.admin.revision()
        assert code_of(lambda: stub.CreateProvider(
            admin_pb2.CreateProviderRequest(
                name="intruder", type="openai", base_url="https://evil.example/v1"),
            metadata=metadata, timeout=10)) == code  # fmt: skip
        assert cp.admin.revision() == before
        assert [
            p.name for p in cp.admin.ListProviders(admin_pb2.ListProvidersRequest()).providers
        ] == []
    # The admin credential itself works on the same kind of channel.
    assert cp.admin.GetStatus(admin_pb2.GetStatusRequest()).controlplane_id == cp.name


@pytest.mark.parametrize(
    ("who", "role", "code"),
    [
        ("proxyd", "bridged", grpc.StatusCode.PERMISSION_DENIED),
        ("bridged", "proxyd", grpc.StatusCode.PERMISSION_DENIED),
        ("bridged", "admin", grpc.StatusCode.PERMISSION_DENIED),
        ("admin", "bridged", grpc.StatusCode.PERMISSION_DENIED),
        ("admin", "admin", grpc.StatusCode.PERMISSION_DENIED),
        ("bridged", "bogus", grpc.StatusCode.INVALID_ARGUMENT),
        ("proxyd", "", grpc.StatusCode.INVALID_ARGUMENT),
        (None, "bridged", grpc.StatusCode.UNAUTHENTICATED),
        ("wrong", "proxyd", grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_watch_needs_the_credential_of_the_role(
    shared_controlplane: Controlplane, who: str | None, role: str, code: grpc.StatusCode
) -> None:
    cp = shared_controlplane
    subscriber_id = f"refused-{who}-{role}"
    with grpc.insecure_channel(cp.address) as channel:
        stub = sync_pb2_grpc.SyncStub(channel)
        call = stub.Watch(
            sync_pb2.WatchRequest(
                subscriber_id=subscriber_id, role=role, instance_key=instance_key()
            ),
            metadata=credential(cp, who),
            timeout=10,
        )
        assert code_of(lambda: next(call)) == code
    status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
    assert subscriber_id not in [s.id for s in status.subscribers]


@pytest.mark.parametrize("who", ["bridged", "proxyd"])
def test_ack_for_an_unknown_subscriber_is_not_found(
    shared_controlplane: Controlplane, who: str
) -> None:
    cp = shared_controlplane
    with grpc.insecure_channel(cp.address) as channel:
        stub = sync_pb2_grpc.SyncStub(channel)
        request = sync_pb2.AckRequest(subscriber_id="nobody-here", version=1)
        code = code_of(lambda: stub.Ack(request, metadata=credential(cp, who), timeout=10))
        assert code == grpc.StatusCode.NOT_FOUND
        # The credential is checked before the subscriber is looked up.
        code = code_of(lambda: stub.Ack(request, metadata=credential(cp, None), timeout=10))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        code = code_of(lambda: stub.Ack(request, metadata=credential(cp, "admin"), timeout=10))
        assert code == grpc.StatusCode.PERMISSION_DENIED


def test_ack_for_another_roles_subscriber_is_refused(
    controlplane: Controlplane, secrets: Secrets
) -> None:
    cp = controlplane
    key = instance_key()
    with grpc.insecure_channel(cp.address) as channel:
        stub = sync_pb2_grpc.SyncStub(channel)
        watch = stub.Watch(
            sync_pb2.WatchRequest(subscriber_id="b1", role="bridged", instance_key=key),
            metadata=credential(cp, "bridged"),
            timeout=30,
        )
        try:
            snapshot = next(watch)
            ack = sync_pb2.AckRequest(
                subscriber_id="b1", instance_key=key, version=snapshot.version, error="forged"
            )
            code = code_of(lambda: stub.Ack(ack, metadata=credential(cp, "proxyd"), timeout=10))
            # Entries are per role: the proxyd credential cannot even see bridged's.
            assert code == grpc.StatusCode.NOT_FOUND
            (sub,) = cp.admin.GetStatus(admin_pb2.GetStatusRequest()).subscribers
            assert (sub.id, sub.role, sub.last_error) == ("b1", "bridged", "")
            stub.Ack(
                sync_pb2.AckRequest(subscriber_id="b1", instance_key=key, version=snapshot.version),
                metadata=credential(cp, "bridged"),
                timeout=10,
            )
            (sub,) = cp.admin.GetStatus(admin_pb2.GetStatusRequest()).subscribers
            assert sub.applied_version == snapshot.version
        finally:
            watch.cancel()


# --- metrics and shutdown ---------------------------------------------------------------------


def test_metrics_follow_the_snapshot_version(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    name = "aibridge_controlplane_snapshot_version"
    text = metrics(cp)
    assert f"# TYPE {name} gauge" in text
    assert metric_value(text, name) == cp.admin.revision()
    revision = cp.admin.create_provider(unique("openai")).revision
    wait_until(
        lambda: metric_value(metrics(cp), name) == revision, what=f"{name} to reach {revision}"
    )
    for token in (cp.secrets.admin, cp.secrets.bridged, cp.secrets.proxyd):
        assert token not in metrics(cp)
    with urllib.request.urlopen(f"http://127.0.0.1:{cp.metrics_port}/healthz", timeout=5) as r:
        assert r.status == 200


def test_sigterm_exits_zero_within_the_grace_period(controlplane: Controlplane) -> None:
    cp = controlplane
    assert cp.proc is not None
    with grpc.insecure_channel(cp.address) as channel:
        # An open Watch stream: in flight at SIGTERM, it must not hold the process up.
        watch = sync_pb2_grpc.SyncStub(channel).Watch(
            sync_pb2.WatchRequest(
                subscriber_id="lingering", role="proxyd", instance_key=instance_key()
            ),
            metadata=credential(cp, "proxyd"),
            timeout=60,
        )
        next(watch)
        started = time.monotonic()
        cp.stop()
        elapsed = time.monotonic() - started
        assert cp.proc.returncode == 0, cp.log()
        assert elapsed < 2.0 + 5.0, f"took {elapsed:.1f}s (grace 2s)"
        # The server ended the stream (so the subscriber moves on at once), not the deadline.
        with pytest.raises(StopIteration):
            next(watch)
    assert "shutting down" in cp.log()
    assert "Traceback" not in cp.log()
