"""The one place a snapshot becomes proxyd's live host router: build it, swap it. Each
request reads `LiveHostRouter.router` afresh, so requests on an already open connection
follow the newest routing. (bridged's counterpart: bridged/reload.py.)
"""

from __future__ import annotations

import logging

from aibridge.v1 import snapshot_pb2
from common.subscriber import ApplyResult
from proxyd import metrics
from proxyd.routes import HostRouter, build_host_router

log = logging.getLogger(__name__)


class LiveHostRouter:
    """The host router CONNECTs and requests are routed by, replaced whole by each
    snapshot."""

    def __init__(self) -> None:
        self.router: HostRouter | None = None

    def apply(self, snapshot: snapshot_pb2.ProviderSnapshot) -> ApplyResult:
        router, skipped = build_host_router(snapshot)
        for s in skipped:
            log.warning("provider %s (%s) not intercepted: %s", s.name, s.provider_id, s.reason)
        self.router = router  # the swap
        metrics.INTERCEPTED_HOSTS.set(len(router.hosts))
        return ApplyResult(skipped=skipped)
