"""Request overhead: the same requests direct to the upstream, through a bare aiohttp
pass-through, and through bridged (auth, routing, key injection, usage on).

Sides alternate (A/B/C then C/B/A) over several rounds on this noisy shared machine;
medians are reported with their spread. One JSON line per result, then a table.
python -m bench.overhead [--rounds 5] [--requests 2000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from aibridge.v1 import admin_pb2
from tests.harness import (
    PYTHON,
    REPO,
    Bridged,
    Controlplane,
    Secrets,
    clean_env,
    free_port,
    wait_until,
)

BODY = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
STREAM_BODY = BODY | {"stream": True, "stream_options": {"include_usage": True}}


async def load(url: str, headers: dict[str, str], concurrency: int, requests: int, cap: float):
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
                async with session.post(url, json=BODY, headers=headers) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


async def first_byte(url: str, headers: dict[str, str], requests: int) -> list[float]:
    """Time to the first streamed chunk, one request at a time."""
    times = []
    async with aiohttp.ClientSession() as session:
        for _ in range(requests):
            started = time.perf_counter()
            async with session.post(url, json=STREAM_BODY, headers=headers) as response:
                await response.content.readany()
                times.append(time.perf_counter() - started)
                await response.read()
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PYTHON, "-m", *args], cwd=REPO, env=clean_env())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0, help="cap per measurement")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aibridge-bench-"))
    upstream_port, pass_port = free_port(), free_port()
    processes = [
        start(["bench.upstream", str(upstream_port)]),
        start(["bench.passthrough", str(pass_port), f"http://127.0.0.1:{upstream_port}/v1"]),
    ]
    secrets = Secrets()
    cp = Controlplane(f"sqlite:///{work / 'bench.db'}", work, secrets).start()
    bridged = Bridged([cp.address], work, secrets).start()
    try:
        cp.admin.create_provider(
            "bench", f"http://127.0.0.1:{upstream_port}/v1", keys=["sk-bench-key-0000000000"]
        )
        token = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="bench"))
        cp.admin.wait_applied(token.revision)
        wait_until(lambda: _up(f"http://127.0.0.1:{pass_port}/models"), what="pass-through")
        sides = {
            "direct": f"http://127.0.0.1:{upstream_port}/v1/chat/completions",
            "passthrough": f"http://127.0.0.1:{pass_port}/chat/completions",
            "bridged": f"{bridged.provider_url('bench')}/v1/chat/completions",
        }
        headers = {"Authorization": f"Bearer {token.token}"}
        results = asyncio.run(measure(sides, headers, options))
    finally:
        bridged.stop()
        cp.stop()
        for process in processes:
            process.terminate()
            process.wait(10)
    report(results)


def _up(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


async def measure(sides: dict[str, str], headers: dict[str, str], options: argparse.Namespace):
    names = list(sides)
    rows: dict[tuple[str, str], list[float]] = {}
    for round_number in range(options.rounds):
        order = names if round_number % 2 == 0 else names[::-1]
        for name in order:
            url = sides[name]
            await load(url, headers, 4, 200, 5)  # warm up connections
            one, _ = await load(url, headers, 1, options.requests // 2, options.seconds)
            many, elapsed = await load(url, headers, 16, options.requests, options.seconds)
            ttfb = await first_byte(url, headers, 100)
            for metric, value in (
                ("p50_ms_c1", percentile(one, 0.5) * 1000),
                ("p99_ms_c1", percentile(one, 0.99) * 1000),
                ("p50_ms_c16", percentile(many, 0.5) * 1000),
                ("p99_ms_c16", percentile(many, 0.99) * 1000),
                ("rps_c16", len(many) / elapsed),
                ("ttfb_ms_p50", percentile(ttfb, 0.5) * 1000),
            ):
                rows.setdefault((name, metric), []).append(value)
    return rows


def report(rows: dict[tuple[str, str], list[float]]) -> None:
    medians = {key: statistics.median(values) for key, values in rows.items()}
    for (name, metric), values in sorted(rows.items()):
        median = round(medians[(name, metric)], 3)
        spread = {"min": round(min(values), 3), "max": round(max(values), 3)}
        print(json.dumps({"side": name, "metric": metric, "median": median, **spread,
                          "rounds": len(values)}))  # fmt: skip
    metrics = ["p50_ms_c1", "p99_ms_c1", "p50_ms_c16", "p99_ms_c16", "rps_c16", "ttfb_ms_p50"]
    print(f"\n{'side':<12}" + "".join(f"{m:>14}" for m in metrics))
    for name in ("direct", "passthrough", "bridged"):
        print(f"{name:<12}" + "".join(f"{medians[(name, m)]:>14.2f}" for m in metrics))
    for name in ("passthrough", "bridged"):
        added = medians[(name, "p50_ms_c1")] - medians[("direct", "p50_ms_c1")]
        added99 = medians[(name, "p99_ms_c1")] - medians[("direct", "p99_ms_c1")]
        ratio = medians[(name, "rps_c16")] / medians[("direct", "rps_c16")]
        print(f"{name}: adds {added:.2f} ms p50 / {added99:.2f} ms p99 at c=1; "
              f"{ratio:.0%} of the direct rate at c=16")  # fmt: skip
    bridged_vs_bare = medians[("bridged", "rps_c16")] / medians[("passthrough", "rps_c16")]
    print(f"bridged serves {bridged_vs_bare:.0%} of the bare pass-through's rate at c=16")


if __name__ == "__main__":
    sys.exit(main())
