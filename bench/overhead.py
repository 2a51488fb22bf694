"""Request overhead: the same requests direct to the upstream, through a bare aiohttp
pass-through (the floor for any Python hop), and through bridged (auth, routing, key
injection, usage on), plus bridged on the stock asyncio loop to show what uvloop buys.

Per side and round: latency p50/p99 at concurrency 1 and 16, throughput at 16, and, on
an upstream that streams 8 chunks 20 ms apart, time to the first byte and the gap
between chunks (buffering anywhere would show in both). Sides alternate A/B/B/A over
the rounds; medians are reported with their spread.

With `--limits local`, a default limit set applies to every call (requests and tokens per
minute, concurrency, a budget, allowed providers and models, all far above what the run
uses): bridged checks each of them, with in-process counters. `--limits redis` does the
same with the counters in Redis (127.0.0.1:6379, a key prefix of the run's own).

python -m bench.overhead [--rounds 5] [--requests 2000] [--seconds 20] [--body hi|agent]
                        [--limits none|local|redis] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from aibridge.v1 import admin_pb2
from bench.common import (
    ab_order,
    emit,
    http_up,
    percentile,
    spread,
    start_module,
    table,
    upstream_args,
)
from tests.harness import Bridged, Controlplane, Secrets, free_port, wait_until

BODY: dict[str, object] = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


def agent_body() -> dict[str, object]:
    """A coding agent's call, about 25 KB: instructions, twelve tools, ten earlier turns of
    tool calls and results, then the user's prompt. Offered tools, the upstream answers
    with two tool calls (mockupstream/replies.py): everything bridged records, recorded."""
    line = "def handler(request): return respond(request.json(), status=200)  # keep\n"
    messages: list[dict[str, object]] = [{"role": "system", "content": line * 60}]
    for turn in range(10):
        call = {
            "id": f"call_{turn}",
            "type": "function",
            "function": {"name": "read_file", "arguments": '{"path": "src/app.py"}'},
        }
        messages += [
            {"role": "user", "content": f"step {turn}: look at the handler"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{turn}", "content": line * 20},
        ]  # fmt: skip
    messages.append({"role": "user", "content": "now fix the bug in the handler " * 20})
    tools = [
        {"type": "function", "function": {"name": f"tool_{n}", "description": line,
         "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}
        for n in range(12)
    ]  # fmt: skip
    return {"model": "gpt", "messages": messages, "tools": tools}


BODIES: dict[str, dict[str, object]] = {"hi": BODY, "agent": agent_body()}
# Every check bridged makes, none of which the run comes near.
EVERY_CALL = admin_pb2.SetLimitsRequest(
    scope="default",
    requests_per_minute=1_000_000_000,
    tokens_per_minute=1_000_000_000,
    max_concurrent=100_000,
    monthly_budget_usd=1_000_000_000,
    providers=admin_pb2.StringList(values=["bench", "bench-stream"]),
    models=admin_pb2.StringList(values=["gpt*", "mock-*"]),
)
CHUNK_DELAY = 0.02
METRICS = ("p50_ms_c1", "p99_ms_c1", "p50_ms_c16", "p99_ms_c16", "rps_c16", "ttfb_ms", "gap_ms")


async def load(
    url: str, headers: dict[str, str], concurrency: int, requests: int, cap: float,
    body: dict[str, object] = BODY,
) -> tuple[list[float], float]:  # fmt: skip
    """Returns (latencies in seconds, elapsed) for `requests` calls, `concurrency` at a time."""
    latencies: list[float] = []
    remaining = requests
    deadline = time.perf_counter() + cap
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                started = time.perf_counter()
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


async def stream_timings(
    url: str, headers: dict[str, str], requests: int, cap: float, body: dict[str, object]
) -> tuple[list[float], list[float]]:
    """(time to first byte, mean gap between chunks) of each stream, one at a time."""
    first: list[float] = []
    gaps: list[float] = []
    deadline = time.perf_counter() + cap
    async with aiohttp.ClientSession() as session:
        for _ in range(requests):
            if time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            arrivals: list[float] = []
            async with session.post(url, json=body, headers=headers) as response:
                async for _chunk in response.content.iter_any():
                    arrivals.append(time.perf_counter())
            first.append(arrivals[0] - started)
            if len(arrivals) > 1:
                gaps.append((arrivals[-1] - arrivals[0]) / (len(arrivals) - 1))
    return first, gaps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0, help="cap per measurement")
    parser.add_argument(
        "--body", choices=BODIES, default="hi",
        help="what each call sends: 'hi', or an agent's call answered with tool calls",
    )  # fmt: skip
    parser.add_argument(
        "--limits", choices=("none", "local", "redis"), default="none",
        help="a limit set on every call, counted in bridged or in Redis",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="2 rounds, 300 requests")
    options = parser.parse_args(argv)
    if options.quick:
        options.rounds, options.requests, options.seconds = 2, 300, 5.0

    work = Path(tempfile.mkdtemp(prefix="aibridge-bench-"))
    fast, slow, pass_fast, pass_slow = (free_port() for _ in range(4))
    helpers = [
        start_module(*upstream_args(fast)),
        start_module(*upstream_args(slow, CHUNK_DELAY)),
        start_module("bench.passthrough", str(pass_fast), f"http://127.0.0.1:{fast}/v1"),
        start_module("bench.passthrough", str(pass_slow), f"http://127.0.0.1:{slow}/v1"),
    ]
    secrets = Secrets()
    cp = Controlplane(f"sqlite:///{work / 'bench.db'}", work, secrets).start()
    # The production default for usage batches (the test harness flushes every 0.2 s).
    defaults: tuple[str, ...] = ("--usage-flush-interval", "1.0")
    prefix = f"aibridge-bench-{uuid.uuid4().hex}:"
    if options.limits == "redis":
        redis = ("--limits-redis", "redis://127.0.0.1:6379/0", "--limits-redis-prefix", prefix)
        defaults = (*defaults, *redis)
    bridged = Bridged([cp.address], work, secrets, extra_args=defaults).start()
    stock = Bridged(
        [cp.address], work, secrets, name="bridged-asyncio",
        extra_args=(*defaults, "--event-loop", "asyncio"),
    ).start()  # fmt: skip
    try:
        for name, port in (("bench", fast), ("bench-stream", slow)):
            cp.admin.create_provider(name, f"http://127.0.0.1:{port}/v1", keys=["sk-bench-key-0"])
        token = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="bench"))
        revision = token.revision
        if options.limits != "none":
            revision = cp.admin.SetLimits(EVERY_CALL).revision
        cp.admin.wait_applied(revision)
        for port in (pass_fast, pass_slow):
            wait_until(
                functools.partial(http_up, f"http://127.0.0.1:{port}/models"), what="pass-through"
            )
        chat = "/chat/completions"
        sides = {
            "direct": (f"http://127.0.0.1:{fast}/v1{chat}", f"http://127.0.0.1:{slow}/v1{chat}"),
            "passthrough": (f"http://127.0.0.1:{pass_fast}{chat}",
                            f"http://127.0.0.1:{pass_slow}{chat}"),
            "bridged": (f"{bridged.provider_url('bench')}/v1{chat}",
                        f"{bridged.provider_url('bench-stream')}/v1{chat}"),
            "bridged-asyncio": (f"{stock.provider_url('bench')}/v1{chat}",
                                f"{stock.provider_url('bench-stream')}/v1{chat}"),
        }  # fmt: skip
        headers = {"Authorization": f"Bearer {token.token}"}
        rows = asyncio.run(measure(sides, headers, options))
    finally:
        stock.stop()
        bridged.stop()
        cp.stop()
        for process in helpers:
            process.terminate()
            process.wait(10)
    report(rows)


async def measure(
    sides: dict[str, tuple[str, str]], headers: dict[str, str], options: argparse.Namespace
) -> dict[tuple[str, str], list[float]]:
    rows: dict[tuple[str, str], list[float]] = {}
    for round_number in range(options.rounds):
        for name in ab_order(list(sides), round_number):
            url, stream_url = sides[name]
            body = BODIES[options.body]
            streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
            await load(url, headers, 4, 200, 5, body)  # warm up connections
            one, _ = await load(url, headers, 1, options.requests // 2, options.seconds, body)
            many, elapsed = await load(url, headers, 16, options.requests, options.seconds, body)
            first, gaps = await stream_timings(stream_url, headers, 20, options.seconds, streamed)
            for metric, value in zip(METRICS, (
                percentile(one, 0.5) * 1000, percentile(one, 0.99) * 1000,
                percentile(many, 0.5) * 1000, percentile(many, 0.99) * 1000,
                len(many) / elapsed,
                statistics.median(first) * 1000, statistics.median(gaps) * 1000,
            ), strict=True):  # fmt: skip
                rows.setdefault((name, metric), []).append(value)
    return rows


def report(rows: dict[tuple[str, str], list[float]]) -> None:
    for (side, metric), values in sorted(rows.items()):
        emit("overhead", side=side, metric=metric, **spread(values))
    medians = {key: statistics.median(values) for key, values in rows.items()}
    sides = list(dict.fromkeys(side for side, _ in rows))
    table("medians (ms; rps)", ["side", *METRICS], [
        [side, *(medians[(side, m)] for m in METRICS)] for side in sides
    ])  # fmt: skip

    def added(side: str, metric: str) -> float:
        return medians[(side, metric)] - medians[("direct", metric)]

    summary: list[list[object]] = []
    for side in sides[1:]:
        numbers = [
            added(side, "p50_ms_c1"), added(side, "p99_ms_c1"),
            medians[(side, "rps_c16")] / medians[("direct", "rps_c16")] * 100,
            medians[(side, "rps_c16")] / medians[("passthrough", "rps_c16")] * 100,
            added(side, "ttfb_ms"), added(side, "gap_ms"),
        ]  # fmt: skip
        summary.append([side, *numbers])
        emit("overhead", side=side, metric="summary", **dict(zip(
            ["added_p50_ms_c1", "added_p99_ms_c1", "pct_of_direct_rps", "pct_of_passthrough_rps",
             "added_ttfb_ms", "added_gap_ms"], (round(x, 3) for x in numbers), strict=True
        )))  # fmt: skip
    table("against direct", ["side", "+p50 c1", "+p99 c1", "% direct rps", "% passthrough rps",
                             "+ttfb", "+gap"], summary)  # fmt: skip


if __name__ == "__main__":
    main()
