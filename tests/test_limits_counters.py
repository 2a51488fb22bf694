"""The limit counters (bridged/limits.py): the same cases on both backends, in-process and
in the real Redis at 127.0.0.1:6379 (a key prefix per test, its keys deleted after), with
a clock of the test's own; then what only Redis has: replicas sharing one limit, leases,
and Redis out of reach."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import pytest
import redis

from bridged.governance import CLOSED, OPEN, Check
from bridged.limits import (
    CONCURRENCY_RETRY_AFTER,
    CONCURRENT,
    REQUESTS,
    TOKENS,
    UNAVAILABLE,
    Admission,
    Counters,
    LocalCounters,
    RedisCounters,
    Refusal,
    redacted,
)
from tests.harness import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Make(Protocol):
    def __call__(self, clock: Clock | None = None, **kwargs: Any) -> Counters: ...


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"aibridge-test-{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["local", "redis"])
def make(request: pytest.FixtureRequest, prefix: str) -> Make:
    def local(clock: Clock | None = None, **kwargs: Any) -> Counters:
        return LocalCounters(clock or Clock())

    def remote(clock: Clock | None = None, **kwargs: Any) -> Counters:
        return RedisCounters(REDIS_URL, prefix, timeout=2.0, clock=clock, **kwargs)

    return local if request.param == "local" else remote


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


async def ended(counters: Counters, admission: Admission, tokens: int = 0) -> None:
    """Ends a call and, with Redis, waits for the end to be sent (it is off the call's path)."""
    counters.end(admission, tokens)
    if isinstance(counters, RedisCounters):
        assert await counters.flush()


async def close(counters: Counters) -> None:
    if isinstance(counters, RedisCounters):
        await counters.close()


def admitted(result: Admission | Refusal) -> Admission:
    assert isinstance(result, Admission), result
    return result


def refused(result: Admission | Refusal) -> Refusal:
    assert isinstance(result, Refusal), result
    return result


def rpm(key: str, limit: int, scope: str = "user:alice") -> tuple[Check, ...]:
    return (Check(key, rpm=limit, rpm_scope=scope),)


def test_requests_window_slides_second_by_second(make: Make) -> None:
    async def scenario() -> None:
        clock = Clock(1000.0)
        c = make(clock)
        try:
            checks = rpm("user:u1", 3)
            for t in (1000.0, 1000.5, 1010.2):
                clock.now = t
                admitted(await c.admit(f"r{t}", checks))
            r = refused(await c.admit("r4", checks))
            assert (r.key, r.kind, r.scope, r.limit, r.used, r.remaining) == (
                "user:u1", REQUESTS, "user:alice", 3, 3, 0,
            )  # fmt: skip
            # The oldest bucket (1000, two requests) leaves at 1060: 49.8 s, as 50.
            assert (r.retry_after, r.reset) == (50, 60)
            clock.now = 1059.99  # bucket 1000 is still in the window
            assert refused(await c.admit("r5", checks)).retry_after == 1
            clock.now = 1060.0
            admitted(await c.admit("r6", checks))
            admitted(await c.admit("r7", checks))  # two left it; 1010 and 1060 hold one each
            r = refused(await c.admit("r8", checks))
            assert (r.used, r.retry_after, r.reset) == (3, 10, 60)
        finally:
            await close(c)

    run(scenario)


def test_retry_after_is_when_enough_of_the_window_has_left(make: Make) -> None:
    async def scenario() -> None:
        clock = Clock(100.0)
        c = make(clock)
        try:
            tokens = (Check("token:t1", tpm=10, tpm_scope="token:ci"),)
            for t, n in ((100.0, 3), (110.0, 4), (120.0, 6)):
                clock.now = t
                await ended(c, admitted(await c.admit(f"r{t}", tokens)), n)
            clock.now = 130.5
            r = refused(await c.admit("late", tokens))
            # 13 tokens against 10: 4 must leave (bucket 100 is not enough, 110 is).
            assert (r.kind, r.scope, r.limit, r.used, r.remaining) == (
                TOKENS, "token:ci", 10, 13, 0,
            )  # fmt: skip
            assert r.retry_after == 40  # 110 + 60 − 130.5 = 39.5
            assert r.reset == 50  # 120 + 60 − 130.5 = 49.5
        finally:
            await close(c)

    run(scenario)


def test_tokens_are_counted_at_the_end_of_a_call(make: Make) -> None:
    async def scenario() -> None:
        clock = Clock()
        c = make(clock)
        try:
            checks = (Check("user:u1", tpm=100, tpm_scope="default (user:alice)"),)
            # Nothing is counted at admission: two calls start under an empty window.
            first = admitted(await c.admit("a", checks))
            second = admitted(await c.admit("b", checks))
            await ended(c, first, 60)
            admitted(await c.admit("c", checks))  # 60 < 100
            await ended(c, second, 45)
            r = refused(await c.admit("d", checks))
            assert (r.kind, r.used, r.remaining, r.reset) == (TOKENS, 105, 0, 60)
            assert r.scope == "default (user:alice)"
            # Ending again counts nothing more.
            await ended(c, second, 45)
            assert refused(await c.admit("e", checks)).used == 105
        finally:
            await close(c)

    run(scenario)


def test_every_check_must_pass_and_a_refusal_counts_nothing(make: Make) -> None:
    async def scenario() -> None:
        clock = Clock()
        c = make(clock)
        try:
            team = Check("team:ml", rpm=1, rpm_scope="team:ml")
            user = Check("user:u1", rpm=5, concurrent=5, rpm_scope="user:alice")
            admitted(await c.admit("first", (team,)))
            r = refused(await c.admit("both", (user, team)))
            assert (r.key, r.scope, r.used) == ("team:ml", "team:ml", 1)
            # The user's key counted neither the request nor the call in flight: 5 pass.
            held = [admitted(await c.admit(f"u{i}", (user,))) for i in range(5)]
            r = refused(await c.admit("u5", (user,)))
            assert (r.kind, r.used) == (CONCURRENT, 5)  # checked first, on both backends
            for a in held:
                await ended(c, a)
        finally:
            await close(c)

    run(scenario)


def test_concurrency_is_released_when_a_call_ends(make: Make) -> None:
    async def scenario() -> None:
        c = make(Clock())
        try:
            checks = (Check("user:u1", concurrent=2, concurrent_scope="user:alice"),)
            a = admitted(await c.admit("a", checks))
            b = admitted(await c.admit("b", checks))
            r = refused(await c.admit("c", checks))
            assert (r.kind, r.scope, r.limit, r.used, r.retry_after) == (
                CONCURRENT, "user:alice", 2, 2, CONCURRENCY_RETRY_AFTER,
            )  # fmt: skip
            await ended(c, a)
            await ended(c, a)  # once only: b still holds its place
            d = admitted(await c.admit("d", checks))
            assert isinstance(refused(await c.admit("e", checks)), Refusal)
            await ended(c, b)
            await ended(c, d)
            admitted(await c.admit("f", checks))
        finally:
            await close(c)

    run(scenario)


def test_a_changed_limit_keeps_the_counts(make: Make) -> None:
    async def scenario() -> None:
        c = make(Clock())
        try:
            for i in range(3):
                admitted(await c.admit(f"r{i}", rpm("user:u1", 3)))
            assert refused(await c.admit("r3", rpm("user:u1", 3))).used == 3
            raised = rpm("user:u1", 5)  # the same key, a new limit: the 3 still count
            admitted(await c.admit("r4", raised))
            admitted(await c.admit("r5", raised))
            assert refused(await c.admit("r6", raised)).used == 5
        finally:
            await close(c)

    run(scenario)


def test_local_counters_drop_windows_nothing_counts_in() -> None:
    async def scenario() -> None:
        clock = Clock(5000.0)
        c = LocalCounters(clock)
        for i in range(100):
            admitted(await c.admit(f"r{i}", (Check(f"token:t{i}", rpm=10, tpm=10),)))
        assert c.windows() == 100
        clock.now += 61
        admitted(await c.admit("late", rpm("token:other", 10)))
        assert c.windows() == 1

    run(scenario)


def test_two_replicas_never_admit_more_than_the_limit_together(prefix: str) -> None:
    async def scenario() -> None:
        replicas = [RedisCounters(REDIS_URL, prefix, timeout=5.0) for _ in range(2)]
        checks = (Check("team:ml", rpm=50, concurrent=30),)
        try:

            async def call(i: int) -> Admission | Refusal:
                return await replicas[i % 2].admit(f"r{i}", checks)

            results = await asyncio.gather(*(call(i) for i in range(200)))
            held = [r for r in results if isinstance(r, Admission)]
            assert len(held) == 30  # the concurrency limit first, exactly
            assert {r.kind for r in results if isinstance(r, Refusal)} == {CONCURRENT}
            for i, a in enumerate(held):
                replicas[i % 2].end(a, 0)
            for r in replicas:
                assert await r.flush()
            results = await asyncio.gather(*(call(i) for i in range(200, 400)))
            held = [r for r in results if isinstance(r, Admission)]
            assert len(held) == 20  # the 50 requests of the minute, with the first 30
        finally:
            for r in replicas:
                await r.close()

    run(scenario)


def test_leases_are_renewed_while_a_call_runs(prefix: str) -> None:
    async def scenario() -> None:
        holder = RedisCounters(REDIS_URL, prefix, timeout=2.0, lease=1.0, renew_every=0.2)
        other = RedisCounters(REDIS_URL, prefix, timeout=2.0, lease=1.0)
        checks = (Check("user:u1", concurrent=1),)
        renewing = asyncio.create_task(holder.run())
        try:
            call = admitted(await holder.admit("long", checks))
            started = await holder.redis.time()
            # Three leases later, the call still holds its place.
            await until(lambda: _seconds_since(holder, started), lambda s: s > 3.0)
            assert refused(await other.admit("next", checks)).kind == CONCURRENT
            holder.end(call, 0)  # sent by holder.run, off the call's path
            await until(lambda: other.admit("next", checks), _is_admission)
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            await holder.close()
            await other.close()

    run(scenario)


def test_a_crashed_holders_calls_stop_counting_when_their_lease_expires(prefix: str) -> None:
    async def scenario() -> None:
        crashed = RedisCounters(REDIS_URL, prefix, timeout=2.0, lease=1.0)
        other = RedisCounters(REDIS_URL, prefix, timeout=2.0, lease=1.0)
        checks = (Check("user:u1", concurrent=1),)
        try:
            admitted(await crashed.admit("orphan", checks))  # never renewed, never ended
            started = await other.redis.time()
            assert refused(await other.admit("next", checks)).kind == CONCURRENT
            await until(lambda: other.admit("next", checks), _is_admission)
            assert await _seconds_since(other, started) >= 0.9
        finally:
            await crashed.close()
            await other.close()

    run(scenario)


def test_scripts_are_loaded_again_when_redis_has_forgotten_them(prefix: str) -> None:
    async def scenario() -> None:
        c = RedisCounters(REDIS_URL, prefix, timeout=2.0)
        try:
            c._admit.sha = "0" * 40  # as after a SCRIPT FLUSH or a failover: NOSCRIPT
            admitted(await c.admit("r", rpm("user:u1", 1)))
            assert refused(await c.admit("r2", rpm("user:u1", 1))).used == 1
        finally:
            await c.close()

    run(scenario)


def test_unreachable_redis_admits_uncounted_when_open_and_refuses_when_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"  # nothing listens there

    async def scenario() -> None:
        c = RedisCounters(url, "aibridge-test:", timeout=0.25)
        checks = (Check("user:u1", rpm=1, concurrent=1),)
        try:
            before = _redis_errors()
            first = admitted(await c.admit("a", checks, OPEN))
            assert not first.counted
            assert _redis_errors() == before + 1
            admitted(await c.admit("b", checks, OPEN))  # nothing was counted
            r = refused(await c.admit("c", checks, CLOSED))
            assert (r.kind, r.retry_after) == (UNAVAILABLE, 1)
            assert _redis_errors() == before + 3
            c.end(first, 100)  # its tokens are not counted: only releases, in case
            assert all(op.startswith("-") for _, op in c._pending)
        finally:
            await c.close()

    with caplog.at_level("WARNING", logger="bridged.limits"):
        run(scenario)
    lines = [r.getMessage() for r in caplog.records if r.name == "bridged.limits"]
    assert len(lines) == 1  # one line per 10 s, not one per call
    assert "unavailable" in lines[0] and "hunter2" not in lines[0]
    assert redacted(url) == f"redis://127.0.0.1:{url.rsplit(':', 1)[1]}"


def _redis_errors() -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("aibridge_bridged_limits_redis_errors_total")
    return value or 0.0


def _is_admission(result: object) -> bool:
    return isinstance(result, Admission)


async def _seconds_since(c: RedisCounters, started: tuple[int, int]) -> float:
    now = await c.redis.time()
    return (now[0] - started[0]) + (now[1] - started[1]) / 1e6


async def until(
    probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float = 15.0
) -> Any:
    """wait_until for coroutines: polls `probe` until `done` holds, within `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout}s: last {value!r}")
        await asyncio.sleep(0.05)


def test_a_tpm_limit_set_while_calls_are_in_flight_counts_them(make: Make) -> None:
    async def scenario() -> None:
        c = make(Clock())
        try:
            # Admitted under a requests limit only; a tokens limit on the same key since.
            call = admitted(await c.admit("a", rpm("user:u1", 10)))
            await ended(c, call, 50)
            r = refused(await c.admit("b", (Check("user:u1", tpm=40, tpm_scope="user:alice"),)))
            assert (r.kind, r.used) == (TOKENS, 50)
        finally:
            await close(c)

    run(scenario)


def test_300_admissions_at_once_share_round_trips_and_never_fail(prefix: str) -> None:
    async def scenario() -> None:
        c = RedisCounters(REDIS_URL, prefix, timeout=2.0)
        checks = (Check("team:ml", concurrent=100),)
        before = _redis_errors()
        try:
            results = await asyncio.gather(*(c.admit(f"r{i}", checks) for i in range(300)))
            assert sum(isinstance(r, Admission) for r in results) == 100
            assert {r.kind for r in results if isinstance(r, Refusal)} == {CONCURRENT}
            assert all(isinstance(r, Refusal) or r.counted for r in results)
            assert _redis_errors() == before
            assert c.round_trips < 300  # batched per event-loop tick
        finally:
            await c.close()

    run(scenario)


def test_a_burst_on_fresh_counters_counts_exactly_at_the_default_timeout(prefix: str) -> None:
    async def scenario() -> None:
        c = RedisCounters(REDIS_URL, prefix)  # 0.25 s a check
        before = _redis_errors()
        try:
            await c.start()
            results = await asyncio.gather(
                *(c.admit(f"r{i}", rpm("user:u1", 30)) for i in range(50))
            )
            assert sum(isinstance(r, Admission) and r.counted for r in results) == 30
            assert sum(isinstance(r, Refusal) and r.kind == REQUESTS for r in results) == 20
            # Redis forgot the script (a failover): one load for the whole burst.
            loads = c.script_loads
            c._admit.sha = "0" * 40
            results = await asyncio.gather(
                *(c.admit(f"s{i}", rpm("user:u2", 30)) for i in range(50))
            )
            assert sum(isinstance(r, Admission) and r.counted for r in results) == 30
            assert c.script_loads == loads + 1
            assert _redis_errors() == before
        finally:
            await c.close()

    run(scenario)


def test_a_batch_of_ends_sent_twice_counts_once(prefix: str) -> None:
    async def scenario() -> None:
        c = RedisCounters(REDIS_URL, prefix, timeout=2.0, clock=Clock())
        checks = (Check("user:u1", tpm=100, concurrent=5),)
        try:
            c.end(admitted(await c.admit("a", checks)), 60)
            batch = list(c._pending)
            assert await c.flush()
            # Its reply was lost: flush sends the same batch again, with its id.
            c._unsent = [(f"{c._instance}:{c._batches}", batch)]
            assert await c.flush()
            r = refused(await c.admit("b", (Check("user:u1", tpm=60),)))
            assert r.used == 60
        finally:
            await c.close()

    run(scenario)


def test_ends_cancelled_at_shutdown_are_sent_by_close(prefix: str) -> None:
    async def scenario() -> None:
        c = RedisCounters(REDIS_URL, prefix, timeout=2.0, clock=Clock())
        checks = (Check("user:u1", tpm=100, concurrent=1),)
        other = RedisCounters(REDIS_URL, prefix, timeout=2.0, clock=Clock())
        try:
            c.end(admitted(await c.admit("a", checks)), 70)
            flushing = asyncio.create_task(c.flush())
            await asyncio.sleep(0)  # it has taken the ends and waits for Redis
            flushing.cancel()
            await asyncio.gather(flushing, return_exceptions=True)
            await c.close()
            r = refused(await other.admit("b", (Check("user:u1", tpm=70),)))
            assert r.used == 70
            admitted(await other.admit("c", (Check("user:u1", concurrent=1),)))
        finally:
            await other.close()

    run(scenario)


def test_a_place_released_before_its_late_admission_ran_goes_at_the_next_renewal(
    prefix: str,
) -> None:
    async def scenario() -> None:
        c = RedisCounters(REDIS_URL, prefix, timeout=2.0)
        checks = (Check("user:u1", concurrent=1),)
        key = c.key(CONCURRENT, "user:u1")
        try:
            await c.start()
            # The call gave up on its admission (no answer): released, ZREM sent...
            c._abandoned(_failed_future(), "late", [key])
            assert await c.flush()
            # ...and then the admission ran after all (it was still queued in Redis).
            await c.redis.evalsha(c._admit.sha, 1, key, "late", c.lease_ms, "", "c", 1)
            assert await c.redis.zcard(key) == 1
            await c.renew()
            assert await c.flush()
            assert await c.redis.zcard(key) == 0
            admitted(await c.admit("next", checks))
        finally:
            await c.close()

    run(scenario)


def _failed_future() -> asyncio.Future[Any]:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.set_exception(TimeoutError())
    return done


def test_a_redis_that_swallows_packets_costs_one_timeout_then_decides_at_once() -> None:
    async def scenario() -> None:
        held: list[asyncio.StreamWriter] = []

        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # reads nothing, answers nothing

        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        c = RedisCounters(f"redis://127.0.0.1:{port}/0", "aibridge-test:", timeout=0.25)
        checks = (Check("user:u1", rpm=1),)
        try:
            assert not admitted(await c.admit("a", checks, OPEN)).counted
            assert c.round_trips == 1
            # The breaker is open: decided without asking Redis.
            assert not admitted(await c.admit("b", checks, OPEN)).counted
            assert refused(await c.admit("c", checks, CLOSED)).kind == UNAVAILABLE
            assert c.round_trips == 1
            c._down_until = 0.0  # its second is over: the next call probes
            assert not admitted(await c.admit("d", checks, OPEN)).counted
            assert c.round_trips == 2
        finally:
            for w in held:
                w.close()
            server.close()
            await c.close()

    run(scenario)


def test_redacted_drops_credentials_from_the_query_too() -> None:
    url = "redis://h:6379/0?username=bob&password=hunter2&db=1"
    assert "hunter2" not in redacted(url) and "bob" not in redacted(url)
    assert "db=1" in redacted(url)
