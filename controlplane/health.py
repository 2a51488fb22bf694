"""Whether the controlplane can serve: one answer, for the gRPC health service and for
/readyz alike.

Serving once the gRPC server has started, not while the database is down (admin calls
would only answer UNAVAILABLE; Watch streams keep serving the last snapshot meanwhile),
and no more once shutdown has begun.
"""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1 import health, health_pb2

from common import probes
from controlplane.cache import SnapshotCache

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    def __init__(self) -> None:
        self.servicer = health.aio.HealthServicer()
        self._started = False
        self._database_up = True
        self._stopping = False
        self._updates: set[asyncio.Task[None]] = set()  # held until done

    @property
    def serving(self) -> bool:
        return self._started and self._database_up and not self._stopping

    async def started(self) -> None:
        self._started = True
        await self._publish()

    def database(self, up: bool) -> None:
        """Told by the publisher whenever it finds the database down or up."""
        if up == self._database_up:
            return
        self._database_up = up
        log.warning("database %s", "is back" if up else "unavailable: health NOT_SERVING")
        task = asyncio.get_running_loop().create_task(self._publish())
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    async def stopping(self) -> None:
        self._stopping = True
        await self.servicer.enter_graceful_shutdown()

    def readiness(self, cache: SnapshotCache) -> probes.Readiness:
        async def readiness() -> dict[str, object]:
            return {"ready": self.serving, "version": cache.version}

        return readiness

    async def _publish(self) -> None:
        await self.servicer.set("", SERVING if self.serving else NOT_SERVING)
