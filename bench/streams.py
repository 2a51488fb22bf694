"""Streams: thousands of concurrent streaming calls opened in a storm, through bridged and
through the bare aiohttp hop (bench/passthrough.py) in the same run.

For each size N (500, 1,000, 2,000) and side, a fresh hop process serves N streaming chat
calls (the mock upstream, in a process of its own: --chunks 60 chunks, --delay 0.5 s
apart), opened at --rate per second (1,000: 2,000 streams open over 2 s). Reported per
side and size:
  completed    streams that got every event and `[DONE]`, of N (and, for bridged, whether
               the usage it recorded is exactly N calls' worth)
  ttfb         time to the first event, p50/p99: every stream opens during the storm
  gap extra    how much later than --delay each event came after the one before, p50/p99/
               max, split into the ramp (while streams were still opening), steady state
               (after the last one opened) and closing (once the first one had ended:
               as many end a second as opened)
  rss/stream   (peak RSS with N open - RSS before the storm) / N
  cpu/chunk    the hop's CPU time over the steady window / events relayed in it
  cpu storm    the CPU each process used from the first stream opened to a second after
               the last, in % of one core: the hop's, the client's and the upstream's (on
               a machine of two cores shared by all three, any may be what a storm waits on)
  gc           pauses over 20 ms and the longest, from the process's own GC metric
  fds after    descriptors the hop still holds --linger (30) s after the last stream
               ended, beyond what it held before the storm (idle upstream connections),
               and how long it took to get back there
With --proxyd-size (1,000), the same through proxyd's MITM path (CONNECT, TLS to proxyd's
leaf, then bridged): proxyd's numbers, and bridged's behind it.

Targets (issue 17), at 2,000 streams and 1,000/s: no GC pause over 20 ms; bridged's TTFB
p50 within 2x the bare hop's; idle upstream connections gone within 30 s; RSS per stream
<= 40 KiB. Every loop is bounded in count and time; this process raises its own
descriptor limit. Connections the kernel dropped from a full listen queue in the run
(TcpExt ListenDrops, the whole machine's) are reported too: each one costs its stream
a second. One JSON line per result, then a table.
python -m bench.streams [--quick] [--sizes 500,1000,2000] [--rate 1000] [--chunks 60]
    [--delay 0.5] [--sides bridged,passthrough] [--proxyd-size 1000] [--linger 30]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import ssl
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
import yarl

from aibridge.v1 import admin_pb2
from bench.common import (
    emit,
    http_up,
    machine_load,
    percentile,
    start_module,
    table,
)
from bench.soak import gc_metrics, proc_stats
from common.runtime import raise_descriptor_limit
from mockupstream.server import OPENAI_USAGE
from tests.harness import Bridged, Controlplane, Proxyd, Secrets, free_port, wait_until

BODY = {
    "model": "gpt", "messages": [{"role": "user", "content": "hi"}],
    "stream": True, "stream_options": {"include_usage": True},
}  # fmt: skip
GC_TARGET_S = 0.020
SIDES = ("bridged", "passthrough", "direct")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000,2000", help="concurrent streams per run")
    parser.add_argument("--rate", type=float, default=1000.0, help="streams opened per second")
    parser.add_argument("--chunks", type=int, default=60, help="chunks in each stream")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds between chunks")
    parser.add_argument("--sides", default="bridged,passthrough", help=f"of {','.join(SIDES)}")
    parser.add_argument("--proxyd-size", type=int, default=1000, help="0: no proxyd run")
    parser.add_argument("--linger", type=float, default=30.0, help="seconds watched after")
    parser.add_argument("--quick", action="store_true", help="300 streams of 20 chunks")
    options = parser.parse_args()
    if options.quick:
        options.sizes, options.chunks, options.proxyd_size = "300", 20, 300
    sizes = [int(s) for s in options.sizes.split(",")]
    sides = [side for side in options.sides.split(",") if side]
    if unknown := set(sides) - set(SIDES):
        parser.error(f"--sides: unknown {sorted(unknown)}")
    raise_descriptor_limit()
    results: list[dict[str, Any]] = []
    with Stack(options) as stack:
        for n in sizes:
            for side in sides:
                results += stack.run(side, n)
        if options.proxyd_size:
            results += stack.run("proxyd", options.proxyd_size)
    report(results)


# The processes --------------------------------------------------------------------------


@dataclass
class Hop:
    """A process a run measures: its pid and, if it has one, where its /metrics page is."""

    name: str
    pid: int
    url: str = ""


class Stack:
    """The controlplane, the upstream, and a fresh hop for every run (so that RSS, GC
    and descriptors are that run's alone)."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.work = Path(tempfile.mkdtemp(prefix="aibridge-bench-streams-"))
        self.secrets = Secrets()
        self.upstream_port = free_port()

    def __enter__(self) -> Stack:
        self.upstream = start_module(
            "mockupstream", "--listen", f"127.0.0.1:{self.upstream_port}",
            "--chunks", str(self.options.chunks), "--chunk-delay", str(self.options.delay),
        )  # fmt: skip
        self.cp = Controlplane(f"sqlite:///{self.work / 'bench.db'}", self.work, self.secrets)
        self.cp.start()
        origin = f"http://127.0.0.1:{self.upstream_port}"
        self.cp.admin.create_provider("bench", f"{origin}/v1", keys=["sk-bench-key-0"])
        token = self.cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="bench"))
        self.token = token.token
        self.revision = token.revision
        wait_until(functools.partial(http_up, f"{origin}/v1/models"), what="upstream")
        return self

    def __exit__(self, *_: object) -> None:
        self.cp.stop()
        self.upstream.terminate()
        self.upstream.wait(10)

    def run(self, side: str, n: int) -> list[dict[str, Any]]:
        print(f"{side}: {n} streams at {self.options.rate:.0f}/s", flush=True)
        before = self.usage()
        with self.hops(side) as (target, hops):
            upstream = Hop("upstream", self.upstream.pid)
            result = uvloop.run(storm(target, hops, upstream, n, self.options))
        rows = []
        for hop, measured in result.hops.items():
            row = {"side": side, "n": n, "process": hop, **result.client, **measured}
            if hop == "bridged":  # the warm-up call is one more
                row["usage_exact"] = self.usage_exact(before, result.completed + 1)
            emit("streams", **row, **machine_load())
            rows.append(row)
        return rows

    @contextmanager
    def hops(self, side: str) -> Iterator[tuple[Target, list[Hop]]]:
        upstream = f"http://127.0.0.1:{self.upstream_port}/v1"
        chat = "/chat/completions"
        if side == "direct":
            hop = Hop("upstream", self.upstream.pid)
            yield Target(upstream + chat), [hop]
            return
        if side == "passthrough":
            port = free_port()
            process = start_module("bench.passthrough", str(port), upstream)
            url = f"http://127.0.0.1:{port}"
            wait_until(functools.partial(http_up, url), what="passthrough")
            try:
                yield (
                    Target(url + chat),
                    [Hop("passthrough", process.pid, url)],
                )
            finally:
                process.terminate()
                process.wait(10)
            return
        defaults = ("--usage-flush-interval", "1.0")  # production's, not the tests' 0.2
        bridged = Bridged([self.cp.address], self.work, self.secrets, extra_args=defaults)
        bridged.start()
        proxyd = None
        try:
            self.cp.admin.wait_applied(self.revision)
            assert bridged.proc is not None
            hop = Hop("bridged", bridged.proc.pid, bridged.url)
            auth = {"Authorization": f"Bearer {self.token}"}
            if side == "bridged":
                yield Target(f"{bridged.provider_url('bench')}/v1{chat}", auth), [hop]
                return
            proxyd = Proxyd([self.cp.address], bridged.url, self.work, self.secrets).start()
            self.cp.admin.wait_applied(self.revision)
            assert proxyd.proc is not None
            trust = ssl.create_default_context(cafile=str(proxyd.ca_path))
            # The client believes it talks to the provider's own host; proxyd intercepts it.
            front = Hop("proxyd", proxyd.proc.pid, proxyd.url)
            yield Target(
                f"https://127.0.0.1:{self.upstream_port}/v1{chat}",
                {"Authorization": "Bearer sk-client-side-ignored"},
                proxy=proxyd.proxy_url(self.token), tls=trust,
            ), [front, hop]  # fmt: skip
        finally:
            if proxyd is not None:
                proxyd.stop()
            bridged.stop()

    def usage_exact(self, before: tuple[int, int], calls: int) -> bool:
        """Whether bridged recorded exactly `calls` calls, each with the mock's output
        tokens (its usage batches reach the controlplane within seconds)."""
        expected = (before[0] + calls, before[1] + calls * OPENAI_USAGE["completion_tokens"])
        try:
            wait_until(lambda: self.usage() == expected, timeout=20, what="usage")
        except AssertionError:
            return False
        return True

    def usage(self) -> tuple[int, int]:
        rows = self.cp.admin.QueryUsage(admin_pb2.QueryUsageRequest(provider="bench")).rows
        return sum(r.requests for r in rows), sum(r.output_tokens for r in rows)


