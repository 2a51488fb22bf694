"""Many real subscribers in one process, for the propagation and scale benchmarks:
python -m bench.subscribers ADDRESS ROLE COUNT PREFIX   (the credential in BENCH_TOKEN)

Runs COUNT `common.subscriber.Subscriber`s in one asyncio loop, ids
PREFIX-0 … PREFIX-{COUNT-1}, and writes one line per applied snapshot to stdout:
"subscriber_id version monotonic_seconds". CLOCK_MONOTONIC is system-wide on Linux, so
the parent compares these times with its own. The apply function does nothing else:
what is timed is the control channel, not a data plane's own work.

`SubscriberWorkers` is the parent's side: it starts a few such processes and reads
their lines in threads, so the measuring process's own CPU stays out of the way.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from tests.harness import PYTHON, REPO, clean_env

TOKEN_ENV = "BENCH_TOKEN"


async def run(address: str, role: str, count: int, prefix: str, token: str) -> None:
    from common.lifecycle import wait_for_signal
    from common.subscriber import ApplyResult, ProviderSnapshot, Subscriber

    out = sys.stdout

    def recorder(subscriber_id: str) -> Callable[[ProviderSnapshot], ApplyResult]:
        def apply(snapshot: ProviderSnapshot) -> ApplyResult:
            out.write(f"{subscriber_id} {snapshot.version} {time.monotonic():.6f}\n")
            out.flush()
            return ApplyResult()

        return apply

    subscribers = [
        Subscriber(
            [address],
            role,
            token,
            recorder(f"{prefix}-{i}"),
            subscriber_id=f"{prefix}-{i}",
            backoff_base=0.05,
            backoff_max=0.5,
        )
        for i in range(count)
    ]
    running = [asyncio.create_task(s.run()) for s in subscribers]
    # SIGTERM (SubscriberWorkers.stop) is a clean shutdown, as a data plane's: each says
    # goodbye, so that the next measurement's waits do not hold for them.
    await wait_for_signal()
    await asyncio.gather(*(s.leave() for s in subscribers))
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


class SubscriberWorkers:
    """`count` subscribers of `role` spread over `processes` worker processes."""

    def __init__(
        self, address: str, role: str, token: str, count: int, processes: int, prefix: str
    ) -> None:
        self.ids: list[str] = []
        self._versions: dict[str, list[int]] = {}  # per subscriber, applied versions in order
        self._times: dict[str, list[float]] = {}
        self._cond = threading.Condition()
        self._procs: list[subprocess.Popen[bytes]] = []
        self._threads: list[threading.Thread] = []
        processes = max(1, min(processes, count))
        for w in range(processes):
            n = count // processes + (1 if w < count % processes else 0)
            worker_prefix = f"{prefix}-w{w}"
            self.ids += [f"{worker_prefix}-{i}" for i in range(n)]
            proc = subprocess.Popen(
                [PYTHON, "-m", "bench.subscribers", address, role, str(n), worker_prefix],
                cwd=REPO, env=clean_env() | {TOKEN_ENV: token},
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            self._procs.append(proc)
            thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
            thread.start()
            self._threads.append(thread)
        for sid in self.ids:
            self._versions[sid] = []
            self._times[sid] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                sid, version, at = raw.decode().split()
            except ValueError:
                continue
            with self._cond:
                self._versions.setdefault(sid, []).append(int(version))
                self._times.setdefault(sid, []).append(float(at))
                self._cond.notify_all()

    def _reached(self, sid: str, version: int) -> float | None:
        """When `sid` first applied `version` or a newer one (versions only go up)."""
        versions = self._versions[sid]
        i = bisect.bisect_left(versions, version)
        return self._times[sid][i] if i < len(versions) else None

    def wait_all(self, version: int, timeout: float) -> dict[str, float] | None:
        """Apply time of `version` per subscriber, once every one has it; None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                reached = {sid: self._reached(sid, version) for sid in self.ids}
                times = {sid: t for sid, t in reached.items() if t is not None}
                if len(times) == len(reached):
                    return times
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                for proc in self._procs:
                    if proc.poll() is not None:
                        raise RuntimeError(f"subscriber worker exited {proc.returncode}")
                self._cond.wait(min(remaining, 0.5))

    def missing(self, version: int) -> list[str]:
        with self._cond:
            return [sid for sid in self.ids if self._reached(sid, version) is None]

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for thread in self._threads:
            thread.join(5)


if __name__ == "__main__":
    address, role, count, prefix = sys.argv[1:5]
    try:
        asyncio.run(run(address, role, int(count), prefix, os.environ[TOKEN_ENV]))
    except KeyboardInterrupt:
        pass
