"""Propagation: from a mutation's commit to every subscriber having applied it, with 1, 10
and 100 real subscribers (the subscriber library, in a few worker processes:
bench/subscribers.py).

The commit happens somewhere inside the admin call, so each mutation is timed from both
ends: `from_return` measures from the moment the call returned (a lower bound on the
latency: the commit was no later than that) and `from_call` from the moment it was made
(an upper bound). The subscribers stamp time.monotonic() in their apply function;
CLOCK_MONOTONIC is system-wide, so the times compare across processes. `ack_view` is
the controlplane's own view: when admin WaitForRevision (called right after the
mutation returns) came back, i.e. every subscriber's Ack was in. WaitForRevision has a
cost of its own in the controlplane (it re-reads the fleet on every Ack, which slows the
fan-out it watches), so it runs on extra mutations only (one after every --ack-every
measured ones): the "measured" rows never have it running, the "observed" rows do.

Mutations run one at a time: the next starts once every subscriber applied the last
and a pause (--pause) has let the controlplane finish with the Acks, as between an
administrator's changes. One JSON line per result, then a table.
Target (the issue): p99 <= 50 ms with 100 subscribers.
python -m bench.propagation [--quick] [--mutations 200] [--seconds 150]
    [--subscribers 1,10,100] [--workers 4] [--pause 0.1] [--ack-every 3] [--postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from aibridge.v1 import admin_pb2
from bench.common import emit, machine_load, percentile, table
from bench.subscribers import SubscriberWorkers
from tests.harness import AdminClient, Controlplane, Secrets, postgres_database, wait_until

TARGET_P99_MS = 50.0
OTHER_PROVIDERS = 9  # a realistic small snapshot: ten providers, one key each, one token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 mutations per size")
    parser.add_argument("--mutations", type=int, default=200, help="per subscriber count")
    parser.add_argument("--seconds", type=float, default=150.0, help="cap per subscriber count")
    parser.add_argument("--subscribers", default="1,10,100")
    parser.add_argument("--workers", type=int, default=4, help="subscriber processes, at most")
    parser.add_argument("--role", default="bridged", choices=["bridged", "proxyd"])
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between mutations")
    parser.add_argument(
        "--ack-every", type=int, default=3, help="an observed mutation after every N (0: none)"
    )
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL, not SQLite")
    options = parser.parse_args()
    if options.quick:
        options.mutations = min(options.mutations, 20)
        options.seconds = min(options.seconds, 30.0)
    sizes = [int(n) for n in options.subscribers.split(",")]

    emit("propagation", kind="machine", when="start", **machine_load())
    work = Path(tempfile.mkdtemp(prefix="aibridge-bench-propagation-"))
    secrets = Secrets()
    results = []
    with database(options.postgres, work) as url:
        cp = Controlplane(url, work, secrets).start()
        try:
            setup(cp)
            for n in sizes:
                results.append(measure(cp, secrets, n, options))
        finally:
            cp.stop()
    report(results, options)
    load = machine_load()
    emit("propagation", kind="machine", when="end", **load)
    print(f"machine: {load['cpus']} CPUs, load average {load['loadavg']} at the end")


@contextlib.contextmanager
def database(postgres: bool, work: Path) -> Iterator[str]:
    if postgres:
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{work / 'propagation.db'}"


def setup(cp: Controlplane) -> None:
    admin = cp.admin
    admin.create_provider("bench", "https://api.bench.test/v1", keys=["sk-bench-0000000000000000"])
    for i in range(OTHER_PROVIDERS):
        admin.create_provider(f"other-{i}", f"https://other{i}.bench.test/v1",
                              keys=[f"sk-other-{i:04d}-000000000000"])  # fmt: skip
    admin.CreateToken(admin_pb2.CreateTokenRequest(name="bench"))


def measure(cp: Controlplane, secrets: Secrets, n: int, options: argparse.Namespace) -> dict:
    admin = cp.admin
    token = secrets.bridged if options.role == "bridged" else secrets.proxyd
    workers = SubscriberWorkers(cp.address, options.role, token, n, options.workers, prefix=f"n{n}")
    try:
        revision = admin.revision()
        if workers.wait_all(revision, timeout=60) is None:
            raise RuntimeError(f"{len(workers.missing(revision))} of {n} subscribers never synced")
        wait_until(
            lambda: len(admin.GetStatus(admin_pb2.GetStatusRequest()).subscribers) == n,
            timeout=30, what=f"the controlplane to list {n} subscribers",
        )  # fmt: skip
        for i in range(5):  # warm-up, not measured
            one_mutation(admin, workers, f"warm-{n}-{i}", ack_view=False)
            time.sleep(options.pause)
        rows: list[dict[str, float]] = []
        observed: list[dict[str, float]] = []
        timeouts = 0
        deadline = time.monotonic() + options.seconds
        attempts = 0
        while len(rows) < options.mutations and time.monotonic() < deadline:
            attempts += 1
            ack_view = bool(options.ack_every) and attempts % (options.ack_every + 1) == 0
            row = one_mutation(admin, workers, f"m-{n}-{attempts}", ack_view)
            time.sleep(options.pause)
            if row is None:
                timeouts += 1
                if timeouts >= 3:
                    break
                continue
            (observed if ack_view else rows).append(row)
        final = admin.WaitForRevision(
            admin_pb2.WaitForRevisionRequest(revision=admin.revision(), timeout_seconds=10)
        )
    finally:
        workers.stop()
    return {
        "subscribers": n, "rows": rows, "observed": observed, "timeouts": timeouts,
        "lagging_at_end": len(final.laggards), "capped": len(rows) < options.mutations,
    }  # fmt: skip


def one_mutation(
    admin: AdminClient, workers: SubscriberWorkers, label: str, ack_view: bool
) -> dict[str, float] | None:
    called = time.monotonic()
    request = admin_pb2.UpdateProviderRequest(ref="bench", display_name=label)
    response = admin.UpdateProvider(request)
    returned = time.monotonic()
    acked = None
    if ack_view:
        done = admin.WaitForRevision(
            admin_pb2.WaitForRevisionRequest(revision=response.revision, timeout_seconds=10)
        ).done
        acked = time.monotonic() if done else None
    times = workers.wait_all(response.revision, timeout=10)
    if times is None:
        return None
    last, first = max(times.values()), min(times.values())
    each = sorted(times.values())
    return {
        "call_ms": (returned - called) * 1000,
        "from_return_ms": (last - returned) * 1000,
        "from_call_ms": (last - called) * 1000,
        "first_from_return_ms": (first - returned) * 1000,
        "median_subscriber_from_return_ms": (each[len(each) // 2] - returned) * 1000,
        "ack_view_ms": (acked - returned) * 1000 if acked is not None else NAN,
    }


NAN = float("nan")


def summary(values: list[float]) -> dict[str, float]:
    values = [v for v in values if v == v]  # NaN: WaitForRevision timed out
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 0.5), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
        "n": len(values),
    }


METRICS = {
    "measured": [
        ("from_return_ms", "call returned (commit no later) -> all applied: lower bound"),
        ("from_call_ms", "call made (commit no earlier) -> all applied: upper bound"),
        ("first_from_return_ms", "call returned -> first subscriber applied"),
        ("median_subscriber_from_return_ms", "call returned -> median subscriber applied"),
        ("call_ms", "the admin UpdateProvider call"),
    ],
    "observed": [
        ("from_return_ms", "as above, with WaitForRevision running alongside"),
        ("ack_view_ms", "call returned -> WaitForRevision done (every Ack in)"),
    ],
}


def report(results: list[dict], options: argparse.Namespace) -> None:
    table_rows = []
    for result in results:
        n = result["subscribers"]
        for kind, metrics in METRICS.items():
            for metric, meaning in metrics:
                s = summary([r[metric] for r in result["rows" if kind == "measured" else kind]])
                if not s:
                    continue
                samples = s.pop("n")
                emit("propagation", subscribers=n, mutations=kind, metric=metric,
                     meaning=meaning, unit="ms", samples=samples, timeouts=result["timeouts"],
                     capped=result["capped"], pause_s=options.pause, role=options.role,
                     database="postgresql" if options.postgres else "sqlite",
                     **s)  # fmt: skip
                table_rows.append([n, kind, metric, samples, s["p50"], s["p99"], s["max"]])
        rows = result["rows"]
        if n == 100 and rows:
            p99_low = summary([r["from_return_ms"] for r in rows])["p99"]
            p99_high = summary([r["from_call_ms"] for r in rows])["p99"]
            emit("propagation", subscribers=n, target="p99 <= 50 ms with 100 subscribers",
                 p99_ms_lower_bound=p99_low, p99_ms_upper_bound=p99_high,
                 met=p99_high <= TARGET_P99_MS,
                 met_on_lower_bound=p99_low <= TARGET_P99_MS)  # fmt: skip
    table(
        "propagation (ms; one mutation at a time; subscribers in worker processes)",
        ["subscribers", "mutations", "metric", "samples", "p50", "p99", "max"],
        table_rows,
    )
    for result in results:
        if result["timeouts"] or result["lagging_at_end"] or result["capped"]:
            print(f"note: {result['subscribers']} subscribers: {result['timeouts']} mutations "
                  f"timed out, {result['lagging_at_end']} lagging at the end, "
                  f"capped by time: {result['capped']}")  # fmt: skip
    for result in results:
        if result["subscribers"] == 100 and result["rows"]:
            low = summary([r["from_return_ms"] for r in result["rows"]])["p99"]
            high = summary([r["from_call_ms"] for r in result["rows"]])["p99"]
            verdict = (
                "met"
                if high <= TARGET_P99_MS
                else ("MISSED" if low > TARGET_P99_MS else "met on the lower bound only")
            )
            print(f"target p99 <= {TARGET_P99_MS:.0f} ms with 100 subscribers: {verdict} "
                  f"(p99 between {low:.1f} ms from the call's return and {high:.1f} ms from "
                  f"the call)")  # fmt: skip


if __name__ == "__main__":
    main()
