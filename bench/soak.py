"""Soak: memory and file descriptors of bridged and proxyd over many requests and reloads.

A real controlplane, bridged, proxyd and two upstream processes (the mock upstream).
Requests (100,000; --quick 5,000) go half straight to bridged, half through proxyd
(CONNECT, TLS to proxyd's leaf, HTTP/1.1 inside), one in ten streamed; every client
session is replaced every --recycle requests, so connections are opened and closed
throughout. 1,000 reloads (--quick 50), one every requests/reloads requests, cycle
through the kinds of change: display name, a provider created / re-pointed / deleted,
a key added / removed, a token created / revoked, and a provider whose base_url flips
between the two upstreams (bridged retires and opens a connection pool each time; some
direct requests use it).

RSS (/proc/PID/status VmRSS) and open descriptors (/proc/PID/fd) are sampled every
requests/50 requests; the slope is a least-squares fit over the second half of the
samples (after warm-up), in bytes and descriptors per 1,000 requests, beside the first
half's, so a leveling-off is visible.

GC pauses: the issue wants no pause over 10 ms under load. They are read from bridged's
/metrics, `aibridge_bridged_gc_pause_seconds` (histogram) and
`aibridge_bridged_gc_pause_max_seconds` (gauge), before and after the load; "not exposed"
while bridged does not have them. proxyd's (aibridge_proxyd_…) are read the same way.
python -m bench.soak [--quick] [--requests 100000] [--reloads 1000] [--seconds 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from aibridge.v1 import admin_pb2
from bench.common import emit, machine_load, metric_families, start_module, table, upstream_args
from tests.harness import AdminClient, Bridged, Controlplane, Proxyd, Secrets, free_port

BODY = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
STREAM_BODY = BODY | {"stream": True, "stream_options": {"include_usage": True}}
GC_TARGET_S = 0.010
SAMPLES = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 requests, 50 reloads")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--reloads", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=1500.0, help="cap on the whole load")
    parser.add_argument("--concurrency", type=int, default=4, help="per side (direct, proxied)")
    parser.add_argument("--recycle", type=int, default=200, help="requests per client session")
    options = parser.parse_args()
    if options.quick:
        options.requests = min(options.requests, 5_000)
        options.reloads = min(options.reloads, 50)
        options.seconds = min(options.seconds, 300.0)

    emit("soak", kind="machine", when="start", **machine_load())
    work = Path(tempfile.mkdtemp(prefix="aibridge-bench-soak-"))
    ports = [free_port(), free_port()]
    upstreams = [start_module(*upstream_args(p)) for p in ports]
    secrets = Secrets()
    cp = Controlplane(f"sqlite:///{work / 'soak.db'}", work, secrets).start()
    bridged = proxyd = None
    try:
        bridged = Bridged([cp.address], work, secrets).start()
        proxyd = Proxyd([cp.address], bridged.url, work, secrets).start()
        admin = cp.admin
        admin.create_provider("bench", f"http://127.0.0.1:{ports[0]}/v1", keys=["sk-bench-0" * 3])
        admin.create_provider("flip", f"http://127.0.0.1:{ports[1]}/v1", keys=["sk-flip-00" * 3])
        token = admin.CreateToken(admin_pb2.CreateTokenRequest(name="soak"))
        admin.wait_applied(token.revision)
        soak = Soak(options, cp, bridged, proxyd, ports, token.token)
        gc_before = {p.name: gc_metrics(p) for p in (bridged, proxyd)}
        asyncio.run(soak.run())
        gc_after = {p.name: gc_metrics(p) for p in (bridged, proxyd)}
        revision = admin.revision()
        soak.caught_up = admin.WaitForRevision(
            admin_pb2.WaitForRevisionRequest(revision=revision, timeout_seconds=30)
        ).done
        soak.final_revision = revision
    finally:
        for process in (proxyd, bridged):
            if process is not None:
                process.stop()
        cp.stop()
        for upstream in upstreams:
            upstream.terminate()
            upstream.wait(10)
    report(soak, gc_before, gc_after, options)
    load = machine_load()
    emit("soak", kind="machine", when="end", **load)
    print(f"machine: {load['cpus']} CPUs, load average {load['loadavg']} at the end")


# Process statistics -------------------------------------------------------------------


def proc_stats(pid: int) -> tuple[int, int]:
    """(RSS in bytes, open file descriptors) of a live process."""
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
                break
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two points)."""
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


