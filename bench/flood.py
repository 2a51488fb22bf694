"""Flood: the controlplane's memory and admin latency under a flood of large admin calls.

A real controlplane on SQLite. A flood process (tests/grpc_flood.py, the one the tests
use) keeps --calls (200) `Admin.CreateProvider` calls in flight over --channels (20)
connections, each with a --field-mb (4) MB display_name, for --seconds (20): without a
credential by default (`--as nobody`), or with the bridged credential (`--as bridged`,
a wrong role) or the admin one (`--as admin`: an authenticated flood, which the
controlplane refuses by size, after receiving each request).

Meanwhile this process calls `Admin.GetStatus` with the admin credential, one call at a
time with --gap-ms (20) between calls, and samples the controlplane's RSS
(/proc/PID/status VmRSS) every 100 ms. The same probe runs alone first (--baseline, 10 s)
for the latency without the flood. Reported: RSS at rest and the peak growth during the
flood; GetStatus p50/p99/max alone and under the flood; the flood's calls by status code.
Targets (issue 11): RSS growth under 100 MB, GetStatus p99 under 50 ms under the flood.
python -m bench.flood [--quick] [--as nobody|bridged|admin] [--calls 200] [--channels 20]
    [--field-mb 4] [--seconds 20] [--baseline 10] [--rounds 1]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from aibridge.v1 import admin_pb2
from bench.common import emit, machine_load, percentile, table
from tests.grpc_flood import Flood, rss_mb
from tests.harness import Controlplane, Secrets

RSS_TARGET_MB = 100.0
P99_TARGET_MS = 50.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s of flood, 5 s of baseline")
    parser.add_argument(
        "--as", dest="caller", default="nobody", choices=["nobody", "bridged", "admin"],
        help="the flood's credential",
    )  # fmt: skip
    parser.add_argument("--calls", type=int, default=200, help="flood calls in flight")
    parser.add_argument("--channels", type=int, default=20, help="flood connections")
    parser.add_argument("--field-mb", type=float, default=4.0, help="display_name size, MB")
    parser.add_argument("--seconds", type=float, default=20.0, help="flood duration")
    parser.add_argument("--baseline", type=float, default=10.0, help="probe alone, seconds")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="between GetStatus calls")
    parser.add_argument("--rounds", type=int, default=1, help="floods, each on a fresh process")
    options = parser.parse_args()
    if options.quick:
        options.seconds, options.baseline = min(options.seconds, 10.0), min(options.baseline, 5.0)

    emit("flood", kind="machine", when="start", **machine_load())
    results = [run_round(options) for _ in range(options.rounds)]
    report(results, options)
    load = machine_load()
    emit("flood", kind="machine", when="end", **load)
    print(f"machine: {load['cpus']} CPUs, load average {load['loadavg']} at the end")


def run_round(options: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="aibridge-bench-flood-"))
    secrets = Secrets()
    cp = Controlplane(f"sqlite:///{work / 'aibridge.db'}", work, secrets).start()
    try:
        assert cp.proc is not None
        cp.admin.GetStatus(admin_pb2.GetStatusRequest())  # warm: channel, threads, database
        baseline = probe(cp, options.baseline, options.gap_ms)
        at_rest = rss_mb(cp.proc.pid)
        token = {"nobody": "", "bridged": secrets.bridged, "admin": secrets.admin}[options.caller]
        rss = RssSampler(cp.proc.pid)
        flood = Flood(
            cp.address, token, calls=options.calls, channels=options.channels,
            field_bytes=int(options.field_mb * 1_000_000), seconds=options.seconds,
        )  # fmt: skip
        rss.start()
        try:
            flooded = probe(cp, options.seconds, options.gap_ms)
            outcome = flood.result()
        finally:
            flood.stop()
            rss.stop()
        cp.check_alive()
    finally:
        cp.stop()
    return {
        "rss_at_rest_mb": round(at_rest, 1),
        "rss_growth_mb": round(max(rss.samples) - at_rest, 1),
        "baseline": baseline,
        "flooded": flooded,
        "flood": outcome,
    }


class RssSampler:
    """A process's resident set every 100 ms, in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(rss_mb(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def probe(cp: Controlplane, seconds: float, gap_ms: float) -> dict[str, Any]:
    """GetStatus with the admin credential, one at a time: latencies in ms, and failures."""
    latencies: list[float] = []
    failures: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            cp.admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=10)
            latencies.append((time.perf_counter() - started) * 1000)
        except grpc.RpcError as exc:
            failures[exc.code().name] += 1
        time.sleep(gap_ms / 1000)
    return {
        "calls": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 2) if latencies else None,
        "max_ms": round(max(latencies), 2) if latencies else None,
        "failures": dict(failures),
    }


def report(results: list[dict[str, Any]], options: argparse.Namespace) -> None:
    rows = []
    for n, r in enumerate(results):
        print(f"round {n}: the flood's answers: {r['flood']['details']}")
        emit("flood", round=n, caller=options.caller, calls=options.calls,
             channels=options.channels, field_mb=options.field_mb, **r)  # fmt: skip
        rows.append((
            n, r["rss_at_rest_mb"], r["rss_growth_mb"],
            r["baseline"]["p50_ms"], r["baseline"]["p99_ms"],
            r["flooded"]["p50_ms"], r["flooded"]["p99_ms"], r["flooded"]["max_ms"],
            sum(r["flooded"]["failures"].values()),
            ", ".join(f"{k} {v}" for k, v in r["flood"]["codes"].items()),
        ))  # fmt: skip
    table(
        f"Flood: {options.calls} CreateProvider calls in flight as {options.caller}, "
        f"{options.field_mb:g} MB each, {options.channels} connections, {options.seconds:g} s",
        ["round", "RSS MB", "growth MB", "alone p50", "p99", "flood p50", "p99", "max",
         "probe failed", "flood calls by status"],
        rows,
    )  # fmt: skip
    if options.caller != "nobody":
        print("\n(issue 11's targets are for a flood without a credential)")
    growth = max(r["rss_growth_mb"] for r in results)
    p99 = max(r["flooded"]["p99_ms"] or float("inf") for r in results)
    print(
        f"\ntargets: RSS growth {growth:.0f} MB (<= {RSS_TARGET_MB:.0f}): "
        f"{'met' if growth <= RSS_TARGET_MB else 'MISSED'}; GetStatus p99 under the flood "
        f"{p99:.1f} ms (<= {P99_TARGET_MS:.0f}): {'met' if p99 <= P99_TARGET_MS else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
