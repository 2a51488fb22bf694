"""/healthz, /readyz and /metrics: what every process answers, decided in one place.

`answer` turns a probe path into status, body and content type; `add_routes` serves it
from an aiohttp app (bridged, the controlplane's metrics listener), and proxyd writes the
same answer on its own HTTP connection.

- /healthz: 200 {"status": "ok"} while the process runs.
- /readyz: the process's readiness as JSON; 200 when "ready", else 503.
- /metrics: the Prometheus text format.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from common.subscriber import Subscriber

HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"
PATHS = (HEALTHZ, READYZ, METRICS)

JSON = "application/json"
# What generate_latest() writes; prometheus_client's CONTENT_TYPE_LATEST names a newer
# version (1.0.0) since 0.22 without changing that output.
PROMETHEUS_TEXT = CONTENT_TYPE_PLAIN_0_0_4

# A JSON object with at least "ready": bool, made when /readyz is asked.
Readiness = Callable[[], Awaitable[Mapping[str, object]]]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str

    @property
    def reason(self) -> str:
        return HTTPStatus(self.status).phrase


async def answer(path: str, readiness: Readiness) -> Answer | None:
    """The answer to a probe at `path` (no query), or None when it is not a probe."""
    if path == HEALTHZ:
        return _json(200, {"status": "ok"})
    if path == READYZ:
        state = await readiness()
        return _json(200 if state["ready"] else 503, state)
    if path == METRICS:
        return Answer(200, generate_latest(), PROMETHEUS_TEXT)
    return None


def subscriber_readiness(version: Callable[[], int | None], subscriber: Subscriber) -> Readiness:
    """A data plane's readiness: ready once it serves a snapshot; `version` is that
    snapshot's version, None while there is none."""

    async def readiness() -> Mapping[str, object]:
        serving = version()
        return {
            "ready": serving is not None,
            "version": serving or 0,
            "controlplane_connected": subscriber.connected,
            "from_cache": subscriber.from_cache,
        }

    return readiness


def add_routes(router: web.UrlDispatcher, readiness: Readiness) -> None:
    """Serves the probes from an aiohttp app (GET and HEAD)."""

    async def probe(request: web.Request) -> web.Response:
        found = await answer(request.path, readiness)
        if found is None:  # only routed for PATHS
            raise web.HTTPNotFound()
        return web.Response(
            status=found.status, body=found.body, headers={"Content-Type": found.content_type}
        )

    for path in PATHS:
        router.add_get(path, probe)


def _json(status: int, body: Mapping[str, object]) -> Answer:
    return Answer(status, json.dumps(body).encode(), JSON)
