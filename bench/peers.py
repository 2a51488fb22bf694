"""Peer comparison: the same requests direct to the upstream, through a bare aiohttp
pass-through, through bridged and through LiteLLM's proxy; then the full MITM path
(client → proxyd → bridged → TLS upstream) against mitmdump on the same TLS upstream.

LiteLLM and mitmproxy are pip-installed by this benchmark into their own venvs under
`.bench/` (gitignored), never into the gateway's; a venv already holding the pinned
version is reused. Sides alternate A/B/B/A over several rounds on this noisy shared
machine; medians are reported with their spread. One JSON line per result, then tables.
python -m bench.peers [--rounds 5] [--requests 1000] [--seconds 10] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import os
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from aibridge.v1 import admin_pb2
from bench.common import ab_order, emit, http_up, percentile, spread, table, upstream_args
from tests.certs import issue, make_ca
from tests.harness import (
    PYTHON,
    REPO,
    Bridged,
    Controlplane,
    Proxyd,
    Secrets,
    clean_env,
    free_port,
    wait_until,
)

BENCHMARK = "peers"
BENCH_DIR = REPO / ".bench"
LITELLM_VERSION = "1.82.6"  # a release from before the March 2026 PyPI compromise (1.82.7/8)
MITMPROXY_VERSION = "11.0.2"  # the last mitmproxy for Python 3.11 (12.x needs 3.12)
LITELLM_KEY = "sk-litellm-bench-master-key"
MITM_AUTH = ("bench", "mitm-bench-secret")
PROVIDER_KEY = "sk-bench-key-0000000000"

BODY = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
STREAM_BODY = BODY | {"stream": True, "stream_options": {"include_usage": True}}
SLOW_CHUNK_DELAY = 0.05  # the upstream of the buffering check: 8 chunks, each then 50 ms
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


# --- installing the peers -------------------------------------------------------------


class InstallError(Exception):
    pass


def ensure_venv(name: str, requirement: str, package: str, version: str) -> Path:
    """`.bench/NAME`, a venv holding `requirement`; made (or remade) only when it lacks it."""
    venv = BENCH_DIR / name
    python = venv / "bin" / "python"
    marker = venv / ".bench-installed"
    if marker.exists() and marker.read_text().strip() == requirement and python.exists():
        found = subprocess.run(
            [str(python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if found.returncode == 0 and found.stdout.strip() == version:
            return venv
    print(f"peers: installing {requirement} into {venv} (once; a minute or two)", file=sys.stderr)
    BENCH_DIR.mkdir(exist_ok=True)
    marker.unlink(missing_ok=True)
    subprocess.run([PYTHON, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    try:
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
             requirement],
            capture_output=True, text=True, timeout=1800, env=_no_proxy_env(keep_proxy=True),
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise InstallError(
            f"pip install {requirement} did not finish in {exc.timeout:.0f}s: "
            "is the package registry (PyPI) reachable from here?"
        ) from exc
    if result.returncode != 0:
        output = [
            line for line in (result.stdout + result.stderr).splitlines()
            if "WARNING: Location" not in line
        ]  # fmt: skip
        text = "\n".join(output)
        unreachable = any(
            sign in text
            for sign in (
                "NewConnectionError", "Max retries exceeded", "Could not fetch URL",
                "Temporary failure in name resolution", "Network is unreachable",
                "ConnectTimeoutError", "ReadTimeoutError", "from versions: none",
            )
        )  # fmt: skip
        reason = (
            "the package registry (PyPI) looks unreachable from this machine"
            if unreachable
            else f"pip exited {result.returncode}"
        )
        tail = "\n  ".join(output[-8:])
        raise InstallError(f"could not install {requirement} into {venv}: {reason}\n  {tail}")
    marker.write_text(requirement + "\n")
    return venv


def _no_proxy_env(keep_proxy: bool = False) -> dict[str, str]:
    """Children's environment: no AIBRIDGE_*, and no proxy settings (the benchmark's
    traffic stays on loopback) unless `keep_proxy` (pip may need them)."""
    env = clean_env()
    if not keep_proxy:
        env = {k: v for k, v in env.items() if k.lower() not in PROXY_VARIABLES}
    return env


# --- processes ---------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=_no_proxy_env)
    port: int = 0
    ca_path: Path | None = None  # mitmdump's CA, for its clients
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{log}")

    def wait(self, ready: Callable[[], bool], timeout: float) -> None:
        def check() -> bool:
            self.check_alive()
            return ready()

        wait_until(check, timeout, f"{self.name} to serve")

    def stop(self) -> None:
        """SIGTERM to its process group (LiteLLM's CLI runs uvicorn in a child), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def litellm_process(venv: Path, work: Path, upstream_port: int) -> Process:
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt\n"
        "    litellm_params:\n"
        "      model: openai/gpt\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        f"      api_key: {PROVIDER_KEY}\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
    )
    port = free_port()
    env = _no_proxy_env() | {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env = {k: v for k, v in env.items() if k not in ("DATABASE_URL", "LITELLM_MASTER_KEY")}
    return Process(
        "litellm",
        [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
         "--port", str(port), "--num_workers", "1", "--telemetry", "False"],
        work / "litellm.log", env, port,
    )  # fmt: skip


def mitmdump_process(venv: Path, work: Path, upstream_ca: Path) -> Process:
    port = free_port()
    confdir = work / "mitmproxy"
    confdir.mkdir(exist_ok=True)
    return Process(
        "mitmdump",
        [str(venv / "bin" / "mitmdump"), "--listen-host", "127.0.0.1",
         "--listen-port", str(port),
         "--set", f"confdir={confdir}",
         "--set", "stream_large_bodies=1",  # stream every body, however small
         "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}",
         "--set", f"proxyauth={MITM_AUTH[0]}:{MITM_AUTH[1]}",
         "--set", "flow_detail=0"],  # no line per request (bridged keeps no access log)
        work / "mitmdump.log", port=port, ca_path=confdir / "mitmproxy-ca-cert.pem",
    )  # fmt: skip


def serve_tls_upstream(argv: list[str]) -> None:
    """The TLS upstream in its own process:
    python -m bench.peers --serve-tls-upstream PORT CHUNK_DELAY CERT KEY"""
    from mockupstream import MockUpstream

    port, delay, cert, key = int(argv[0]), float(argv[1]), argv[2], argv[3]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    upstream = MockUpstream("bench", chunks=8, chunk_delay=delay, tls=context, record=False)
    upstream.port = port
    upstream.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    upstream.stop()


# --- the client --------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    url: str  # …/chat/completions
    headers: dict[str, str]
    proxy: str | None = None
    proxy_auth: tuple[str, str] | None = None  # user, password
    tls: ssl.SSLContext | None = None
    max_requests: int | None = None  # a slow peer's bound on each measurement
    max_seconds: float | None = None
    max_streams: int | None = None

    def requests(self, wanted: int) -> int:
        return min(wanted, self.max_requests) if self.max_requests else wanted

    def seconds(self, wanted: float) -> float:
        return min(wanted, self.max_seconds) if self.max_seconds else wanted

    def streams(self, wanted: int) -> int:
        return min(wanted, self.max_streams) if self.max_streams else wanted

    def session(self, concurrency: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=concurrency, ssl=self.tls or True)
        return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))

    def kwargs(self) -> dict[str, Any]:
        proxy_headers = None
        if self.proxy_auth is not None:
            credentials = base64.b64encode(":".join(self.proxy_auth).encode()).decode()
            proxy_headers = {"Proxy-Authorization": f"Basic {credentials}"}
        return {"headers": self.headers, "proxy": self.proxy, "proxy_headers": proxy_headers}


