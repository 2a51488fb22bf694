"""Ships usage records to the controlplane in batches.

The buffer is bounded (the oldest records go first when it overflows, counted in a
metric); a batch that fails is retried until the controlplane takes it, and request
ids make a retried batch safe to store twice.
"""

from __future__ import annotations

import asyncio
import collections
import logging

import grpc

from aibridge.v1 import usage_pb2, usage_pb2_grpc
from bridged import metrics
from common.backoff import Backoff, Sleep
from common.channel import ClientTLS, auth_metadata, open_aio_channel

log = logging.getLogger(__name__)

# Records per ReportUsage call. Each call costs the request path far more than its
# records do (gRPC's threads take the GIL from the event loop), so batches are large
# (docs/benchmarks.md, section 1, measures the sizes). A record is at most about 2.9 KB
# (forward.py cuts the model to 200 characters and the user agent to 500, 4 bytes each
# at worst), so a batch of this size stays under the controlplane's limit on usage
# requests, MAX_USAGE_REQUEST_BYTES (4 MiB; tests/test_usage.py sends one); it is also
# the largest --usage-batch-size allowed.
DEFAULT_BATCH_SIZE = 1000


class UsageReporter:
    def __init__(
        self,
        addresses: tuple[str, ...],
        token: str,
        tls: ClientTLS | None,
        *,
        batch_size: int,
        flush_interval: float,
        capacity: int,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._addresses = addresses
        self._token = token
        self._tls = tls
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._buffer: collections.deque[usage_pb2.Interception] = collections.deque(maxlen=capacity)
        self._wake = asyncio.Event()
        self._address_index = 0
        self._channel: grpc.aio.Channel | None = None  # kept open between batches
        self._backoff = Backoff(0.2, 10.0, sleep=sleep)

    def record(self, interception: usage_pb2.Interception) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            metrics.USAGE_DROPPED.inc()
        self._buffer.append(interception)
        metrics.USAGE_BUFFERED.set(len(self._buffer))
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def take_pending(self) -> list[usage_pb2.Interception]:
        """Everything still buffered, which the reporter forgets (to be spooled)."""
        records = list(self._buffer)
        self._buffer.clear()
        metrics.USAGE_BUFFERED.set(0)
        return records

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            # Only what is buffered now: chasing the records that arrive while a batch is
            # on its way would turn steady traffic into a stream of tiny calls.
            if await self.flush(up_to=len(self._buffer)):
                self._backoff.reset()
            else:
                self._backoff.failed()
                await self._backoff.pause()
                self._wake.set()  # the pause was the wait: the batch goes again now

    async def flush(
        self, timeout: float = 10.0, up_to: int | None = None, last: bool = False
    ) -> bool:
        """Sends everything buffered (or the first `up_to` records); False if the
        controlplane did not take them all. The `last` flush, at shutdown, says so only
        at INFO: what it could not send is spooled, not lost."""
        remaining = len(self._buffer) if up_to is None else up_to
        while self._buffer and remaining > 0:
            # Taken out before the send: records arriving meanwhile cannot push them out.
            size = min(self._batch_size, len(self._buffer), remaining)
            batch = [self._buffer.popleft() for _ in range(size)]
            remaining -= size
            try:
                sent = await self._send(batch, timeout, logging.INFO if last else logging.WARNING)
            except BaseException:  # cancelled mid-send (shutdown): the batch stays ours
                self._requeue(batch)
                raise
            if not sent:
                self._requeue(batch)
                return False
            metrics.USAGE_BUFFERED.set(len(self._buffer))
            metrics.USAGE_SENT.inc(len(batch))
        return True

    def _requeue(self, batch: list[usage_pb2.Interception]) -> None:
        """Puts an undelivered batch back in front; if that overflows, the newest go."""
        room = (self._buffer.maxlen or 0) - len(self._buffer)
        if room < len(batch):
            overflow = len(batch) - room
            metrics.USAGE_DROPPED.inc(overflow)
            for _ in range(overflow):
                self._buffer.pop()
        self._buffer.extendleft(reversed(batch))
        metrics.USAGE_BUFFERED.set(len(self._buffer))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _send(
        self, batch: list[usage_pb2.Interception], timeout: float, failure_level: int
    ) -> bool:
        address = self._addresses[self._address_index % len(self._addresses)]
        try:
            if self._channel is None:
                self._channel = open_aio_channel(address, self._tls)
            await usage_pb2_grpc.UsageStub(self._channel).ReportUsage(
                usage_pb2.ReportUsageRequest(interceptions=batch),
                metadata=auth_metadata(self._token),
                timeout=timeout,
            )
            return True
        except grpc.aio.AioRpcError as exc:
            reason = exc.code().name
        except Exception as exc:  # a bad TLS file, say: keep the records, keep trying
            reason = type(exc).__name__
        log.log(
            failure_level,
            "usage batch of %d not delivered to %s: %s; %d buffered",
            len(batch), address, reason, len(self._buffer) + len(batch),
        )  # fmt: skip
        await self.close()
        self._address_index += 1  # another replica may be up
        return False