# GC pauses ----------------------------------------------------------------------------


class MetricsPage(Protocol):
    """A process with a /metrics page: bridged, proxyd, bench/passthrough.py."""

    name: str

    @property
    def url(self) -> str: ...


def gc_metrics(process: MetricsPage) -> dict[str, Any]:
    """The process's GC pause histogram (buckets summed over any labels), max gauge, and
    Python's own collection counts."""
    histogram = f"aibridge_{process.name}_gc_pause_seconds"
    longest = f"aibridge_{process.name}_gc_pause_max_seconds"
    out: dict[str, Any] = {"exposed": False, "buckets": {}, "count": 0.0, "sum": 0.0,
                           "max": None, "collections": {}}  # fmt: skip
    for family in metric_families(process.url + "/metrics"):
        if family.name == histogram:
            out["exposed"] = True
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    out["buckets"][le] = out["buckets"].get(le, 0.0) + sample.value
                elif sample.name.endswith("_count"):
                    out["count"] += sample.value
                elif sample.name.endswith("_sum"):
                    out["sum"] += sample.value
        elif family.name == longest:
            out["max"] = max((s.value for s in family.samples), default=None)
        elif family.name == "python_gc_collections":
            for sample in family.samples:
                out["collections"][sample.labels.get("generation", "?")] = sample.value
    return out