CLIENT = Hop("client", os.getpid())


# One storm ------------------------------------------------------------------------------


@dataclass
class Target:
    """Where the calls go: a URL, its headers, and through which proxy (trusting what)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    proxy: str = ""  # http://user:token@host:port
    tls: ssl.SSLContext | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        """The same call's arguments for aiohttp (the warm-up)."""
        return {"headers": self.headers, "proxy": self.proxy or None, "ssl": self.tls}

    @functools.cached_property
    def request(self) -> bytes:
        url = yarl.URL(self.url)
        body = json.dumps(BODY).encode()
        headers = {
            "Host": f"{url.host}:{url.port}", "Content-Type": "application/json",
            "Content-Length": str(len(body)), "Connection": "close", **self.headers,
        }  # fmt: skip
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return f"POST {url.raw_path_qs} HTTP/1.1\r\n{head}\r\n".encode() + body

    @functools.cached_property
    def connect(self) -> bytes:
        url, proxy = yarl.URL(self.url), yarl.URL(self.proxy)
        auth = base64.b64encode(f"{proxy.user}:{proxy.password}".encode()).decode()
        return (f"CONNECT {url.host}:{url.port} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
                f"Proxy-Authorization: Basic {auth}\r\n\r\n").encode()  # fmt: skip


@dataclass
class Stream:
    started: float
    status: int = 0
    events: list[float] = field(default_factory=list)  # arrival of each complete event
    done: bool = False
    error: str = ""


