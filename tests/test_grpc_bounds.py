"""The controlplane's gRPC bounds: a refused call costs no memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aibridge.v1 import admin_pb2
from tests.grpc_flood import Flood, rss_mb
from tests.harness import Controlplane, Secrets

RSS_GROWTH_MB = 100  # issue 11: the flood must leave the controlplane's RSS under +100 MB


@pytest.fixture
def sqlite_controlplane(tmp_path: Path, secrets: Secrets) -> Iterator[Controlplane]:
    cp = Controlplane(f"sqlite:///{tmp_path / 'aibridge.db'}", tmp_path, secrets).start()
    try:
        yield cp
    finally:
        cp.stop()


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