def gc_summary(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    collections = {
        f"gen{g}": int(after["collections"].get(g, 0) - before["collections"].get(g, 0))
        for g in sorted(after["collections"])
    }
    if not after["exposed"]:
        return {"exposed": False, "python_collections_during_load": collections}
    count = after["count"] - before["count"]

    def over(threshold: float) -> float | None:
        les = [le for le in after["buckets"] if abs(le - threshold) < 1e-9]
        if not les:
            return None
        le = les[0]
        return count - (after["buckets"][le] - before["buckets"].get(le, 0.0))

    return {
        "exposed": True,
        "pauses": int(count),
        "mean_ms": round((after["sum"] - before["sum"]) / count * 1000, 3) if count else 0.0,
        "over_10ms": over(0.01),
        "over_50ms": over(0.05),
        "max_ms_since_start": round(after["max"] * 1000, 3) if after["max"] is not None else None,
        "python_collections_during_load": collections,
    }


# The load -----------------------------------------------------------------------------


class Soak:
    def __init__(
        self, options: argparse.Namespace, cp: Controlplane, bridged: Bridged, proxyd: Proxyd,
        ports: list[int], token: str,
    ) -> None:  # fmt: skip
        self.options = options
        self.cp = cp
        self.bridged = bridged
        self.proxyd = proxyd
        self.ports = ports
        self.token = token
        self.done = 0
        self.sent = {"direct": 0, "proxied": 0}
        self.reloads = 0
        self.reload_failures: list[str] = []
        self.errors: dict[str, int] = {"direct": 0, "proxied": 0}
        self.first_errors: list[str] = []
        self.by_side: dict[str, int] = {"direct": 0, "proxied": 0}
        self.samples: list[dict[str, Any]] = []
        self.started = 0.0
        self.elapsed = 0.0
        self.ended_by = ""
        self.caught_up = False  # bridged and proxyd applied the last revision at the end
        self.final_revision = 0
        self._progress = asyncio.Event()  # the sampler's
        self._reload_progress = asyncio.Event()  # the reloader's

    async def run(self) -> None:
        self.started = time.monotonic()
        self.sample()
        deadline = self.started + self.options.seconds
        per_side = self.options.concurrency
        workers = [self.worker("direct", i, deadline) for i in range(per_side)]
        workers += [self.worker("proxied", i, deadline) for i in range(per_side)]
        reloader = asyncio.create_task(self.reloader())
        sampler = asyncio.create_task(self.sampler())
        await asyncio.gather(*workers)
        self.elapsed = time.monotonic() - self.started
        self.ended_by = "requests" if self.done >= self.options.requests else "seconds"
        # A reload still running (or queued behind a slow one) may finish, briefly.
        await asyncio.wait([reloader], timeout=10)
        reloader.cancel()
        sampler.cancel()
        for task in (reloader, sampler):
            try:
                await task
            except asyncio.CancelledError:
                pass
        self.sample()

    def sample(self) -> None:
        row: dict[str, Any] = {"requests": self.done, "reloads": self.reloads,
                               "seconds": round(time.monotonic() - self.started, 1)}  # fmt: skip
        for name, process in (("bridged", self.bridged), ("proxyd", self.proxyd)):
            assert process.proc is not None
            row[f"{name}_rss"], row[f"{name}_fds"] = proc_stats(process.proc.pid)
        self.samples.append(row)

    async def sampler(self) -> None:
        every = max(1, self.options.requests // SAMPLES)
        next_at = every
        while True:
            await self._progress.wait()
            self._progress.clear()
            if self.done >= next_at:
                self.sample()
                next_at += every

    def _client(self, side: str) -> tuple[aiohttp.ClientSession, str, dict[str, Any]]:
        timeout = aiohttp.ClientTimeout(total=30)
        if side == "direct":
            session = aiohttp.ClientSession(timeout=timeout)
            return (
                session,
                self.bridged.provider_url("bench"),
                {"headers": {"Authorization": f"Bearer {self.token}"}},
            )
        trust = ssl.create_default_context(cafile=str(self.proxyd.ca_path))
        session = aiohttp.ClientSession(timeout=timeout)
        # The client believes it talks to the provider's own host; proxyd intercepts it.
        return session, f"https://127.0.0.1:{self.ports[0]}", {
            "proxy": self.proxyd.proxy_url(self.token), "ssl": trust,
            "headers": {"Authorization": "Bearer sk-client-side-ignored"},
        }  # fmt: skip

    async def worker(self, side: str, index: int, deadline: float) -> None:
        session, base, kwargs = self._client(side)
        flip_base = self.bridged.provider_url("flip")
        mine = 0
        try:
            total = self.options.requests
            budget = total // 2 + (total % 2 if side == "direct" else 0)
            while self.sent[side] < budget and time.monotonic() < deadline:
                self.sent[side] += 1
                mine += 1
                if mine % self.options.recycle == 0:
                    await session.close()
                    session, base, kwargs = self._client(side)
                stream = mine % 10 == 0
                url = base + "/v1/chat/completions"
                if side == "direct" and mine % 5 == 2:
                    url = flip_base + "/v1/chat/completions"  # the provider whose pool flips
                problem = await self._one(session, url, STREAM_BODY if stream else BODY, kwargs)
                self.done += 1
                self.by_side[side] += 1
                if problem:
                    self.errors[side] += 1
                    if len(self.first_errors) < 10:
                        self.first_errors.append(f"{side} #{self.done}: {problem}")
                self._progress.set()
                self._reload_progress.set()
        finally:
            await session.close()

    @staticmethod
    async def _one(
        session: aiohttp.ClientSession, url: str, body: dict[str, Any], kwargs: dict[str, Any]
    ) -> str:
        try:
            async with session.post(url, json=body, **kwargs) as response:
                data = await response.read()
                if response.status != 200:
                    return f"{response.status} {data[:200]!r}"
                if body.get("stream") and b"[DONE]" not in data:
                    return "stream without [DONE]"
                return ""
        except (aiohttp.ClientError, TimeoutError) as exc:
            return repr(exc)

    async def reloader(self) -> None:
        every = max(1, self.options.requests // max(1, self.options.reloads))
        changes = self._changes()
        while self.reloads < self.options.reloads:
            # Half-way between sample points: the last reload comes before the last request.
            while self.done < self.reloads * every + every // 2:
                self._reload_progress.clear()
                await self._reload_progress.wait()
            change = next(changes)
            try:
                await asyncio.to_thread(change, self.cp.admin)
            except Exception as exc:  # recorded; the soak goes on
                self.reload_failures.append(repr(exc)[:300])
            self.reloads += 1

    def _changes(self) -> Any:
        """An endless cycle of changes that leaves the state the same size after each lap."""
        other = f"http://127.0.0.1:{self.ports[0]}/v1"
        home = f"http://127.0.0.1:{self.ports[1]}/v1"
        added: dict[str, str] = {}

        def display(admin: AdminClient, lap: int) -> None:
            admin.UpdateProvider(
                admin_pb2.UpdateProviderRequest(ref="bench", display_name=f"lap {lap}")
            )

        def create(admin: AdminClient, lap: int) -> None:
            admin.create_provider(f"scratch-{lap}", f"https://scratch{lap}.soak.test/v1",
                                  keys=[f"sk-scratch-{lap:010d}"])  # fmt: skip

        def add_key(admin: AdminClient, lap: int) -> None:
            response = admin.UpdateProvider(
                admin_pb2.UpdateProviderRequest(ref="bench", add_keys=[f"sk-extra-{lap:012d}"])
            )
            added["key"] = response.provider.keys[-1].id

        def flip_away(admin: AdminClient, lap: int) -> None:
            admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref="flip", base_url=other))

        def repoint(admin: AdminClient, lap: int) -> None:
            admin.UpdateProvider(admin_pb2.UpdateProviderRequest(
                ref=f"scratch-{lap}", base_url=f"https://scratch{lap}b.soak.test/v1"))  # fmt: skip

        def token(admin: AdminClient, lap: int) -> None:
            admin.CreateToken(admin_pb2.CreateTokenRequest(name=f"tmp-{lap}"))

        def remove_key(admin: AdminClient, lap: int) -> None:
            admin.UpdateProvider(
                admin_pb2.UpdateProviderRequest(ref="bench", remove_key_ids=[added.pop("key")])
            )

        def flip_back(admin: AdminClient, lap: int) -> None:
            admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref="flip", base_url=home))

        def delete(admin: AdminClient, lap: int) -> None:
            admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref=f"scratch-{lap}"))

        def revoke(admin: AdminClient, lap: int) -> None:
            admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref=f"tmp-{lap}"))

        cycle: list[Callable[[AdminClient, int], None]] = [
            display, create, add_key, flip_away, repoint, token,
            remove_key, flip_back, delete, revoke,
        ]  # fmt: skip
        for lap in itertools.count():
            for change in cycle:
                yield lambda admin, change=change, lap=lap: change(admin, lap)


