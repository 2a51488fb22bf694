"""Scale: snapshots of 100, 1,000 and 10,000 providers (one key each), step by step.

For each size, against a SQLite database filled directly through the store's models:
  build   controlplane.snapshots.SnapshotBuilder.build, fresh: both role cuts, every
          key decrypted, every provider encoded; each cut's size
  rebuild the same after one row changed (what a mutation costs): the changed row
          read and encoded again, every live provider's id and token compared
  decode  ProviderSnapshot.FromString (what the subscriber's gRPC stub does on receipt)
  apply   bridged.reload.LiveRouteTable.apply (a fresh route table + swap), and a reload
          (one row of n changed: the others' routes are reused), and
          proxyd.reload.LiveHostRouter.apply (build_host_router + swap), in this process
  send    a real controlplane on that database and one real subscriber per role in a
          worker process (bench/subscribers.py): from the mutation call's return to the
          subscriber's apply function (build + encode + transfer + decode), with the
          controlplane's own build time from its metrics beside it
Then, at the largest size, a paced load through a real bridged while it swaps that
snapshot a few times: request latency with no swap vs. during the swaps, and how long
each swap took to reach bridged (WaitForRevision, i.e. bridged's Ack).

Target (the issue): 10,000 providers applied in <= 100 ms without a request stalling
longer than that. One JSON line per result, then tables.
python -m bench.scale [--quick] [--sizes 100,1000,10000] [--rounds 5] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import itertools
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import insert, update

from aibridge.v1 import admin_pb2, snapshot_pb2
from bench.common import (
    emit,
    machine_load,
    metric_families,
    metric_value,
    percentile,
    start_module,
    table,
    upstream_args,
)
from bench.soak import gc_metrics, gc_summary
from bench.subscribers import SubscriberWorkers
from bridged.keys import KeyHealth
from bridged.reload import LiveRouteTable
from bridged.upstreams import UpstreamPools
from controlplane.auth import Role
from controlplane.snapshots import SnapshotBuilder
from controlplane.store.db import Database
from controlplane.store.keyring import KeyRing
from controlplane.store.models import Provider, ProviderKey, utcnow
from controlplane.store.tokens import Tokens
from proxyd.reload import LiveHostRouter
from tests.harness import Bridged, Controlplane, Secrets, free_port, wait_until

TARGET_MS = 100.0
TOKENS = 10
BODY = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter load")
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--rounds", type=int, default=7, help="repetitions of each step")
    parser.add_argument("--seconds", type=float, default=60.0, help="cap per step and size")
    parser.add_argument("--rate", type=float, default=200.0, help="load: requests per second")
    parser.add_argument("--concurrency", type=int, default=8, help="load: requests at once")
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    parser.add_argument("--swaps", type=int, default=10, help="mutations during the load")
    parser.add_argument("--swap-gap", type=float, default=1.5, help="seconds between swaps")
    options = parser.parse_args()
    if options.quick:
        options.rounds = min(options.rounds, 2)
        options.baseline_seconds = min(options.baseline_seconds, 4.0)
        options.swaps = min(options.swaps, 3)
        options.seconds = min(options.seconds, 30.0)
    sizes = [int(n) for n in options.sizes.split(",")]

    # The data planes' apply functions log (skipped rows, say): formatted, then dropped,
    # as a process writing its log would at least format them.
    logging.basicConfig(
        stream=open(os.devnull, "w"), level=logging.INFO,  # noqa: SIM115
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )  # fmt: skip
    emit("scale", kind="machine", when="start", **machine_load())
    work = Path(tempfile.mkdtemp(prefix="aibridge-bench-scale-"))
    secrets = Secrets()
    keyring = KeyRing([secrets.encryption_key])
    steps: list[dict[str, Any]] = []
    sends: list[dict[str, Any]] = []
    swap_result: dict[str, Any] | None = None
    for n in sizes:
        path = work / f"scale-{n}.db"
        started = time.perf_counter()
        fill(path, n, keyring)
        print(f"# filled {n} providers in {time.perf_counter() - started:.1f}s", flush=True)
        steps += in_process(path, n, keyring, options)
        cp = Controlplane(f"sqlite:///{path}", work / f"cp-{n}", secrets)
        cp.workdir.mkdir()
        cp.start()
        try:
            sends.append(send_times(cp, secrets, n, options))
            if n == max(sizes):
                swap_result = swaps_under_load(cp, secrets, n, work, options)
        finally:
            cp.stop()
    report(steps, sends, swap_result)
    load = machine_load()
    emit("scale", kind="machine", when="end", **load)
    print(f"machine: {load['cpus']} CPUs, load average {load['loadavg']} at the end")


# Filling the database -----------------------------------------------------------------


def fill(path: Path, n: int, keyring: KeyRing) -> None:
    """n providers with one key each, in one transaction (one revision), plus tokens."""
    db = Database(f"sqlite:///{path}")
    db.migrate()
    now = utcnow()
    providers, keys = [], []
    for i in range(n):
        anthropic = i % 4 == 3
        providers.append({
            "id": f"prv_{i:016x}", "name": f"p{i:05d}",
            "type": "anthropic" if anthropic else "openai",
            "display_name": f"Provider {i}", "enabled": True,
            "base_url": f"https://p{i:05d}.bench.test" + ("" if anthropic else "/v1"),
            "created_at": now, "updated_at": now, "deleted_at": None,
        })  # fmt: skip
        secret = f"sk-bench-{i:08d}-{'x' * 32}"
        keys.append({
            "id": f"key_{i:016x}", "provider_id": f"prv_{i:016x}", "position": 1,
            "ciphertext": keyring.encrypt(secret), "hint": f"sk-…{secret[-4:]}",
            "created_at": now,
        })  # fmt: skip
    with db.mutation() as m:
        m.session.execute(insert(Provider), providers)
        m.session.execute(insert(ProviderKey), keys)
    tokens = Tokens(db)
    for i in range(TOKENS):
        tokens.create("bench", f"token-{i}")
    db.dispose()


# In-process steps ---------------------------------------------------------------------


def timed(fn: Callable[[], Any], rounds: int, cap: float) -> tuple[list[float], Any]:
    """Milliseconds per call, `rounds` calls or until `cap` seconds (at least one)."""
    times, result = [], None
    deadline = time.monotonic() + cap
    for _ in range(rounds):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
        if time.monotonic() > deadline:
            break
    return times, result


def in_process(path: Path, n: int, keyring: KeyRing, options: argparse.Namespace) -> list[dict]:
    db = Database(f"sqlite:///{path}")
    rounds, cap = options.rounds, options.seconds
    out = []
    # As the data planes do at start (common.runtime): what exists now is
    # not walked by every full collection while the steps are timed.
    gc.collect()
    gc.freeze()

    def step(name: str, role: str, times: list[float], **extra: Any) -> None:
        out.append({"providers": n, "step": name, "role": role, "ms": times, **extra})

    build_ms, snapshot = timed(lambda: SnapshotBuilder(db, keyring, "bench").build(), rounds, cap)
    step("build", "both", build_ms)
    # A rebuild after one row changed, stamped as Providers.update stamps it (the change
    # itself is not timed): only that provider is read and encoded again.
    builder = SnapshotBuilder(db, keyring, "bench")
    builder.build()
    rebuild_ms: list[float] = []
    deadline = time.monotonic() + cap
    for i in range(rounds):
        with db.mutation() as m:
            changed = update(Provider).where(Provider.name == "p00000")
            m.session.execute(
                changed.values(
                    display_name=f"rebuild {i}", changed_revision=m.revision, changed_by=m.token
                )
            )
        started = time.perf_counter()
        builder.build()
        rebuild_ms.append((time.perf_counter() - started) * 1000)
        if time.monotonic() > deadline:
            break
    step("rebuild", "both", rebuild_ms)
    db.dispose()
    loop = asyncio.new_event_loop()  # the pools want a loop around, as in bridged
    asyncio.set_event_loop(loop)
    for role in (Role.BRIDGED, Role.PROXYD):
        data = snapshot.encoded[role]  # encoded by the build, once for every subscriber
        decode = functools.partial(snapshot_pb2.ProviderSnapshot.FromString, data)
        decode_ms, decoded = timed(decode, rounds, cap)
        step("decode", role.value, decode_ms, bytes=len(data))
        assert len(decoded.providers) == n
        # Every provider on a host of its own (as many Azure or self-hosted deployments
        # are), and the same snapshot with every base_url on one host: yarl caches the
        # IDNA decoding of only the last 256 hosts it saw.
        shared = snapshot_pb2.ProviderSnapshot()
        shared.CopyFrom(decoded)
        for p in shared.providers:
            suffix = "" if p.type == "anthropic" else "/v1"
            p.base_url = f"https://api.bench.test/{p.name}{suffix}"
        # (proxyd routes one provider per host: on a shared host it skips all the others.)
        variants = [("distinct", decoded)] + ([("shared", shared)] if role is Role.BRIDGED else [])
        for hosts, snap in variants:
            if role is Role.BRIDGED:
                # Made once: a new pool set loads the system's CA bundle (about 20 ms),
                # which is start-up work, not the apply's.
                pools = UpstreamPools(10, 300)

                def fresh(
                    snap: snapshot_pb2.ProviderSnapshot = snap, pools: UpstreamPools = pools
                ) -> Any:
                    return LiveRouteTable(pools, KeyHealth(30)).apply(snap)

                apply_ms, result = timed(fresh, rounds, cap)
                step("apply", "bridged", apply_ms, hosts=hosts)
                # What a reload costs: every row compared, the changed one rebuilt (the
                # two snapshots alternate, so each apply sees one row change).
                state = LiveRouteTable(UpstreamPools(10, 300), KeyHealth(30))
                state.apply(snap)
                edited = snapshot_pb2.ProviderSnapshot()
                edited.CopyFrom(snap)
                edited.providers[0].display_name += " (changed)"
                turns = itertools.cycle([edited, snap])

                def reload(
                    state: LiveRouteTable = state,
                    turns: Iterator[snapshot_pb2.ProviderSnapshot] = turns,
                ) -> Any:
                    return state.apply(next(turns))

                apply_ms, result = timed(reload, rounds, cap)
                assert state.table is not None and len(state.table.routes) == n, result
                step("reload", "bridged", apply_ms, hosts=hosts)
            else:
                router = LiveHostRouter()
                apply_ms, result = timed(functools.partial(router.apply, snap), rounds, cap)
                routed = len(router.router.hosts) if router.router else 0
                assert routed == n, result.skipped[:3]
                step("apply", "proxyd", apply_ms, hosts=hosts)
    loop.close()
    asyncio.set_event_loop(None)
    return out


# Send: through a real controlplane to real subscribers ---------------------------------


def cp_build_seconds(cp: Controlplane) -> tuple[float, float]:
    """(sum, count) of aibridge_controlplane_snapshot_build_seconds."""
    total = count = 0.0
    for family in metric_families(f"http://127.0.0.1:{cp.metrics_port}/metrics"):
        if family.name == "aibridge_controlplane_snapshot_build_seconds":
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    total = sample.value
                elif sample.name.endswith("_count"):
                    count = sample.value
    return total, count


def send_times(cp: Controlplane, secrets: Secrets, n: int, options: argparse.Namespace) -> dict:
    admin = cp.admin
    workers = {
        "bridged": SubscriberWorkers(cp.address, "bridged", secrets.bridged, 1, 1, f"b{n}"),
        "proxyd": SubscriberWorkers(cp.address, "proxyd", secrets.proxyd, 1, 1, f"p{n}"),
    }
    rows: list[dict[str, float]] = []
    try:
        revision = admin.revision()
        for w in workers.values():
            if w.wait_all(revision, timeout=120) is None:
                raise RuntimeError(f"the {n}-provider snapshot never arrived")
        deadline = time.monotonic() + options.seconds
        for i in range(options.rounds + 1):  # the first is a warm-up
            before = cp_build_seconds(cp)
            called = time.monotonic()
            response = admin.UpdateProvider(
                admin_pb2.UpdateProviderRequest(ref="p00000", display_name=f"send {i}")
            )
            returned = time.monotonic()
            got = {role: w.wait_all(response.revision, timeout=60) for role, w in workers.items()}
            if any(g is None for g in got.values()):
                raise RuntimeError(f"{n} providers: revision {response.revision} never arrived")
            after = cp_build_seconds(cp)
            builds = after[1] - before[1]
            row = {
                "call_ms": (returned - called) * 1000,
                "cp_build_ms": (after[0] - before[0]) * 1000 / builds if builds else float("nan"),
            }
            for role, times in got.items():
                assert times is not None  # checked above
                row[f"{role}_ms"] = (next(iter(times.values())) - returned) * 1000
            if i:
                rows.append(row)
            if time.monotonic() > deadline:
                break
    finally:
        for w in workers.values():
            w.stop()
    return {"providers": n, "rows": rows}


# Swaps under load ---------------------------------------------------------------------


async def paced_load(
    url: str, headers: dict[str, str], rate: float, concurrency: int, stop: threading.Event,
    cap: float, max_requests: int,
) -> list[tuple[float, float, int]]:  # fmt: skip
    """`rate` requests a second from `concurrency` workers until `stop`, `cap` seconds or
    `max_requests`. Returns (start monotonic, latency s, status) per request. A worker
    that falls behind its schedule sends at once, so a stall shows up as latency."""
    out: list[tuple[float, float, int]] = []
    interval = concurrency / rate
    deadline = time.monotonic() + cap
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker(offset: float) -> None:
            due = time.monotonic() + offset
            while not stop.is_set() and time.monotonic() < deadline and len(out) < max_requests:
                pause = due - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                due += interval
                started = time.monotonic()
                try:
                    async with session.post(url, json=BODY, headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                out.append((started, time.monotonic() - started, status))

        await asyncio.gather(*(worker(i * interval / concurrency) for i in range(concurrency)))
    return out


def swaps_under_load(
    cp: Controlplane, secrets: Secrets, n: int, work: Path, options: argparse.Namespace
) -> dict[str, Any]:
    admin = cp.admin
    upstream_port = free_port()
    upstream = start_module(*upstream_args(upstream_port))
    bridged = Bridged([cp.address], work, secrets).start()
    applied_in = f"{bridged.url}/metrics", "aibridge_bridged_snapshot_apply_seconds"
    first_apply = metric_value(*applied_in)  # all n providers, fresh, in the real process
    try:
        admin.create_provider(
            "bench", f"http://127.0.0.1:{upstream_port}/v1", keys=["sk-bench-key-0000000000"]
        )
        token = admin.CreateToken(admin_pb2.CreateTokenRequest(name="bench-load"))
        admin.wait_applied(token.revision, timeout=120)
        url = f"{bridged.provider_url('bench')}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {token.token}"}

        def up() -> bool:
            import httpx

            try:
                return httpx.post(url, json=BODY, headers=headers, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30, what="bridged to answer through to the upstream")

        stop = threading.Event()
        swaps: list[dict[str, float]] = []
        marks: dict[str, float] = {}

        def mutate() -> None:
            time.sleep(options.baseline_seconds)
            marks["swaps_from"] = time.monotonic()
            for i in range(options.swaps):
                called = time.monotonic()
                response = admin.UpdateProvider(
                    admin_pb2.UpdateProviderRequest(ref="p00001", display_name=f"swap {i}")
                )
                returned = time.monotonic()
                done = admin.WaitForRevision(
                    admin_pb2.WaitForRevisionRequest(revision=response.revision, timeout_seconds=60)
                ).done
                acked = time.monotonic()
                apply_ms = 1000 * (metric_value(*applied_in) or 0)
                swaps.append({"called": called, "returned": returned, "acked": acked,
                              "done": float(done), "apply_ms": apply_ms})  # fmt: skip
                time.sleep(options.swap_gap)
            marks["swaps_to"] = time.monotonic()
            stop.set()

        gc_before = gc_metrics(bridged)
        mutator = threading.Thread(target=mutate, daemon=True)
        mutator.start()
        cap = options.baseline_seconds + options.swaps * (options.swap_gap + 30) + 30
        max_requests = int(options.rate * cap) + 1
        results = asyncio.run(
            paced_load(url, headers, options.rate, options.concurrency, stop, cap, max_requests)
        )
        stop.set()
        mutator.join(120)
        gc = gc_summary(gc_before, gc_metrics(bridged))
    finally:
        bridged.stop()
        upstream.terminate()
        upstream.wait(10)
    warm = 2.0  # the first seconds of the load warm connections up: not counted
    first = results[0][0] if results else 0.0
    baseline = [r for r in results if first + warm <= r[0] < marks.get("swaps_from", 0)]
    during = [r for r in results if marks.get("swaps_from", 1e18) <= r[0]]

    def overlaps(r: tuple[float, float, int]) -> bool:
        return any(r[0] < s["acked"] and r[0] + r[1] > s["called"] for s in swaps)

    in_swap = [r for r in during if overlaps(r)]
    return {
        "providers": n,
        "rate": options.rate,
        "concurrency": options.concurrency,
        "swaps": swaps,
        "baseline": [r[1] * 1000 for r in baseline],
        "during": [r[1] * 1000 for r in during],
        "in_swap": [r[1] * 1000 for r in in_swap],
        "errors": sum(1 for r in results if r[2] != 200),
        "requests": len(results),
        "gc": gc,
        "first_apply_ms": 1000 * (first_apply or 0),
    }


# Report -------------------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, float]:
    values = [v for v in values if v == v]
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 3),
        "p99": round(percentile(values, 0.99), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def report(steps: list[dict], sends: list[dict], swap: dict[str, Any] | None) -> None:
    rows = []
    for s in steps:
        st = stats(s["ms"])
        extra = {k: s[k] for k in ("bytes", "hosts") if k in s}
        emit("scale", providers=s["providers"], step=s["step"], role=s["role"], unit="ms",
             rounds=st["n"], median=st["median"], min=st["min"], max=st["max"],
             **extra)  # fmt: skip
        part = s["role"] + (f" ({s['hosts']} hosts)" if "hosts" in s else "")
        rows.append([s["providers"], s["step"], part, st["median"], st["min"], st["max"],
                     s.get("bytes", "")])  # fmt: skip
    for send in sends:
        for metric in ("cp_build_ms", "bridged_ms", "proxyd_ms", "call_ms"):
            st = stats([r[metric] for r in send["rows"]])
            if not st["n"]:
                continue
            meaning = {
                "cp_build_ms": "controlplane build (its metrics)",
                "bridged_ms": "mutation returned -> bridged-role subscriber got it",
                "proxyd_ms": "mutation returned -> proxyd-role subscriber got it",
                "call_ms": "admin UpdateProvider call",
            }[metric]
            emit("scale", providers=send["providers"], step="send", metric=metric,
                 meaning=meaning, unit="ms", rounds=st["n"], median=st["median"],
                 min=st["min"], max=st["max"])  # fmt: skip
            rows.append([send["providers"], "send", metric.removesuffix("_ms"), st["median"],
                         st["min"], st["max"], ""])  # fmt: skip
    table(
        "snapshot steps (ms; median, min, max over rounds)",
        ["providers", "step", "role/part", "median", "min", "max", "bytes"],
        rows,
    )
    if swap is None:
        return
    n = swap["providers"]
    propagation = [(s["acked"] - s["returned"]) * 1000 for s in swap["swaps"] if s["done"]]
    propagation_call = [(s["acked"] - s["called"]) * 1000 for s in swap["swaps"] if s["done"]]
    load_rows = []
    for phase in ("baseline", "during", "in_swap"):
        st = stats(swap[phase])
        emit("scale", providers=n, step="load", phase=phase, unit="ms", rate=swap["rate"],
             concurrency=swap["concurrency"], requests=st["n"], p50=st.get("median"),
             p99=st.get("p99"), max=st.get("max"))  # fmt: skip
        load_rows.append([phase, st["n"], st.get("median", ""), st.get("p99", ""),
                          st.get("max", "")])  # fmt: skip
    reloads = stats([s["apply_ms"] for s in swap["swaps"] if s["done"]])
    emit("scale", providers=n, step="apply_in_bridged", first_ms=swap["first_apply_ms"],
         reload_median_ms=reloads.get("median"), reload_max_ms=reloads.get("max"))  # fmt: skip
    print(f"bridged's own apply time (its metric): {n:,} providers at start "
          f"{swap['first_apply_ms']:.1f} ms; a reload median {reloads.get('median')} ms, "
          f"max {reloads.get('max')} ms")  # fmt: skip
    st = stats(propagation)
    st_call = stats(propagation_call)
    emit("scale", providers=n, step="swap", metric="returned_to_bridged_ack_ms",
         swaps=len(swap["swaps"]), done=st["n"], median=st.get("median"), max=st.get("max"),
         from_call_median=st_call.get("median"), from_call_max=st_call.get("max"),
         errors=swap["errors"], requests=swap["requests"])  # fmt: skip
    table(
        f"request latency through bridged while it swaps {n:,} providers "
        f"(ms; {swap['rate']:.0f} req/s, {swap['concurrency']} at once)",
        ["phase", "requests", "p50", "p99", "max"],
        load_rows,
    )
    print("phases: baseline = no swap; during = from the first swap on; "
          "in_swap = requests in flight between a mutation call and bridged's Ack")  # fmt: skip
    print(f"swap reached bridged (mutation returned -> WaitForRevision done): median "
          f"{st.get('median')} ms, max {st.get('max')} ms over {st['n']} swaps; "
          f"{swap['errors']} of {swap['requests']} requests failed")  # fmt: skip
    applies = [s for s in steps if s["providers"] == n and s["step"] in ("apply", "reload")]
    for s in applies:
        median = statistics.median(s["ms"])
        verdict = "met" if median <= TARGET_MS else "MISSED"
        print(f"target {n:,} providers applied in <= {TARGET_MS:.0f} ms ({s['role']} {s['step']}, "
              f"{s['hosts']} hosts, in process): {verdict} (median {median:.1f} ms)")  # fmt: skip
    for what, ms in [("at start", swap["first_apply_ms"]), ("reload, worst", reloads.get("max"))]:
        verdict = "met" if ms is not None and ms <= TARGET_MS else "MISSED"
        print(f"target {n:,} providers applied in <= {TARGET_MS:.0f} ms (in bridged, {what}): "
              f"{verdict} ({ms:.1f} ms)")  # fmt: skip
    worst = max(swap["in_swap"], default=0.0)
    verdict = "met" if worst <= TARGET_MS else "MISSED"
    print(
        f"target no request stalls longer than {TARGET_MS:.0f} ms during a swap: {verdict} "
        f"(worst {worst:.1f} ms; baseline worst {max(swap['baseline'], default=0):.1f} ms)"
    )
    gc = swap["gc"]
    emit("scale", providers=n, step="gc", process="bridged", **gc)
    if gc["exposed"]:
        print(f"GC pauses in bridged over the load with swaps: {gc['pauses']}, over 10 ms: "
              f"{gc['over_10ms']}, over 50 ms: {gc['over_50ms']}, longest since start "
              f"{gc['max_ms_since_start']} ms; collections "
              f"{gc['python_collections_during_load']}")  # fmt: skip
    else:
        print("GC pauses in bridged: not exposed")
    end_to_end = st.get("max", float("inf"))
    verdict = "met" if end_to_end <= TARGET_MS else "MISSED"
    print(
        f"end to end, mutation -> bridged applied and acked {n:,} providers <= "
        f"{TARGET_MS:.0f} ms: {verdict} (max {end_to_end} ms)"
    )


if __name__ == "__main__":
    main()
