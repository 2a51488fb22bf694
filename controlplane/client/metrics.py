"""The control-channel metrics both data planes expose, read from their subscriber."""

from __future__ import annotations

import time

from prometheus_client import Gauge

from controlplane.client.subscriber import Subscriber


def expose_subscriber(process: str, subscriber: Subscriber) -> None:
    """aibridge_{process}_snapshot_version, _controlplane_connected, _snapshot_from_cache
    and _seconds_since_snapshot, computed at scrape time."""

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
        f"{prefix}_seconds_since_snapshot", "Seconds since a snapshot was last applied (-1: none)"
    ).set_function(seconds_since)