# Report -------------------------------------------------------------------------------


def report(
    soak: Soak, gc_before: dict[str, Any], gc_after: dict[str, Any], options: argparse.Namespace
) -> None:
    samples = soak.samples
    for s in samples:
        emit("soak", kind="sample", **s)
    rows = [
        [s["requests"], s["reloads"], s["seconds"], s["bridged_rss"] / 2**20, s["bridged_fds"],
         s["proxyd_rss"] / 2**20, s["proxyd_fds"]]
        for s in samples
    ]  # fmt: skip
    table(
        "samples (RSS in MiB)",
        ["requests", "reloads", "seconds", "bridged_rss", "bridged_fds", "proxyd_rss",
         "proxyd_fds"],
        rows,
    )  # fmt: skip
    half = len(samples) // 2
    halves = {"first_half": samples[: half + 1], "second_half": samples[half:]}
    slope_rows = []
    for process in ("bridged", "proxyd"):
        fields: dict[str, Any] = {}
        for name, part in halves.items():
            xs = [s["requests"] / 1000 for s in part]
            fields[f"{name}_rss_bytes_per_1000_requests"] = round(
                slope(xs, [s[f"{process}_rss"] for s in part])
            )
            fields[f"{name}_fds_per_1000_requests"] = round(
                slope(xs, [s[f"{process}_fds"] for s in part]), 4
            )
        first, last = samples[0], samples[-1]
        emit("soak", kind="slope", process=process, requests=last["requests"],
             reloads=last["reloads"], rss_start=first[f"{process}_rss"],
             rss_end=last[f"{process}_rss"], fds_start=first[f"{process}_fds"],
             fds_end=last[f"{process}_fds"], **fields)  # fmt: skip
        slope_rows.append([
            process,
            first[f"{process}_rss"] / 2**20, last[f"{process}_rss"] / 2**20,
            fields["first_half_rss_bytes_per_1000_requests"] / 1024,
            fields["second_half_rss_bytes_per_1000_requests"] / 1024,
            f"{first[f'{process}_fds']}->{last[f'{process}_fds']}",
            fields["first_half_fds_per_1000_requests"],
            fields["second_half_fds_per_1000_requests"],
        ])  # fmt: skip
    table(
        "slopes (least squares over each half of the samples; the second half is after warm-up)",
        ["process", "rss_start_MiB", "rss_end_MiB", "KiB/1k_req_1st", "KiB/1k_req_2nd",
         "fds", "fds/1k_req_1st", "fds/1k_req_2nd"],
        slope_rows,
    )  # fmt: skip
    rate = soak.done / soak.elapsed if soak.elapsed else 0.0
    emit("soak", kind="load", requests=soak.done, direct=soak.by_side["direct"],
         proxied=soak.by_side["proxied"], reloads=soak.reloads,
         reload_failures=len(soak.reload_failures), errors=soak.errors,
         seconds=round(soak.elapsed, 1), requests_per_second=round(rate, 1),
         ended_by=soak.ended_by, final_revision=soak.final_revision,
         data_planes_caught_up=soak.caught_up)  # fmt: skip
    print(f"\n{soak.done} requests ({soak.by_side['direct']} direct, {soak.by_side['proxied']} "
          f"through proxyd) and {soak.reloads} reloads in {soak.elapsed:.0f}s ({rate:.0f}/s), "
          f"ended by {soak.ended_by}; failed requests: {soak.errors}; "
          f"failed reloads: {len(soak.reload_failures)}; bridged and proxyd at the final "
          f"revision {soak.final_revision}: {soak.caught_up}")  # fmt: skip
    for line in soak.first_errors + soak.reload_failures[:5]:
        print(f"  {line}")
    for process in ("bridged", "proxyd"):
        gc = gc_summary(gc_before[process], gc_after[process])
        emit("soak", kind="gc", process=process, **gc)
        collections = gc["python_collections_during_load"]
        if not gc["exposed"]:
            print(
                f"GC pauses in {process}: not exposed (aibridge_{process}_gc_pause_seconds "
                f"is not in its /metrics); Python collections during the load: {collections}"
            )
            continue
        over = gc["over_10ms"]
        verdict = "met" if over == 0 else ("MISSED" if over else "unknown")
        target = f"; target no pause over 10 ms: {verdict}" if process == "bridged" else ""
        print(f"GC pauses in {process} during the load: {gc['pauses']}, mean {gc['mean_ms']} ms, "
              f"over 10 ms: {over if over is not None else 'n/a (no 0.01 bucket)'}, over 50 ms: "
              f"{gc['over_50ms']}; longest since start {gc['max_ms_since_start']} ms; "
              f"collections {collections}{target}")  # fmt: skip


if __name__ == "__main__":
    main()