@dataclass
class Sample:
    at: float
    rss: int
    fds: int
    cpu: float


@dataclass
class Result:
    client: dict[str, Any]
    hops: dict[str, dict[str, Any]]
    completed: int


async def storm(
    target: Target, hops: list[Hop], upstream: Hop, n: int, options: argparse.Namespace
) -> Result:
    async with aiohttp.ClientSession() as session:
        # One call first, so that every process is past its first-request costs.
        warm = {k: v for k, v in BODY.items() if k not in ("stream", "stream_options")}
        async with session.post(target.url, json=warm, **target.kwargs) as response:
            if response.status != 200:
                raise SystemExit(f"the warm-up call failed: {response.status}")
            await response.read()
    gc_before = {hop.name: await gc_pauses(hop) for hop in hops}
    # The client and the upstream are watched too: on a machine of two cores, any of them
    # may be what a storm waits for.
    watched = {hop.name: hop for hop in [CLIENT, upstream, *hops]}
    samples: dict[str, list[Sample]] = {name: [] for name in watched}
    sampling = asyncio.create_task(sample_all(list(watched.values()), samples))
    await asyncio.sleep(0.3)  # samples from before the storm
    drops = listen_drops()
    streams, opened = await open_all(target, n, options)
    drops = listen_drops() - drops
    ended = time.perf_counter()
    # The pauses of the storm and the streams (a process may collect in full once idle).
    gc_after = {hop.name: await gc_pauses(hop) for hop in hops}
    # The descriptors each hop holds while nothing runs: idle upstream connections.
    await asyncio.sleep(max(0.0, ended + options.linger - time.perf_counter()))
    sampling.cancel()
    first_open = streams[0].started
    complete = [s for s in streams if s.done and len(s.events) >= options.chunks]
    errors: dict[str, int] = {}
    for s in streams:
        if not s.done:
            key = s.error or f"status {s.status}"
            errors[key] = errors.get(key, 0) + 1
    ttfb = [s.events[0] - s.started for s in streams if s.events]
    # Ramp: while streams were still opening; steady: all open; closing: once the first
    # stream had ended (as many end per second as opened).
    first_end = min((s.events[-1] for s in complete), default=float("inf"))
    gaps: dict[str, list[float]] = {"ramp": [], "steady": [], "closing": []}
    for s in streams:
        for before, after in zip(s.events, s.events[1:], strict=False):
            gap = after - before
            if gap < options.delay / 2:
                continue  # events the upstream wrote back to back (usage, [DONE])
            window = "ramp" if after <= opened else "steady" if after < first_end else "closing"
            gaps[window].append(gap - options.delay)
    arrivals = sorted(t for s in streams for t in s.events)
    client = {
        "rate": options.rate, "chunks": options.chunks, "delay_s": options.delay,
        "completed": len(complete), "errors": errors,
        "ramp_s": round(opened - first_open, 3), "listen_drops": drops,
        "ttfb_p50_ms": ms(percentile(ttfb, 0.5)), "ttfb_p99_ms": ms(percentile(ttfb, 0.99)),
        **{k: v for name, values in gaps.items() for k, v in gap_stats(name, values).items()},
    }  # fmt: skip
    # How busy each process was in the storm (the streams opening, and a second after):
    # near 100 % of a core, it was the bottleneck.
    storm = (first_open, opened + 1.0)
    client["client_cpu_storm_pct"] = busy_pct(samples[CLIENT.name], *storm)
    client["upstream_cpu_storm_pct"] = busy_pct(samples[upstream.name], *storm)
    measured = {
        hop.name: hop_stats(
            samples[hop.name], gc_before[hop.name], gc_after[hop.name], first_open, ended,
            (opened + 1.0, first_end - 0.5), arrivals, n,
        )
        for hop in hops
    }  # fmt: skip
    for hop in hops:
        measured[hop.name]["cpu_storm_pct"] = busy_pct(samples[hop.name], *storm)
    return Result(client, measured, len(complete))


