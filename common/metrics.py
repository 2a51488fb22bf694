"""The metrics both data planes expose: their control channel, read from the subscriber,
and their garbage-collection pauses."""

from __future__ import annotations

import bisect
import gc
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from common.subscriber import Subscriber


def expose_subscriber(process: str, subscriber: Subscriber) -> None:
    """aibridge_{process}_snapshot_version, _controlplane_connected, _snapshot_from_cache,
    _snapshot_apply_seconds and _seconds_since_snapshot, computed at scrape time."""

    def seconds_since() -> float:
        at = subscriber.last_snapshot_at
        return -1.0 if at is None else time.monotonic() - at

    prefix = f"aibridge_{process}"
    Gauge(f"{prefix}_snapshot_version", "Applied snapshot version").set_function(
        lambda: subscriber.applied_version
    )
    Gauge(f"{prefix}_controlplane_connected", "1 while connected to a controlplane").set_function(
        lambda: 1 if subscriber.connected else 0
    )
    Gauge(
        f"{prefix}_snapshot_from_cache",
        "1 while serving the snapshot saved by an earlier run (no controlplane reached yet)",
    ).set_function(lambda: 1 if subscriber.from_cache else 0)
    Gauge(
        f"{prefix}_snapshot_apply_seconds",
        "Time the data plane took to apply the last snapshot (build its tables and swap)",
    ).set_function(lambda: subscriber.last_apply_seconds)
    Gauge(
        f"{prefix}_seconds_since_snapshot", "Seconds since a snapshot was last applied (-1: none)"
    ).set_function(seconds_since)


class GcPauses:
    """Garbage-collection pauses, timed by gc callbacks and exposed as a histogram
    (aibridge_{process}_gc_pause_seconds) and the longest one (…_gc_pause_max_seconds).

    The callback only does arithmetic on plain lists: it may run inside any allocation,
    even one made while a metric's lock is held, so it must not take that lock itself.
    The metric families are built at scrape time instead.
    """

    BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)

    def __init__(self, process: str) -> None:
        self.prefix = f"aibridge_{process}_gc_pause"
        self.counts = [0] * (len(self.BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0
        self.longest = 0.0
        self._started = 0.0

    def callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.counts[bisect.bisect_left(self.BUCKETS, pause)] += 1
        self.total += pause
        self.longest = max(self.longest, pause)

    def collect(self) -> Iterator[Metric]:
        cumulative, buckets = 0, []
        for bound, count in zip((*self.BUCKETS, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        yield HistogramMetricFamily(
            f"{self.prefix}_seconds", "Garbage-collection pauses", buckets=buckets,
            sum_value=self.total,
        )  # fmt: skip
        yield GaugeMetricFamily(
            f"{self.prefix}_max_seconds", "Longest garbage-collection pause", value=self.longest
        )


def gauge_value(gauge: Gauge) -> float:
    """An unlabelled gauge's value, read as a scrape reads it."""
    (family,) = gauge.collect()
    return family.samples[0].value


def expose_gc_pauses(process: str) -> GcPauses:
    pauses = GcPauses(process)
    gc.callbacks.append(pauses.callback)
    REGISTRY.register(pauses)
    return pauses
