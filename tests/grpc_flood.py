"""A flood of large `Admin.CreateProvider` calls from a process of its own, for the tests
and bench.flood: python -m tests.grpc_flood ADDRESS CALLS CHANNELS FIELD_BYTES SECONDS
(the credential, if any, in FLOOD_TOKEN).

Keeps CALLS calls in flight over CHANNELS connections, each with a FIELD_BYTES
display_name, until SECONDS pass, then prints one JSON line: how many calls ended with
each status code, and the details of every kind of failure. The request is encoded once
and sent as bytes, so that the process spends its CPU on sending, not on protobuf.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import sys
import time
from typing import Any

import grpc

from aibridge.v1 import admin_pb2
from tests.harness import PYTHON, REPO, clean_env, rss_bytes

METHOD = "/aibridge.v1.Admin/CreateProvider"
TOKEN_ENV = "FLOOD_TOKEN"


async def flood(
    address: str, calls: int, channels: int, field_bytes: int, seconds: float
) -> dict[str, Any]:
    token = os.environ.get(TOKEN_ENV, "")
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    payload = admin_pb2.CreateProviderRequest(
        name="flood", type="openai", base_url="https://flood.example/v1",
        display_name="x" * field_bytes,
    ).SerializeToString()  # fmt: skip
    opened = [grpc.aio.insecure_channel(address) for _ in range(channels)]
    # No serializers: bytes as they are.
    stubs: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
        c.unary_unary(METHOD) for c in opened
    ]
    codes: collections.Counter[str] = collections.Counter()
    details: dict[str, str] = {}
    deadline = time.monotonic() + seconds

    async def caller(i: int) -> None:
        call = stubs[i % len(stubs)]
        while time.monotonic() < deadline:
            try:
                await call(payload, metadata=metadata, timeout=10)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1
                details.setdefault(exc.code().name, exc.details() or "")

    started = time.monotonic()
    await asyncio.gather(*(caller(i) for i in range(calls)))
    elapsed = time.monotonic() - started
    for channel in opened:
        await channel.close()
    return {"codes": dict(codes), "details": details, "seconds": round(elapsed, 2)}


class Flood:
    """The flood process, started at once; `result()` waits for its end."""

    def __init__(
        self, address: str, token: str = "", *, calls: int = 200, channels: int = 20,
        field_bytes: int = 4_000_000, seconds: float = 5.0,
    ) -> None:  # fmt: skip
        self.seconds = seconds
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "tests.grpc_flood", address, str(calls), str(channels),
             str(field_bytes), str(seconds)],
            cwd=REPO, env=clean_env() | {TOKEN_ENV: token}, stdout=subprocess.PIPE,
        )  # fmt: skip

    def running(self) -> bool:
        return self.proc.poll() is None

    def result(self) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=self.seconds + 60)
        assert self.proc.returncode == 0, f"the flood exited {self.proc.returncode}"
        return json.loads(out.decode().strip().splitlines()[-1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def rss_mb(pid: int) -> float:
    """A process's resident set (VmRSS), in MB."""
    return rss_bytes(pid) / 2**20


if __name__ == "__main__":
    address, calls, channels, field_bytes, seconds = sys.argv[1:6]
    result = flood(address, int(calls), int(channels), int(field_bytes), float(seconds))
    print(json.dumps(asyncio.run(result)), flush=True)