async def _call(session: aiohttp.ClientSession, side: Side) -> None:
    async with session.post(side.url, json=BODY, **side.kwargs()) as response:
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{side.name}: {response.status} {body[:300]!r}")


async def load(
    side: Side, concurrency: int, requests: int, cap: float
) -> tuple[list[float], float]:
    """(latencies in seconds, elapsed) of up to `requests` calls, `concurrency` at a time,
    stopping after `cap` seconds; connections are opened (CONNECT, TLS) and warmed first."""
    latencies: list[float] = []
    remaining = requests
    async with side.session(concurrency) as session:
        await asyncio.gather(*(_call(session, side) for _ in range(2 * concurrency)))
        deadline = time.perf_counter() + cap

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                started = time.perf_counter()
                await _call(session, side)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


async def streams(side: Side, count: int, cap: float) -> list[tuple[float, float]]:
    """(time to the first body byte, time to the end) of streamed chats, one at a time."""
    times: list[tuple[float, float]] = []
    async with side.session(1) as session:
        await _call(session, side)  # open the connection
        deadline = time.perf_counter() + cap
        while len(times) < count and (not times or time.perf_counter() < deadline):
            started = time.perf_counter()
            async with session.post(side.url, json=STREAM_BODY, **side.kwargs()) as response:
                first = await response.content.readany()
                ttfb = time.perf_counter() - started
                rest = await response.read()
                if response.status != 200 or b"[DONE]" not in first + rest:
                    raise RuntimeError(f"{side.name}: stream {response.status} {rest[:300]!r}")
            times.append((ttfb, time.perf_counter() - started))
    return times