async def open_all(
    target: Target, n: int, options: argparse.Namespace
) -> tuple[list[Stream], float]:
    """N streams, the i-th opened at i / rate seconds; returns them and when the last one
    opened, once all have ended (or the run's cap has passed)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    streams: list[Stream] = []
    tasks = []
    for i in range(n):
        delay = start + i / options.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        stream = Stream(time.perf_counter())
        streams.append(stream)
        tasks.append(asyncio.create_task(one_stream(target, stream)))
    opened = time.perf_counter()
    cap = options.chunks * options.delay * 2 + 60
    _, late = await asyncio.wait(tasks, timeout=cap)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    return streams, opened


async def one_stream(target: Target, stream: Stream) -> None:
    """One call over a connection of its own, on bare asyncio streams: the client's cost
    per stream is a fraction of an HTTP library's, so that a storm measures the hop (in
    the first version, aiohttp's client took 70 % of a core for 1,000 TLS streams a
    second, on a machine of two cores shared with the hop and the upstream)."""
    url = yarl.URL(target.url)
    writer = None
    try:
        if target.proxy:
            proxy = yarl.URL(target.proxy)
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            writer.write(target.connect)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                stream.error = head.split(b"\r\n")[0].decode()
                return
            assert target.tls is not None
            await writer.start_tls(target.tls, server_hostname=url.host)
        else:
            reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(target.request)
        head = await reader.readuntil(b"\r\n\r\n")
        stream.status = int(head.split(b" ", 2)[1])
        rest = b""
        while data := await reader.read(65536):
            now = time.perf_counter()
            rest += data
            complete = rest.count(b"\n\n")  # the chunked framing has no blank line
            if complete:
                stream.events += [now] * complete
                stream.done = stream.done or b"[DONE]" in rest
                rest = rest[rest.rfind(b"\n\n") + 2 :]
        stream.done = stream.done and stream.status == 200
    except (OSError, ValueError, asyncio.IncompleteReadError) as error:
        stream.done = False
        stream.error = type(error).__name__
    except asyncio.CancelledError:
        stream.done = False
        stream.error = "cut at the run's cap"
    finally:
        if writer is not None:
            writer.close()


# Measuring the processes ----------------------------------------------------------------


async def sample_all(hops: list[Hop], samples: dict[str, list[Sample]]) -> None:
    while True:
        for hop in hops:
            samples[hop.name].append(proc_sample(hop.pid))
        await asyncio.sleep(0.25)


def proc_sample(pid: int) -> Sample:
    """RSS (bytes), open descriptors and CPU seconds so far, from /proc."""
    rss, fds = proc_stats(pid)
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime
    return Sample(time.perf_counter(), rss, fds, cpu)


def listen_drops() -> int:
    """Connections dropped by the kernel since boot because a listen queue was full."""
    with open("/proc/net/netstat") as netstat:
        lines = [line.split() for line in netstat if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1], strict=True))["ListenDrops"])


async def gc_pauses(hop: Hop) -> dict[float, float]:
    """The hop's GC pause histogram (cumulative counts by bucket bound), {} if none."""
    if not hop.url:
        return {}
    return (await asyncio.to_thread(gc_metrics, hop))["buckets"]


def busy_pct(samples: list[Sample], start: float, end: float) -> float | None:
    """The process's CPU use between two moments, in % of one core."""
    inside = [s for s in samples if start <= s.at <= end]
    if len(inside) < 2:
        return None
    return round((inside[-1].cpu - inside[0].cpu) / (inside[-1].at - inside[0].at) * 100, 1)


