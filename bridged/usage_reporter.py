"""Ships usage records to the controlplane in batches.

The buffer is bounded by records and by bytes (the oldest records go first when it
overflows, counted in a metric); a batch that fails is retried until the controlplane
takes it, and request ids make a retried batch safe to store twice.
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
from common.lifecycle import wait_set
from common.wire import MAX_USAGE_REQUEST_BYTES

log = logging.getLogger(__name__)

# Records per ReportUsage call. Each call costs the request path far more than its
# records do (gRPC's threads take the GIL from the event loop), so batches are large
# (docs/benchmarks.md, section 1, measures the sizes); it is also the largest
# --usage-batch-size allowed.
DEFAULT_BATCH_SIZE = 1000
# A batch is also cut before its records pass this many bytes, under the controlplane's
# limit on usage requests (MAX_USAGE_REQUEST_BYTES, 4 MiB) with room for the request's
# framing. A record without texts is at most about 2.9 KB; one with texts is at most
# about 1.2 MiB (bridged/capture/settings.py bounds them): a batch holds at least three,
# and a record larger than a batch is never made (tests/test_usage.py sends the largest).
MAX_BATCH_BYTES = MAX_USAGE_REQUEST_BYTES - 64 * 1024
_FRAMING = 6  # a record's tag and length in the request: 1 byte, and up to 5
DEFAULT_BUFFER_BYTES = 256 * 1024 * 1024


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
        capacity_bytes: int = DEFAULT_BUFFER_BYTES,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._addresses = addresses
        self._token = token
        self._tls = tls
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._capacity = capacity
        self._capacity_bytes = capacity_bytes
        # Each record with its size in a request, oldest first.
        self._buffer: collections.deque[tuple[usage_pb2.Interception, int]] = collections.deque()
        self._buffered_bytes = 0
        self._wake = asyncio.Event()
        self._address_index = 0
        self._channel: grpc.aio.Channel | None = None  # kept open between batches
        self._backoff = Backoff(0.2, 10.0, sleep=sleep)

    def record(self, interception: usage_pb2.Interception) -> None:
        size = interception.ByteSize() + _FRAMING
        if size > MAX_BATCH_BYTES:  # never sent, and never made: see MAX_BATCH_BYTES
            log.error("usage record %s of %d bytes dropped", interception.request_id, size)
            metrics.USAGE_DROPPED.inc()
            return
        self._buffer.append((interception, size))
        self._buffered_bytes += size
        while self._overflowing():
            self._buffered_bytes -= self._buffer.popleft()[1]
            metrics.USAGE_DROPPED.inc()
        metrics.USAGE_BUFFERED.set(len(self._buffer))
        if len(self._buffer) >= self._batch_size or self._buffered_bytes >= MAX_BATCH_BYTES:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def take_pending(self) -> list[usage_pb2.Interception]:
        """Everything still buffered, which the reporter forgets (to be spooled)."""
        records = [record for record, _size in self._buffer]
        self._buffer.clear()
        self._buffered_bytes = 0
        metrics.USAGE_BUFFERED.set(0)
        return records

    async def run(self) -> None:
        while True:
            await wait_set(self._wake, self._flush_interval)
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
            batch = self._take_batch(remaining)
            remaining -= len(batch)
            records = [record for record, _size in batch]
            try:
                sent = await self._send(records, timeout, logging.INFO if last else logging.WARNING)
            except BaseException:  # cancelled mid-send (shutdown): the batch stays ours
                self._requeue(batch)
                raise
            if not sent:
                self._requeue(batch)
                return False
            metrics.USAGE_BUFFERED.set(len(self._buffer))
            metrics.USAGE_SENT.inc(len(batch))
        return True

    def _take_batch(self, up_to: int) -> list[tuple[usage_pb2.Interception, int]]:
        """The oldest records, as many as one call may carry."""
        batch: list[tuple[usage_pb2.Interception, int]] = []
        size = 0
        while self._buffer and len(batch) < min(self._batch_size, up_to):
            if size + self._buffer[0][1] > MAX_BATCH_BYTES:
                break
            batch.append(self._buffer.popleft())
            size += batch[-1][1]
        self._buffered_bytes -= size
        return batch

    def _requeue(self, batch: list[tuple[usage_pb2.Interception, int]]) -> None:
        """Puts an undelivered batch back in front; if that overflows, the newest go."""
        self._buffer.extendleft(reversed(batch))
        self._buffered_bytes += sum(size for _record, size in batch)
        while self._overflowing():
            self._buffered_bytes -= self._buffer.pop()[1]
            metrics.USAGE_DROPPED.inc()
        metrics.USAGE_BUFFERED.set(len(self._buffer))

    def _overflowing(self) -> bool:
        return len(self._buffer) > self._capacity or self._buffered_bytes > self._capacity_bytes

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
