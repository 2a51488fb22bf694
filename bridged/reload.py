"""The one place a snapshot becomes bridged's live route table: build it, swap it, tidy
up. Requests read `LiveRouteTable.table` once at their start and keep that value, so a
swap never touches a request in flight. (proxyd's counterpart: proxyd/reload.py.)
"""

from __future__ import annotations

import logging

from aibridge.v1 import snapshot_pb2
from bridged import metrics
from bridged.clouds.credentials import CloudCredentials
from bridged.keys import KeyHealth
from bridged.routes import RouteBuilder, RouteTable
from bridged.upstreams import UpstreamPools
from common.subscriber import ApplyResult

log = logging.getLogger(__name__)


class LiveRouteTable:
    """The route table requests are served from, replaced whole by each snapshot."""

    def __init__(
        self, pools: UpstreamPools, keys: KeyHealth, credentials: CloudCredentials | None = None
    ) -> None:
        self.table: RouteTable | None = None
        self._pools = pools
        self._keys = keys
        self._credentials = credentials
        self._builder = RouteBuilder()

    def apply(self, snapshot: snapshot_pb2.ProviderSnapshot) -> ApplyResult:
        table, skipped = self._builder.build(snapshot)
        for s in skipped:
            log.warning("provider %s (%s) skipped: %s", s.name, s.provider_id, s.reason)
        self.table = table  # the swap
        self._keys.forget_expired()
        self._pools.keep_only(table.origins)
        if self._credentials is not None:
            self._credentials.keep_only(table.cloud_key_ids)
        metrics.SKIPPED_PROVIDERS.set(len(skipped))
        return ApplyResult(skipped=skipped)
