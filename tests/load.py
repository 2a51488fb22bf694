"""Background load for fault tests: a thread that keeps sending requests, bounded in count
and in time, and remembers every failure, so a test can say "not one request failed while
I broke things"."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import httpx

# A request: given the loop's client, None when the answer was right, else what was wrong.
Send = Callable[[httpx.Client], "str | None"]


class LoadLoop:
    """Calls `send` over and over from one thread, `pace` seconds apart, until stopped, or
    until `max_requests` or `max_seconds` is reached. The client comes from `make_client`
    and is replaced every `reconnect_every` requests (0: never), so new connections are
    made throughout, not only at the start."""

    def __init__(
        self,
        name: str,
        make_client: Callable[[], httpx.Client],
        send: Send,
        *,
        pace: float = 0.01,
        max_requests: int = 5000,
        max_seconds: float = 60.0,
        reconnect_every: int = 0,
    ) -> None:
        self.name = name
        self.make_client = make_client
        self.send = send
        self.pace = pace
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.reconnect_every = reconnect_every
        self.count = 0
        self.failures: list[str] = []
        self.ended_by = ""  # "stop", "max_requests" or "max_seconds"
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"load-{name}", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> Self:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"load loop {self.name} did not stop"
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def successes(self) -> int:
        return self.count - len(self.failures)

    def wait_for_requests(self, more: int, timeout: float = 15.0) -> None:
        """Waits until `more` requests have completed from now on (the loop is really
        running through whatever the test does meanwhile)."""
        deadline = time.monotonic() + timeout
        with self._progress:
            target = self.count + more
            while self.count < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    raise AssertionError(
                        f"load loop {self.name}: {self.count}/{target} requests after "
                        f"{timeout}s (ended by {self.ended_by or 'nothing'})"
                    )
                self._progress.wait(min(remaining, 0.1))

    def assert_no_failures(self, at_least: int = 1) -> None:
        assert not self.failures, (
            f"load loop {self.name}: {len(self.failures)} of {self.count} requests failed, "
            f"first: {self.failures[:5]}"
        )
        assert self.count >= at_least, f"load loop {self.name} sent only {self.count}"
        assert self.ended_by == "stop", f"load loop {self.name} ended by {self.ended_by}"

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        client = self.make_client()
        try:
            while True:
                if self._stop.is_set():
                    self.ended_by = "stop"
                    return
                if self.count >= self.max_requests:
                    self.ended_by = "max_requests"
                    return
                if time.monotonic() > deadline:
                    self.ended_by = "max_seconds"
                    return
                if self.reconnect_every and self.count and self.count % self.reconnect_every == 0:
                    client.close()
                    client = self.make_client()
                started = time.monotonic()
                try:
                    problem = self.send(client)
                except Exception as exc:  # every failure is recorded, none ends the loop
                    problem = repr(exc)
                with self._progress:
                    if problem is not None:
                        self.failures.append(f"#{self.count} at {time.time():.3f}: {problem}")
                    self.count += 1
                    self._progress.notify_all()
                pause = self.pace - (time.monotonic() - started)
                if pause > 0:
                    self._stop.wait(pause)  # pacing only; stop() cuts it short
        finally:
            client.close()


def chat_send(url: str, expect: str, headers: dict[str, str] | None = None) -> Send:
    """A non-streaming chat completion to `url`; right when it is 200 and says `expect`."""

    def send(client: httpx.Client) -> str | None:
        response = client.post(
            url, headers=headers or {},
            json={"model": "load", "messages": [{"role": "user", "content": "hi"}]},
        )  # fmt: skip
        if response.status_code != 200:
            return f"{response.status_code} {response.text[:300]}"
        content = response.json()["choices"][0]["message"]["content"]
        return None if content == expect else f"answered {content!r}"

    return send


def direct_client(timeout: float = 10.0) -> Callable[[], httpx.Client]:
    return lambda: httpx.Client(timeout=timeout)


def proxied_client(
    proxy_url: str, ca_path: Path, timeout: float = 10.0
) -> Callable[[], httpx.Client]:
    """An HTTPS_PROXY-style client that trusts the proxy's CA."""

    def make() -> httpx.Client:
        trust = ssl.create_default_context(cafile=str(ca_path))
        return httpx.Client(proxy=proxy_url, verify=trust, timeout=timeout)

    return make


@contextlib.contextmanager
def all_running(loops: list[LoadLoop], warm_up: int = 20) -> Iterator[list[LoadLoop]]:
    """Runs every loop, once each has served `warm_up` requests."""
    with contextlib.ExitStack() as running:
        for loop in loops:
            running.enter_context(loop)
        for loop in loops:
            loop.wait_for_requests(warm_up)
        yield loops