def hop_stats(
    samples: list[Sample], gc_before: dict[float, float], gc_after: dict[float, float],
    started: float, ended: float, window: tuple[float, float], arrivals: list[float], n: int,
) -> dict[str, Any]:  # fmt: skip
    before = [s for s in samples if s.at < started] or samples[:1]
    during = [s for s in samples if started <= s.at <= ended] or samples
    base = before[-1]
    out: dict[str, Any] = {
        "rss_before_mib": round(base.rss / 2**20, 1),
        "rss_peak_mib": round(max(s.rss for s in during) / 2**20, 1),
        "rss_per_stream_kib": round((max(s.rss for s in during) - base.rss) / n / 1024, 1),
        "fds_before": base.fds, "fds_peak": max(s.fds for s in during),
        "fds_after": samples[-1].fds - base.fds,
        "fds_released_s": released_after(samples, ended, base.fds),
    }  # fmt: skip
    inside = [s for s in samples if window[0] <= s.at <= window[1]]
    if len(inside) >= 2:
        first, last = inside[0], inside[-1]
        relayed = sum(1 for t in arrivals if first.at < t <= last.at)
        out["cpu_per_chunk_us"] = round((last.cpu - first.cpu) / max(1, relayed) * 1e6, 1)
        out["cpu_steady_pct"] = busy_pct(samples, *window)
    if gc_after:
        counts = {bound: gc_after[bound] - gc_before.get(bound, 0.0) for bound in gc_after}
        out["gc_pauses"] = int(counts[float("inf")])
        under = max(v for bound, v in counts.items() if bound <= GC_TARGET_S)
        out["gc_over_20ms"] = int(counts[float("inf")] - under)
        out["gc_max_ms"] = longest_pause_ms(counts)
    return out


def released_after(samples: list[Sample], ended: float, base_fds: int) -> float | None:
    """Seconds from the last stream's end until the descriptors were back to (within ten
    of) what they were before the storm, or None if they never were in the samples."""
    for sample in samples:
        if sample.at >= ended and sample.fds <= base_fds + 10:
            return round(sample.at - ended, 1)
    return None


def longest_pause_ms(counts: dict[float, float]) -> str:
    """The bucket the longest pause of the run fell into, as "<= X ms" (the max gauge is
    the process's whole life, start-up included)."""
    bounds = sorted(counts)
    if not counts[bounds[-1]]:
        return "none"
    for lower, upper in zip([0.0, *bounds], bounds, strict=False):
        if counts[upper] == counts[bounds[-1]]:
            return f"{lower * 1000:g}-{upper * 1000:g}"
    return "none"


def gap_stats(window: str, gaps: list[float]) -> dict[str, Any]:
    if not gaps:
        return {f"{window}_gaps": 0}
    return {
        f"{window}_gaps": len(gaps),
        f"{window}_extra_p50_ms": ms(percentile(gaps, 0.5)),
        f"{window}_extra_p99_ms": ms(percentile(gaps, 0.99)),
        f"{window}_extra_max_ms": ms(max(gaps)),
    }


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def report(results: list[dict[str, Any]]) -> None:
    columns = [
        ("side", "side"), ("process", "process"), ("n", "n"), ("completed", "done"),
        ("usage_exact", "usage"), ("ttfb_p50_ms", "ttfb p50"), ("ttfb_p99_ms", "p99"),
        ("ramp_extra_p99_ms", "ramp gap+ p99"), ("ramp_extra_max_ms", "max"),
        ("steady_extra_p99_ms", "steady gap+ p99"), ("steady_extra_max_ms", "max"),
        ("closing_extra_p99_ms", "closing gap+ p99"), ("closing_extra_max_ms", "max"),
        ("rss_per_stream_kib", "KiB/stream"), ("cpu_per_chunk_us", "us/chunk"),
        ("cpu_storm_pct", "cpu% storm"), ("client_cpu_storm_pct", "client"),
        ("upstream_cpu_storm_pct", "upstream"),
        ("gc_over_20ms", "gc>20ms"), ("gc_max_ms", "gc max ms"), ("fds_after", "fds after"),
        ("fds_released_s", "released s"), ("listen_drops", "drops"),
    ]  # fmt: skip
    table(
        "streams (ms unless named)", [title for _, title in columns],
        [[row.get(key, "-") for key, _ in columns] for row in results],
    )  # fmt: skip


if __name__ == "__main__":
    main()
