"""/healthz, /readyz and /metrics answer alike from the three processes (common/probes.py):
the controlplane's metrics listener, bridged's port, and proxyd's proxy port."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from grpc_health.v1 import health, health_pb2

from controlplane.cache import SnapshotCache
from controlplane.server import _readiness
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


def test_the_controlplane_is_ready_while_its_grpc_health_is_serving() -> None:
    """NOT_SERVING (database down, or shutting down) makes /readyz answer 503."""

    async def scenario() -> None:
        servicer = health.aio.HealthServicer()
        readiness = _readiness(servicer, SnapshotCache())
        assert await readiness() == {"ready": True, "version": 0}
        await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert await readiness() == {"ready": False, "version": 0}
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await servicer.enter_graceful_shutdown()
        assert (await readiness())["ready"] is False

    asyncio.run(scenario())
