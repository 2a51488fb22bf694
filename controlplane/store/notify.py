"""LISTEN for revisions committed by other replicas (PostgreSQL only).

The connection is dedicated and re-established whenever it is lost; after every
(re)connect the caller is told to check, since notifications sent while nobody was
listening are gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg
from prometheus_client import Gauge

from common.backoff import Backoff, Sleep
from controlplane.store.db import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

LISTENING = Gauge("aibridge_controlplane_listening", "1 while the LISTEN connection is up")


class RevisionListener:
    def __init__(
        self,
        conninfo: str,
        on_change: Callable[[], None],
        liveness_interval: float,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.conninfo = conninfo
        self.on_change = on_change
        self.liveness_interval = liveness_interval
        self._backoff = Backoff(0.1, 5.0, sleep=sleep)

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN connection lost: %s", _first_line(exc))
            finally:
                LISTENING.set(0)
            self._backoff.failed()
            await self._backoff.pause()

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=5,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        async with conn:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            LISTENING.set(1)
            self._backoff.reset()
            log.info("listening for revisions on %s", NOTIFY_CHANNEL)
            self.on_change()  # anything committed while nobody listened
            while True:
                async for _ in conn.notifies(timeout=self.liveness_interval):
                    self.on_change()
                # Quiet for a while: prove the connection is still alive.
                await conn.execute("SELECT 1")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