# --- the two comparisons -----------------------------------------------------------------

Rows = dict[tuple[str, str], list[float]]


async def measure_gateways(sides: list[Side], options: argparse.Namespace) -> Rows:
    """Latency at c=1 and c=16, throughput at c=16, stream TTFB; each side every round."""
    rows: Rows = {}
    names = [side.name for side in sides]
    by_name = {side.name: side for side in sides}
    for round_number in range(options.rounds):
        this_round: dict[tuple[str, str], float] = {}
        for name in ab_order(names, round_number):
            side = by_name[name]
            n, cap = side.requests(options.requests), side.seconds(options.seconds)
            one, _ = await load(side, 1, max(1, n // 2), cap)
            many, elapsed = await load(side, 16, n, cap)
            ttfb = [t for t, _ in await streams(side, side.streams(options.streams), cap)]
            for metric, value in (
                ("p50_ms_c1", percentile(one, 0.5) * 1000),
                ("p99_ms_c1", percentile(one, 0.99) * 1000),
                ("p50_ms_c16", percentile(many, 0.5) * 1000),
                ("p99_ms_c16", percentile(many, 0.99) * 1000),
                ("rps_c16", len(many) / elapsed),
                ("ttfb_ms_p50", percentile(ttfb, 0.5) * 1000),
                ("requests_c1", len(one)),
                ("requests_c16", len(many)),
            ):
                this_round[(name, metric)] = value
            print(f"  round {round_number + 1}: {name:<12} "
                  f"p50 c1 {this_round[(name, 'p50_ms_c1')]:.2f} ms, "
                  f"{this_round[(name, 'rps_c16')]:.0f} req/s at c16 ({len(many)} requests)",
                  file=sys.stderr, flush=True)  # fmt: skip
        for (name, metric), value in list(this_round.items()):
            if name != "direct" and metric.startswith("p"):
                this_round[(name, f"added_{metric}")] = value - this_round[("direct", metric)]
        for key, value in this_round.items():
            rows.setdefault(key, []).append(value)
    return rows


async def measure_mitm(
    sides: list[Side], slow: dict[str, Side], options: argparse.Namespace
) -> Rows:
    """Throughput at c=16, p50 at c=1, and streams from an upstream that pauses between
    chunks: the first byte must come about when the upstream sends it, not at the end."""
    rows: Rows = {}
    names = [side.name for side in sides]
    by_name = {side.name: side for side in sides}
    for round_number in range(options.rounds):
        for name in ab_order(names, round_number):
            side = by_name[name]
            n, cap = side.requests(options.requests), side.seconds(options.seconds)
            one, _ = await load(side, 1, max(1, n // 2), cap)
            many, elapsed = await load(side, 16, n, cap)
            timed = await streams(slow[name], options.slow_streams, cap)
            ttfb = [t for t, _ in timed]
            total = [t for _, t in timed]
            buffered = sum(t > 0.5 * whole for t, whole in timed)
            for metric, value in (
                ("p50_ms_c1", percentile(one, 0.5) * 1000),
                ("p99_ms_c1", percentile(one, 0.99) * 1000),
                ("rps_c16", len(many) / elapsed),
                ("slow_ttfb_ms_p50", percentile(ttfb, 0.5) * 1000),
                ("slow_ttfb_ms_max", max(ttfb) * 1000),
                ("slow_total_ms_p50", percentile(total, 0.5) * 1000),
                ("buffered_streams", buffered),
                ("streams", len(timed)),
                ("requests_c1", len(one)),
                ("requests_c16", len(many)),
            ):
                rows.setdefault((name, metric), []).append(value)
            print(f"  round {round_number + 1}: {name:<16} "
                  f"p50 c1 {rows[(name, 'p50_ms_c1')][-1]:.2f} ms, "
                  f"{rows[(name, 'rps_c16')][-1]:.0f} req/s at c16, slow stream first byte "
                  f"{rows[(name, 'slow_ttfb_ms_p50')][-1]:.0f} of "
                  f"{rows[(name, 'slow_total_ms_p50')][-1]:.0f} ms",
                  file=sys.stderr, flush=True)  # fmt: skip
    return rows


# --- reporting ---------------------------------------------------------------------------


def _median(rows: Rows, name: str, metric: str) -> float:
    return statistics.median(rows[(name, metric)])


def _with_range(rows: Rows, name: str, metric: str, digits: int = 2) -> str:
    values = rows[(name, metric)]
    return (f"{statistics.median(values):.{digits}f} "
            f"[{min(values):.{digits}f}..{max(values):.{digits}f}]")  # fmt: skip


def report_gateways(rows: Rows, names: list[str], context: dict[str, object]) -> None:
    for (name, metric), values in sorted(rows.items()):
        emit(BENCHMARK, section="gateways", side=name, metric=metric, **spread(values),
             **context)  # fmt: skip
    table(
        "Gateways (plain HTTP upstream; ms, req/s; median [min-max] over rounds)",
        ["side", "p50 c1", "added p50 c1", "added p99 c1", "added p50 c16", "added p99 c16",
         "req/s c16", "stream TTFB p50"],
        [
            [name, _with_range(rows, name, "p50_ms_c1")]
            + [
                "-" if name == "direct" else _with_range(rows, name, f"added_{metric}")
                for metric in ("p50_ms_c1", "p99_ms_c1", "p50_ms_c16", "p99_ms_c16")
            ]
            + [_with_range(rows, name, "rps_c16", 0), _with_range(rows, name, "ttfb_ms_p50")]
            for name in names
        ],
    )  # fmt: skip
    base = _median(rows, "passthrough", "rps_c16")
    for name in names:
        if name != "passthrough":
            ratio = _median(rows, name, "rps_c16") / base
            print(f"{name}: {ratio:.1%} of the bare pass-through's rate at c=16")


def report_mitm(
    rows: Rows, names: list[str], context: dict[str, object], sessions: float | None
) -> None:
    for (name, metric), values in sorted(rows.items()):
        emit(BENCHMARK, section="mitm", side=name, metric=metric, **spread(values), **context)
    if sessions is not None:  # the client keeps its connections alive through the proxy
        emit(BENCHMARK, section="mitm", side="proxyd+bridged", metric="connect_sessions",
             value=sessions, **context)  # fmt: skip
    table(
        f"MITM path (TLS upstream; slow streams: 8 chunks, {SLOW_CHUNK_DELAY * 1000:.0f} ms "
        "apart; median [min-max] over rounds)",
        ["side", "p50 c1 ms", "req/s c16", "slow TTFB p50 ms", "slow TTFB max ms",
         "slow stream total ms", "buffered"],
        [
            [name, _with_range(rows, name, "p50_ms_c1"), _with_range(rows, name, "rps_c16", 0),
             _with_range(rows, name, "slow_ttfb_ms_p50", 1),
             f"{max(rows[(name, 'slow_ttfb_ms_max')]):.1f}",
             _with_range(rows, name, "slow_total_ms_p50", 0),
             f"{sum(rows[(name, 'buffered_streams')]):.0f}/{sum(rows[(name, 'streams')]):.0f}"]
            for name in names
        ],
    )  # fmt: skip
    if "proxyd+bridged" in names and "mitmdump" in names:
        ours = _median(rows, "proxyd+bridged", "rps_c16")
        ratio = ours / _median(rows, "mitmdump", "rps_c16")
        print(f"proxyd+bridged serves {ratio:.0%} of mitmdump's rate at c=16")


# --- main --------------------------------------------------------------------------------


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="rounds of A/B/B/A (default 5; 2 --quick)")
    parser.add_argument("--requests", type=int, help="requests per c=16 measurement "
                        "(half that at c=1; default 1000, 200 --quick)")  # fmt: skip
    parser.add_argument("--seconds", type=float, help="cap on each measurement "
                        "(default 10, 3 --quick)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-mitm", action="store_true", help="skip the MITM comparison")
    options = parser.parse_args()
    quick = options.quick
    options.rounds = options.rounds or (2 if quick else 5)
    options.requests = options.requests or (200 if quick else 1000)
    options.seconds = options.seconds or (3.0 if quick else 10.0)
    options.streams = 20 if quick else 100  # stream TTFB samples per side and round
    options.slow_streams = 3 if quick else 8  # each lasts about half a second
    # LiteLLM answers some 50 times slower than the pass-through: fewer, time-capped calls.
    options.litellm_requests = max(50, options.requests // 5)
    options.litellm_seconds = min(options.seconds, 3.0 if quick else 8.0)
    options.litellm_streams = 10 if quick else 30
    return options


def main() -> int:
    if sys.argv[1:2] == ["--serve-tls-upstream"]:
        serve_tls_upstream(sys.argv[2:])
        return 0
    options = parse_options()
    problems: list[str] = []
    litellm_venv = mitm_venv = None
    if not options.skip_litellm:
        try:
            litellm_venv = ensure_venv(
                "litellm", f"litellm[proxy]=={LITELLM_VERSION}", "litellm", LITELLM_VERSION
            )
        except InstallError as exc:
            problems.append(f"LiteLLM left out: {exc}")
    if not options.skip_mitm:
        try:
            mitm_venv = ensure_venv(
                "mitmproxy", f"mitmproxy=={MITMPROXY_VERSION}", "mitmproxy", MITMPROXY_VERSION
            )
        except InstallError as exc:
            problems.append(f"mitmdump left out: {exc}")
    for problem in problems:
        print(f"peers: {problem}", file=sys.stderr)
        emit(BENCHMARK, skipped=problem.splitlines()[0])

    work = Path(tempfile.mkdtemp(prefix="aibridge-bench-peers-"))
    pki = work / "pki"
    upstream_ca = make_ca(pki, "upstream-ca", "bench upstream CA")
    server = issue(upstream_ca, pki, "upstream", server_names=["127.0.0.1", "localhost"])
    ports = {name: free_port() for name in ("plain", "tls", "tls_slow", "passthrough")}

    def tls_upstream(name: str, delay: float) -> Process:
        return Process(
            name,
            [PYTHON, "-m", "bench.peers", "--serve-tls-upstream", str(ports[name]), str(delay),
             str(server.cert_path), str(server.key_path)],
            work / f"{name}.log", port=ports[name],
        )  # fmt: skip

    helpers = [
        Process("upstream", [PYTHON, "-m", *upstream_args(ports["plain"])],
                work / "upstream.log", port=ports["plain"]),
        Process("passthrough", [PYTHON, "-m", "bench.passthrough", str(ports["passthrough"]),
                                f"http://127.0.0.1:{ports['plain']}/v1"],
                work / "passthrough.log", port=ports["passthrough"]),
        tls_upstream("tls", 0.0),
        tls_upstream("tls_slow", SLOW_CHUNK_DELAY),
    ]  # fmt: skip
    secrets = Secrets()
    cp = Controlplane(f"sqlite:///{work / 'bench.db'}", work, secrets)
    bridged = Bridged(
        [cp.address], work, secrets,
        # The production default for usage batches (the test harness flushes every 0.2 s).
        extra_args=("--upstream-ca-file", str(upstream_ca.cert_path),
                    "--usage-flush-interval", "1.0"),
    )  # fmt: skip
    proxyd = Proxyd([cp.address], bridged.url, work, secrets)
    peers: list[Process] = []
    connect_sessions: float | None = None
    context = {"litellm": LITELLM_VERSION, "mitmproxy": MITMPROXY_VERSION,
               "requests": options.requests, "seconds": options.seconds}  # fmt: skip
    try:
        for helper in helpers:
            helper.start()
        cp.start()
        bridged.start()
        proxyd.start()
        cp.admin.create_provider("bench", f"http://127.0.0.1:{ports['plain']}/v1",
                                 keys=[PROVIDER_KEY])  # fmt: skip
        cp.admin.create_provider("tls", f"https://127.0.0.1:{ports['tls']}/v1",
                                 keys=[PROVIDER_KEY])  # fmt: skip
        cp.admin.create_provider("tlsslow", f"https://127.0.0.1:{ports['tls_slow']}/v1",
                                 keys=[PROVIDER_KEY])  # fmt: skip
        token = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="bench"))
        cp.admin.wait_applied(token.revision)
        for helper in helpers:
            helper.wait(functools.partial(port_open, helper.port), 30)
        gateway_headers = {"Authorization": f"Bearer {token.token}"}

        # 1. Gateways on a plain HTTP upstream.
        sides = [
            Side("direct", f"http://127.0.0.1:{ports['plain']}/v1/chat/completions",
                 {"Authorization": f"Bearer {PROVIDER_KEY}"}),
            Side("passthrough", f"http://127.0.0.1:{ports['passthrough']}/chat/completions",
                 {"Authorization": f"Bearer {PROVIDER_KEY}"}),
            Side("bridged", f"{bridged.provider_url('bench')}/v1/chat/completions",
                 gateway_headers),
        ]  # fmt: skip
        if litellm_venv is not None:
            litellm = litellm_process(litellm_venv, work, ports["plain"])
            peers.append(litellm)
            litellm.start()
            litellm_url = f"http://127.0.0.1:{litellm.port}"
            litellm.wait(lambda: http_up(f"{litellm_url}/health/liveliness"), 180)
            print(f"peers: LiteLLM: {shlex.join(litellm.command)}", file=sys.stderr)
            sides.append(
                Side("litellm", f"{litellm_url}/v1/chat/completions",
                     {"Authorization": f"Bearer {LITELLM_KEY}"},
                     max_requests=options.litellm_requests,
                     max_seconds=options.litellm_seconds,
                     max_streams=options.litellm_streams)
            )  # fmt: skip
        print(f"peers: gateways, {options.rounds} rounds", file=sys.stderr, flush=True)
        gateway_rows = asyncio.run(measure_gateways(sides, options))
        gateway_load = _loadavg()  # how much of the result was the neighbours
        for peer in peers:
            peer.stop()  # its idle loops stay out of the MITM measurements

        # 2. The MITM path on a TLS upstream.
        mitm_rows = None
        mitm_names: list[str] = []
        mitm_load: dict[str, object] = {}
        if not options.skip_mitm:
            upstream_tls = ssl.create_default_context(cafile=str(upstream_ca.cert_path))
            proxyd_tls = ssl.create_default_context(cafile=str(proxyd.ca_path))
            token_auth = ("user", token.token)
            direct_headers = {"Authorization": f"Bearer {PROVIDER_KEY}"}

            def mitm_sides(port: str, provider: str) -> list[Side]:
                origin = f"https://127.0.0.1:{ports[port]}/v1/chat/completions"
                result = [
                    Side("direct-tls", origin, direct_headers, tls=upstream_tls),
                    Side("bridged", f"{bridged.provider_url(provider)}/v1/chat/completions",
                         gateway_headers),
                    Side("proxyd+bridged", origin, {"Authorization": "Bearer sk-client-own-key"},
                         proxy=proxyd.url, proxy_auth=token_auth, tls=proxyd_tls),
                ]  # fmt: skip
                return result

            mitm_sides_fast = mitm_sides("tls", "tls")
            mitm_sides_slow = mitm_sides("tls_slow", "tlsslow")
            if mitm_venv is not None:
                mitm = mitmdump_process(mitm_venv, work, upstream_ca.cert_path)
                peers.append(mitm)
                mitm.start()
                mitm_ca = mitm.ca_path
                assert mitm_ca is not None
                mitm.wait(lambda: port_open(mitm.port) and mitm_ca.exists(), 60)
                print(f"peers: mitmdump: {shlex.join(mitm.command)}", file=sys.stderr)
                mitm_tls = ssl.create_default_context(cafile=str(mitm_ca))
                mitm_url = f"http://127.0.0.1:{mitm.port}"
                for port, group in (("tls", mitm_sides_fast), ("tls_slow", mitm_sides_slow)):
                    group.append(
                        Side("mitmdump", f"https://127.0.0.1:{ports[port]}/v1/chat/completions",
                             direct_headers, proxy=mitm_url,
                             proxy_auth=MITM_AUTH, tls=mitm_tls)
                    )  # fmt: skip
            print(f"peers: MITM path, {options.rounds} rounds", file=sys.stderr, flush=True)
            slow = {side.name: side for side in mitm_sides_slow}
            mitm_rows = asyncio.run(measure_mitm(mitm_sides_fast, slow, options))
            mitm_names = [side.name for side in mitm_sides_fast]
            mitm_load = _loadavg()
            connect_sessions = _intercepted_sessions(proxyd.metrics())
    except BaseException:
        print(f"peers: failed; the processes' logs are in {work}", file=sys.stderr)
        raise
    finally:
        for peer in peers:
            peer.stop()
        proxyd.stop()
        bridged.stop()
        cp.stop()
        for helper in helpers:
            helper.stop()
    shutil.rmtree(work, ignore_errors=True)  # reached only on success: logs kept on failure

    report_gateways(gateway_rows, [side.name for side in sides], context | gateway_load)
    if mitm_rows is not None:
        report_mitm(mitm_rows, mitm_names, context | mitm_load, connect_sessions)
    for problem in problems:
        print(f"peers: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _loadavg() -> dict[str, object]:
    return {"loadavg": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def _intercepted_sessions(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("aibridge_proxyd_connect_sessions_total") and "intercepted" in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
