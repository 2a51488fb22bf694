"""The limit counters: requests and tokens per minute, and calls in flight, per scope key.

Two backends, one interface and exactly the same semantics: LocalCounters, in this
process (exact for one bridged), and RedisCounters (--limits-redis), shared by every
bridged that uses the same Redis and prefix.

- Rate: per key and kind (requests, tokens), a sliding window of the last 60 one-second
  buckets (bucket = floor(unix seconds); the window holds the buckets s > now − 60). A
  call passes while the window's sum is under the limit; its request is added to the
  current bucket when it is admitted, its tokens (all input, cached too, and output:
  bridged/usage.py Usage.tpm_tokens) when it ends.
- Concurrency: per key, the ids of the calls in flight; a call passes while there are
  fewer than the limit.
- All the checks of a call are decided together: one that fails adds nothing anywhere.

Counter keys hold neither the limit nor the revision: a changed limit keeps its counts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from yarl import URL

from bridged import metrics
from bridged.governance import CLOSED, Check

log = logging.getLogger(__name__)

WINDOW = 60  # seconds, as one-second buckets
REQUESTS = "requests"
TOKENS = "tokens"
CONCURRENT = "concurrent"
UNAVAILABLE = "unavailable"  # the counters could not be reached and the setting is closed
# Retry-After of a concurrency refusal. Not 1: an SDK retries twice, so within ~2 s it
# would give up, while the call holding the place may stream for minutes.
CONCURRENCY_RETRY_AFTER = 5


class Refusal(NamedTuple):
    key: str
    kind: str  # requests, tokens, concurrent or unavailable
    scope: str  # the scope of the limit that refused, as a message names it
    limit: int
    used: int  # the window's sum, or the calls in flight
    reset: int  # seconds until the window is empty
    retry_after: int  # seconds until this call would pass (at least 1)

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(slots=True, eq=False)
class Admission:
    """An admitted call: what its end must release."""

    request_id: str
    checks: tuple[Check, ...]
    counted: bool = True  # False: admitted uncounted (Redis unreachable, setting open)
    ended: bool = False


class Counters(Protocol):
    async def admit(
        self, request_id: str, checks: tuple[Check, ...], unavailable: str = "open"
    ) -> Admission | Refusal: ...

    def end(self, admission: Admission, tokens: int) -> None:
        """The call is over: out of the concurrency sets, its tokens counted. Idempotent,
        and never waits (it runs in a request's `finally`, even on cancellation)."""


def waits(
    buckets: Sequence[tuple[int, int]], total: int, limit: int, now: float
) -> tuple[int, int]:
    """(reset, retry_after) of a full window: seconds until it is empty, and until enough
    of it (oldest buckets first) has dropped out for a call to pass (sum < limit)."""
    newest = max(s for s, _ in buckets)
    need = total - limit + 1
    dropped = 0
    retry_at = newest
    for s, count in sorted(buckets):
        dropped += count
        if dropped >= need:
            retry_at = s
            break
    reset = max(0, math.ceil(newest + WINDOW - now))
    return reset, max(1, math.ceil(retry_at + WINDOW - now))


class _Window:
    """One key's buckets of one kind, oldest first, and their sum."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()
        self.total = 0

    def expire(self, now_s: int) -> None:
        buckets = self.buckets
        while buckets and buckets[0][0] <= now_s - WINDOW:
            self.total -= buckets.popleft()[1]

    def add(self, now_s: int, count: int) -> None:
        if self.buckets and self.buckets[-1][0] >= now_s:  # this second (or a clock step back)
            self.buckets[-1][1] += count
        else:
            self.buckets.append([now_s, count])
        self.total += count


class LocalCounters:
    """In this process: one event loop, so each call's checks are atomic as they are."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._requests: dict[str, _Window] = {}
        self._tokens: dict[str, _Window] = {}
        self._in_flight: dict[str, set[str]] = {}
        self._swept = 0

    async def admit(
        self, request_id: str, checks: tuple[Check, ...], unavailable: str = "open"
    ) -> Admission | Refusal:
        now = self.clock()
        now_s = math.floor(now)
        if now_s - self._swept >= WINDOW:
            self._sweep(now_s)
        for c in checks:
            if c.concurrent:
                held = self._in_flight.get(c.key)
                if held is not None and len(held) >= c.concurrent:
                    return Refusal(
                        c.key, CONCURRENT, c.concurrent_scope, c.concurrent, len(held),
                        CONCURRENCY_RETRY_AFTER, CONCURRENCY_RETRY_AFTER,
                    )  # fmt: skip
            if c.rpm:
                refusal = self._rate(self._requests, c.key, REQUESTS, c.rpm, c.rpm_scope, now)
                if refusal is not None:
                    return refusal
            if c.tpm:
                refusal = self._rate(self._tokens, c.key, TOKENS, c.tpm, c.tpm_scope, now)
                if refusal is not None:
                    return refusal
        for c in checks:
            if c.concurrent:
                self._in_flight.setdefault(c.key, set()).add(request_id)
            if c.rpm:
                _window(self._requests, c.key).add(now_s, 1)
        return Admission(request_id, checks)

    def end(self, admission: Admission, tokens: int) -> None:
        if admission.ended:
            return
        admission.ended = True
        if not admission.counted:
            return
        now_s = math.floor(self.clock())
        for c in admission.checks:
            if c.concurrent:
                held = self._in_flight.get(c.key)
                if held is not None:
                    held.discard(admission.request_id)
                    if not held:
                        del self._in_flight[c.key]
            if tokens > 0:  # every key: a tpm limit set since the admission counts it too
                _window(self._tokens, c.key).add(now_s, tokens)

    def in_flight(self, key: str) -> int:
        return len(self._in_flight.get(key, ()))

    def windows(self) -> int:
        """Windows held (a bound on memory: empty ones are dropped)."""
        return len(self._requests) + len(self._tokens)

    def _rate(
        self, windows: dict[str, _Window], key: str, kind: str, limit: int, scope: str,
        now: float,
    ) -> Refusal | None:  # fmt: skip
        w = windows.get(key)
        if w is None:
            return None
        w.expire(math.floor(now))
        if w.total < limit:
            return None
        reset, retry_after = waits([(s, n) for s, n in w.buckets], w.total, limit, now)
        return Refusal(key, kind, scope, limit, w.total, reset, retry_after)

    def _sweep(self, now_s: int) -> None:
        """Drops the windows nothing has counted in for a minute: memory stays bounded by
        the keys of the last minute's calls."""
        self._swept = now_s
        for windows in (self._requests, self._tokens):
            for key, w in list(windows.items()):
                w.expire(now_s)
                if not w.buckets:
                    del windows[key]


def _window(windows: dict[str, _Window], key: str) -> _Window:
    w = windows.get(key)
    if w is None:
        w = windows[key] = _Window()
    return w


# Each script's clock: Redis's own, so that every bridged agrees; tests may give theirs
# ("" = Redis's).
CLOCK = """
local function clock(given)
  if given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS: one per limit checked. ARGV: request id, lease (ms), clock, then per key its
# kind (c: concurrency, r: requests, t: tokens) and limit. Returns 0 when admitted (the
# request counted in each requests window, the id added to each concurrency set), or
# {index of the refusing key, used, reset, retry_after}.
ADMIT = (
    CLOCK
    + """
local now = clock(ARGV[3])
local now_s = math.floor(now)
local now_ms = math.floor(now * 1000)
local lease = tonumber(ARGV[2])
for i = 1, #KEYS do
  local key, kind, limit = KEYS[i], ARGV[2 + 2 * i], tonumber(ARGV[3 + 2 * i])
  if kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
    local count = redis.call('ZCARD', key)
    if count >= limit then return {i, count, 1, 1} end
  else
    local h = redis.call('HGETALL', key)
    local sum, buckets, stale = 0, {}, {}
    for j = 1, #h, 2 do
      local s, n = tonumber(h[j]), tonumber(h[j + 1])
      if s > now_s - 60 then
        sum = sum + n
        buckets[#buckets + 1] = {s, n}
      else
        stale[#stale + 1] = h[j]
      end
    end
    if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
    if sum >= limit then
      table.sort(buckets, function(a, b) return a[1] < b[1] end)
      local newest = buckets[#buckets][1]
      local need, dropped, retry_at = sum - limit + 1, 0, newest
      for _, b in ipairs(buckets) do
        dropped = dropped + b[2]
        if dropped >= need then retry_at = b[1] break end
      end
      local reset = math.max(0, math.ceil(newest + 60 - now))
      return {i, sum, reset, math.max(1, math.ceil(retry_at + 60 - now))}
    end
  end
end
for i = 1, #KEYS do
  local key, kind = KEYS[i], ARGV[2 + 2 * i]
  if kind == 'c' then
    redis.call('ZADD', key, now_ms + lease, ARGV[1])
    if redis.call('PTTL', key) < lease + 1000 then redis.call('PEXPIRE', key, lease + 1000) end
  elseif kind == 'r' then
    redis.call('HINCRBY', key, now_s, 1)
    redis.call('PEXPIRE', key, 61000)
  end
end
return 0
"""
)

# The ends of calls, batched, applied once. KEYS: this batch's mark, then concurrency
# sets and token windows; ARGV: clock, then per key "-<request id>" (out of the set) or
# "+<tokens>" (added to this second's bucket). A batch sent again (its reply was lost)
# finds its mark and changes nothing: tokens are never counted twice.
END = (
    CLOCK
    + """
if not redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then return 1 end
local now_s = math.floor(clock(ARGV[2]))
for i = 2, #KEYS do
  local op, value = string.sub(ARGV[i + 1], 1, 1), string.sub(ARGV[i + 1], 2)
  if op == '-' then
    redis.call('ZREM', KEYS[i], value)
  else
    redis.call('HINCRBY', KEYS[i], now_s, tonumber(value))
    redis.call('PEXPIRE', KEYS[i], 61000)
  end
end
return 0
"""
)

# Lease renewal of this process's calls in flight. KEYS: concurrency sets; ARGV: the
# lease (ms), clock, then a request id per key. XX: a lease that expired stays gone.
RENEW = (
    CLOCK
    + """
local now_ms = math.floor(clock(ARGV[2]) * 1000)
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now_ms + lease, ARGV[i + 2])
  if redis.call('PTTL', KEYS[i]) < lease + 1000 then
    redis.call('PEXPIRE', KEYS[i], lease + 1000)
  end
end
return 0
"""
)

BATCH = 500  # keys per script call of the background work: Redis runs one at a time
MAX_PENDING = 100_000  # ends kept while Redis cannot take them
# How long an end waits for others to share its round trip: a call's place in a
# concurrency set outlives it by this much at most.
END_BATCH_DELAY = 0.005
END_MARK_MS = 120_000  # how long a batch of ends is remembered as applied
LOG_EVERY = 10.0  # seconds between two log lines about an unreachable Redis
# Admission pipelines in flight at once (each on its own connection); the admissions that
# arrive meanwhile wait for the next. The pool is sized for them: it is never exhausted.
ADMIT_PIPELINES = 4
BACKGROUND_CONNECTIONS = 2  # the ends and the renewals (and the scripts' loading)
# The background work is off every call's path: it may wait longer than a call's check.
BACKGROUND_TIMEOUT = 5.0
# After a failed exchange, calls are decided without Redis (open or closed, as the
# setting says) for this long, then one call probes it: a Redis that swallows packets
# costs one timeout a second, not one per call.
BREAKER_SECONDS = 1.0
RELEASED_KEPT = 10_000  # places released in doubt, removed again at the next renewal


class _Waiting(NamedTuple):
    keys: list[str]
    args: list[Any]
    done: asyncio.Future[Any]


class RedisCounters:
    def __init__(
        self, url: str, prefix: str = "aibridge:", timeout: float = 0.25,
        lease: float = 60.0, renew_every: float = 20.0,
        clock: Callable[[], float] | None = None,
    ) -> None:  # fmt: skip
        """`clock`: for tests only; by default every script reads Redis's own."""
        self.prefix = prefix
        self.timeout = timeout
        self.lease_ms = int(lease * 1000)
        self.renew_every = renew_every
        self.clock = clock
        self.where = redacted(url)
        # No retries: a call's check has its timeout, and a script retried after a lost
        # reply would count the call twice. What fails is decided by the setting.
        self.redis = _client(url, timeout, ADMIT_PIPELINES)
        self.background = _client(url, BACKGROUND_TIMEOUT, BACKGROUND_CONNECTIONS)
        self._admit = self.redis.register_script(ADMIT)
        self._end = self.background.register_script(END)
        self._renew = self.background.register_script(RENEW)
        self._in_flight: dict[str, list[str]] = {}  # request id → its concurrency sets
        self._pending: list[tuple[str, str]] = []  # ends not in a batch yet: (key, op)
        self._unsent: list[tuple[str, list[tuple[str, str]]]] = []  # (batch id, ends)
        self._batches = 0
        self._instance = uuid.uuid4().hex[:12]
        self._released: deque[tuple[str, str]] = deque(maxlen=RELEASED_KEPT)
        self._wake = asyncio.Event()
        self._logged = -math.inf
        self._waiting: list[_Waiting] = []  # admissions for the next pipeline
        self._scheduled = False
        self._pipelines: set[asyncio.Task[None]] = set()  # admission pipelines in flight
        self._loading: asyncio.Future[None] | None = None
        self._down_until = -math.inf  # the breaker: open until then
        self._probing = False
        self.round_trips = 0  # admission pipelines sent (tests count them)
        self.script_loads = 0

    def key(self, kind: str, key: str) -> str:
        return f"{self.prefix}{kind}:{key}"

    async def start(self) -> None:
        """Before the first calls: the scripts loaded and a connection open, so that no
        call's check pays for them; a cluster reported. Redis out of reach: said, and the
        calls will find out."""
        try:
            async with asyncio.timeout(BACKGROUND_TIMEOUT):
                await self._load_scripts()
                await asyncio.gather(*(self.redis.ping() for _ in range(ADMIT_PIPELINES)))
                cluster = await self.background.info("cluster")
        except (RedisError, OSError, TimeoutError) as exc:
            self.failed(exc, "not ready yet")
            return
        if str(cluster.get("cluster_enabled", 0)) == "1":
            log.error(
                "limit counters at %s: Redis runs in cluster mode; the counters need a "
                "standalone Redis (or a primary without cluster mode): a call's keys span "
                "slots (CROSSSLOT)",
                self.where,
            )

    async def admit(
        self, request_id: str, checks: tuple[Check, ...], unavailable: str = "open"
    ) -> Admission | Refusal:
        keys: list[str] = []
        args: list[Any] = [request_id, self.lease_ms, self._now()]
        which: list[tuple[Check, str]] = []
        sets: list[str] = []
        for c in checks:
            if c.concurrent:
                sets.append(self.key(CONCURRENT, c.key))
                keys.append(sets[-1])
                args += ("c", c.concurrent)
                which.append((c, CONCURRENT))
            if c.rpm:
                keys.append(self.key(REQUESTS, c.key))
                args += ("r", c.rpm)
                which.append((c, REQUESTS))
            if c.tpm:
                keys.append(self.key(TOKENS, c.key))
                args += ("t", c.tpm)
                which.append((c, TOKENS))
        probe = False
        if self._down_until != -math.inf:  # the breaker is open
            if time.monotonic() < self._down_until or self._probing:
                return self._without_redis(request_id, checks, unavailable, None)
            probe = self._probing = True
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiting = _Waiting(keys, args, done)
        self._waiting.append(waiting)
        self._schedule()
        try:
            async with asyncio.timeout(self.timeout):
                result = await asyncio.shield(done)
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip()
            self._give_up(waiting, request_id, sets)
            return self._without_redis(request_id, checks, unavailable, exc)
        except asyncio.CancelledError:  # the client left
            self._give_up(waiting, request_id, sets)
            raise
        finally:
            if probe:
                self._probing = False
        self._down_until = -math.inf
        if result == 0:
            if sets:
                self._in_flight[request_id] = sets
            return Admission(request_id, checks)
        index, used, reset, retry_after = (int(v) for v in result)
        c, kind = which[index - 1]
        limit, scope = {
            CONCURRENT: (c.concurrent, c.concurrent_scope),
            REQUESTS: (c.rpm, c.rpm_scope),
            TOKENS: (c.tpm, c.tpm_scope),
        }[kind]
        if kind == CONCURRENT:
            reset = retry_after = CONCURRENCY_RETRY_AFTER
        return Refusal(c.key, kind, scope, limit, used, reset, retry_after)

    def end(self, admission: Admission, tokens: int) -> None:
        if admission.ended:
            return
        admission.ended = True
        if not admission.counted:
            return
        self._in_flight.pop(admission.request_id, None)
        for c in admission.checks:
            if c.concurrent:
                self._pending.append((self.key(CONCURRENT, c.key), "-" + admission.request_id))
            if tokens > 0:  # every key: a tpm limit set since the admission counts it too
                self._pending.append((self.key(TOKENS, c.key), f"+{tokens}"))
        self._wake.set()

    async def run(self) -> None:
        """Loads the scripts, then sends the ends of calls and renews the leases of the
        calls in flight, until cancelled (supervised)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.start())
            tasks.create_task(self._send_ends())
            tasks.create_task(self._renew_leases())

    async def close(self) -> None:
        """The last ends, then the connections."""
        for task in list(self._pipelines):  # admissions nobody waits for any more
            task.cancel()
        await asyncio.gather(*self._pipelines, return_exceptions=True)
        if self._pending or self._unsent:
            await self.flush()
        await self.redis.aclose()
        await self.background.aclose()

    async def flush(self) -> bool:
        """Sends the ends taken so far; False (and they are kept) if Redis did not take them.
        A batch whose reply was lost is sent again with its id: applied once."""
        for i in range(0, len(self._pending), BATCH):
            self._batches += 1
            self._unsent.append((f"{self._instance}:{self._batches}", self._pending[i : i + BATCH]))
        self._pending = []
        batches, self._unsent = self._unsent, []
        sent = 0
        try:
            for batch_id, batch in batches:
                keys = [f"{self.prefix}end:{batch_id}", *(k for k, _ in batch)]
                args = [END_MARK_MS, self._now(), *(op for _, op in batch)]
                async with asyncio.timeout(BACKGROUND_TIMEOUT):
                    await self._background(self._end, keys, args)
                sent += 1
        except (RedisError, OSError, TimeoutError) as exc:
            self.failed(exc, "the ends of calls wait")
            self._keep(batches[sent:])
            return False
        except asyncio.CancelledError:  # shutting down: close() sends them
            self._keep(batches[sent:])
            raise
        return True

    async def renew(self) -> None:
        """Renews the leases of the calls in flight; removes again the places released
        in doubt since the last time (their admission may have run after the release)."""
        pairs = [(k, rid) for rid, sets in self._in_flight.items() for k in sets]
        released = list(self._released)
        self._released.clear()
        if released:
            self._pending += ((k, "-" + rid) for k, rid in released)
            self._wake.set()
        try:
            for i in range(0, len(pairs), BATCH):
                batch = pairs[i : i + BATCH]
                async with asyncio.timeout(BACKGROUND_TIMEOUT):
                    args: list[str | int] = [self.lease_ms, self._now(), *(r for _, r in batch)]
                    await self._background(self._renew, [k for k, _ in batch], args)
        except (RedisError, OSError, TimeoutError) as exc:
            self.failed(exc, "leases not renewed")

    def failed(self, exc: BaseException | None, consequence: str) -> None:
        metrics.LIMITS_REDIS_ERRORS.inc()
        now = time.monotonic()
        if now - self._logged >= LOG_EVERY:
            self._logged = now
            log.warning(
                "limit counters at %s unavailable (%s): %s",
                self.where, type(exc).__name__ if exc else "recent failure", consequence,
            )  # fmt: skip

    def _without_redis(
        self, request_id: str, checks: tuple[Check, ...], unavailable: str,
        exc: BaseException | None,
    ) -> Admission | Refusal:  # fmt: skip
        self.failed(exc, "refusing calls" if unavailable == CLOSED else "admitting calls")
        if unavailable == CLOSED:
            return Refusal("", UNAVAILABLE, "", 0, 0, 1, 1)
        return Admission(request_id, checks, counted=False)

    def _trip(self) -> None:
        self._down_until = time.monotonic() + BREAKER_SECONDS

    def _schedule(self) -> None:
        """The admissions of this event-loop tick go together, in one pipeline."""
        if not self._scheduled and len(self._pipelines) < ADMIT_PIPELINES:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._scheduled = False
        if not self._waiting or len(self._pipelines) >= ADMIT_PIPELINES:
            return
        waiting, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._send_admissions(waiting))
        self._pipelines.add(task)
        task.add_done_callback(self._dispatched)

    def _dispatched(self, task: asyncio.Task[None]) -> None:
        self._pipelines.discard(task)
        if self._waiting:
            self._schedule()

    async def _send_admissions(self, waiting: list[_Waiting]) -> None:
        """One round trip for them all, each script atomic on its own (no MULTI). Scripts
        Redis has forgotten are loaded (once, whoever asks) and sent again: they did not run."""
        try:
            for _ in range(2):
                self.round_trips += 1
                pipe = self.redis.pipeline(transaction=False)
                for w in waiting:
                    pipe.evalsha(self._admit.sha, len(w.keys), *w.keys, *w.args)
                results = await pipe.execute(raise_on_error=False)
                again: list[_Waiting] = []
                for w, result in zip(waiting, results, strict=True):
                    if isinstance(result, NoScriptError):
                        again.append(w)
                    elif isinstance(result, BaseException):
                        _settle(w.done, exc=result)
                    else:
                        _settle(w.done, result)
                if not again:
                    return
                await self._load_scripts()
                waiting = again
            for w in waiting:
                _settle(w.done, exc=NoScriptError("the script could not be loaded"))
        except BaseException as exc:
            for w in waiting:
                _settle(w.done, exc=exc if isinstance(exc, Exception) else RedisError(repr(exc)))
            if not isinstance(exc, Exception):
                raise

    async def _load_scripts(self) -> None:
        """Loads the scripts into Redis: one load at a time, shared by all who ask."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
            self._loading.add_done_callback(_consumed)
        loading = self._loading
        try:
            await asyncio.shield(loading)
        finally:
            if self._loading is loading and loading.done():
                self._loading = None

    async def _load(self) -> None:
        self.script_loads += 1
        for script in (self._admit, self._end, self._renew):
            script.sha = await self.background.script_load(script.script)

    async def _background(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.background.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:  # it did not run
            await self._load_scripts()
            return await self.background.evalsha(script.sha, len(keys), *keys, *args)

    def _give_up(self, waiting: _Waiting, request_id: str, sets: list[str]) -> None:
        """The call no longer waits for its admission: not sent yet, it never will be;
        sent, its places go when (or if) it ran."""
        for i, w in enumerate(self._waiting):
            if w is waiting:
                del self._waiting[i]
                waiting.done.cancel()
                return
        waiting.done.add_done_callback(lambda f: self._abandoned(f, request_id, sets))

    def _abandoned(self, done: asyncio.Future[Any], request_id: str, sets: list[str]) -> None:
        """An admission its call gave up on: if it ran (or may have), its places go."""
        if done.cancelled():
            return
        failure = done.exception()  # read, whatever follows: never left unretrieved
        if not sets or (failure is None and done.result() != 0):
            return  # nothing held
        if failure is not None:  # no answer: it may run later; again at renewal
            self._released.extend((k, request_id) for k in sets)
        self._release(request_id, sets)

    def _keep(self, batches: list[tuple[str, list[tuple[str, str]]]]) -> None:
        self._unsent = batches + self._unsent
        total = sum(len(b) for _, b in self._unsent)
        while total > MAX_PENDING and self._unsent:
            total -= len(self._unsent.pop(0)[1])

    def _now(self) -> str:
        return "" if self.clock is None else repr(self.clock())

    def _release(self, request_id: str, sets: list[str]) -> None:
        if sets:
            self._pending += ((k, "-" + request_id) for k in sets)
            self._wake.set()

    async def _send_ends(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(END_BATCH_DELAY)  # the ends of the calls ending with it
            self._wake.clear()
            await self.flush()

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            await self.renew()
            if self._pending or self._unsent:  # ends Redis did not take before: again
                self._wake.set()


def _client(url: str, timeout: float, connections: int) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=None,
        socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0),
    )  # fmt: skip
    return aioredis.Redis(connection_pool=pool)


def _settle(
    done: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None
) -> None:
    if done.done():
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(result)


def _consumed(future: asyncio.Future[Any]) -> None:
    """Its exception is read by whoever awaited it; none left unretrieved."""
    if not future.cancelled():
        future.exception()


def redacted(url: str) -> str:
    """The Redis URL as a log line may show it: without its credentials, in its user
    part or in its query (?username=…&password=…)."""
    try:
        u = URL(url)
        if u.user or u.password:
            u = u.with_user(None)
        secret = [k for k in u.query if k.lower() in ("username", "password")]
        if secret:
            u = u.without_query_params(*secret)
        return str(u)
    except (ValueError, TypeError):
        return "the limits Redis"
