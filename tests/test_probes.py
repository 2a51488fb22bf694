"""/healthz, /readyz and /metrics answer alike from the three processes (common/probes.py):
the controlplane's metrics listener, bridged's port, and proxyd's proxy port."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from grpc_health.v1 import health_pb2

from controlplane.cache import SnapshotCache
from controlplane.health import NOT_SERVING, SERVING, Health
from tests.harness import Bridged, Controlplane, Proxyd, Secrets, free_port

JSON = "application/json"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def probe(url: str, path: str) -> httpx.Response:
    return httpx.get(url + path, timeout=10)


def test_the_three_processes_answer_the_probes_alike(tmp_path: Path, secrets: Secrets) -> None:
    controlplane = Controlplane(f"sqlite:///{tmp_path / 'aibridge.db'}", tmp_path, secrets).start()
    bridged = proxyd = None
    try:
        bridged = Bridged([controlplane.address], tmp_path, secrets).start()
        proxyd = Proxyd([controlplane.address], bridged.url, tmp_path, secrets).start()
        revision = controlplane.admin.revision()
        controlplane.admin.wait_applied(revision)
        urls = {
            "controlplane": f"http://127.0.0.1:{controlplane.metrics_port}",
            "bridged": bridged.url,
            "proxyd": proxyd.url,
        }
        for process, url in urls.items():
            healthz = probe(url, "/healthz")
            assert (healthz.status_code, healthz.headers["content-type"]) == (200, JSON), process
            assert healthz.content == b'{"status": "ok"}', process

            readyz = probe(url, "/readyz")
            assert (readyz.status_code, readyz.headers["content-type"]) == (200, JSON), process
            assert readyz.json()["ready"] is True and readyz.json()["version"] == revision

            metrics = probe(url, "/metrics")
            assert metrics.status_code == 200, process
            assert metrics.headers["content-type"] == PROMETHEUS_TEXT, process
            assert "\n# TYPE process_cpu_seconds_total counter\n" in metrics.text, process
        for process in ("bridged", "proxyd"):
            assert probe(urls[process], "/readyz").json() == {
                "ready": True,
                "version": revision,
                "controlplane_connected": True,
                "from_cache": False,
            }, process
        assert probe(urls["controlplane"], "/readyz").json() == {"ready": True, "version": revision}
        assert "aibridge_bridged_snapshot_version" in probe(urls["bridged"], "/metrics").text
        assert "aibridge_proxyd_snapshot_version" in probe(urls["proxyd"], "/metrics").text
    finally:
        for started in (proxyd, bridged, controlplane):
            if started is not None:
                started.stop()


def test_a_data_plane_without_a_snapshot_is_alive_but_not_ready(
    tmp_path: Path, secrets: Secrets
) -> None:
    nowhere = [f"127.0.0.1:{free_port()}"]
    bridged = Bridged(nowhere, tmp_path, secrets).start(wait_ready=False)
    proxyd = None
    try:
        proxyd = Proxyd(nowhere, bridged.url, tmp_path, secrets).start(wait_ready=False)
        for url in (bridged.url, proxyd.url):
            assert probe(url, "/healthz").status_code == 200
            readyz = probe(url, "/readyz")
            assert (readyz.status_code, readyz.headers["content-type"]) == (503, JSON)
            assert readyz.json() == {
                "ready": False,
                "version": 0,
                "controlplane_connected": False,
                "from_cache": False,
            }
    finally:
        if proxyd is not None:
            proxyd.stop()
        bridged.stop()


def test_the_controlplane_is_ready_once_started_while_its_database_is_up() -> None:
    """/readyz and the gRPC health service give one answer: not before the gRPC server
    has started, not while the database is down, not once shutdown has begun."""

    async def grpc_status(health: Health) -> int:
        no_context: Any = None  # Check needs one only to refuse an unknown service
        checked = await health.servicer.Check(health_pb2.HealthCheckRequest(), no_context)
        return int(checked.status)

    async def settles(health: Health, expected: int) -> None:
        deadline = time.monotonic() + 5
        while await grpc_status(health) != expected:
            assert time.monotonic() < deadline, "the gRPC health status did not follow"
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        health = Health()
        readiness = health.readiness(SnapshotCache())
        assert await readiness() == {"ready": False, "version": 0}
        await health.started()
        assert await readiness() == {"ready": True, "version": 0}
        await settles(health, SERVING)
        health.database(False)
        assert (await readiness())["ready"] is False
        await settles(health, NOT_SERVING)
        health.database(True)
        assert (await readiness())["ready"] is True
        await settles(health, SERVING)
        await health.stopping()
        assert (await readiness())["ready"] is False
        await settles(health, NOT_SERVING)

    asyncio.run(scenario())
