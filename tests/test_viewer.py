"""The viewer credential (viewer.token): the admin API's reads, never a change."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from aibridge.v1 import admin_pb2
from controlplane.auth import is_read
from tests.harness import AdminClient, Controlplane

ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"]
# Every method the viewer may call. A new method is a mutation until it is added here.
READS = {
    "WhoAmI", "GetProvider", "ListProviders", "ListTokens", "GetStatus", "WaitForRevision",
    "QueryUsage", "ListAudit", "ListSettings", "ListInterceptions", "GetInterception",
    "ListSessions", "GetSession", "GetUser", "ListUsers", "GetTeam", "ListTeams", "ListLimits",
    "ListPrices", "QuerySpend",
}  # fmt: skip


def test_every_admin_method_is_a_read_or_a_mutation_on_purpose() -> None:
    reads = {m.name for m in ADMIN.methods if is_read(f"/aibridge.v1.Admin/{m.name}")}
    assert reads == READS
    assert not is_read("/aibridge.v1.Sync/Watch")


@pytest.fixture(scope="module")
def viewer(shared_controlplane: Controlplane) -> AdminClient:
    cp = shared_controlplane
    client = AdminClient(cp.address, cp.secrets.viewer)
    return client


def test_who_am_i_names_the_credential(
    shared_controlplane: Controlplane, viewer: AdminClient
) -> None:
    assert viewer.WhoAmI(admin_pb2.WhoAmIRequest()).role == "viewer"
    assert shared_controlplane.admin.WhoAmI(admin_pb2.WhoAmIRequest()).role == "admin"


def test_the_viewer_reads(shared_controlplane: Controlplane, viewer: AdminClient) -> None:
    shared_controlplane.admin.create_provider("seen-by-viewer")
    names = [p.name for p in viewer.ListProviders(admin_pb2.ListProvidersRequest()).providers]
    assert "seen-by-viewer" in names
    assert viewer.GetStatus(admin_pb2.GetStatusRequest()).revision >= 2
    viewer.QueryUsage(admin_pb2.QueryUsageRequest())
    viewer.ListAudit(admin_pb2.ListAuditRequest(limit=5))


@pytest.mark.parametrize(
    "method, request_message",
    [
        ("CreateProvider", admin_pb2.CreateProviderRequest(name="by-viewer", type="openai",
                                                            base_url="https://x.example/v1")),
        ("DeleteProvider", admin_pb2.DeleteProviderRequest(ref="seen-by-viewer")),
        ("CreateToken", admin_pb2.CreateTokenRequest(name="by-viewer")),
        ("SetSetting", admin_pb2.SetSettingRequest(key="record.prompts", value="off")),
        ("CreateUser", admin_pb2.CreateUserRequest(name="by-viewer")),
        ("SetPrice", admin_pb2.SetPriceRequest()),
    ],
)  # fmt: skip
def test_the_viewer_changes_nothing(
    shared_controlplane: Controlplane, viewer: AdminClient, method: str, request_message: object
) -> None:
    before = shared_controlplane.admin.revision()
    with pytest.raises(grpc.RpcError) as refused:
        getattr(viewer, method)(request_message)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "viewer" in (refused.value.details() or "")
    assert shared_controlplane.admin.revision() == before


def test_an_invalid_argument_names_its_field(shared_controlplane: Controlplane) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        shared_controlplane.admin.create_provider("bad-url", base_url="not a url")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailing: Any = refused.value.trailing_metadata()
    assert ("aibridge-field", "base_url") in [tuple(item) for item in trailing]
    assert (refused.value.details() or "").startswith("base_url")
