"""Two bridged processes behind one limit, their counters in Redis (127.0.0.1:6379, a key
prefix of this module's own, deleted after): many calls at once through both never admit
more than the limit, for requests per minute and for concurrency; and a bridged whose
Redis cannot be reached admits uncounted (`open`, the default) or refuses with 503
(`closed`). SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream
from tests.conftest import DATABASES, _database
from tests.governance import (
    PROVIDER_KEY,
    Held,
    StreamsAtOnce,
    create_token,
    raw_calls,
    records,
    seen,
    set_limits,
    statuses,
)
from tests.harness import Bridged, Controlplane, Secrets, free_port, wait_until

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Replicas:
    cp: Controlplane
    bridged: list[Bridged]
    upstream: MockUpstream
    prefix: str
    redis: redis.Redis
    directory: Path
    secrets: Secrets

    @property
    def urls(self) -> list[str]:
        return [f"{b.provider_url('oai')}/v1/chat/completions" for b in self.bridged]

    def keys(self) -> list[bytes]:
        return list(self.redis.scan_iter(match=f"{self.prefix}*"))

    def in_flight(self) -> int:
        """Calls in the concurrency sets (sorted sets of request ids) under the prefix."""
        sets = [k for k in self.keys() if self.redis.type(k) == b"zset"]
        return sum(int(self.redis.zcard(k)) for k in sets)


def redis_errors(bridged: Bridged) -> float:
    """aibridge_bridged_limits_redis_errors_total of this bridged."""
    found = re.search(
        r"^aibridge_bridged_limits_redis_errors_total(?:\{[^}]*\})? (\S+)$", bridged.metrics(), re.M
    )
    assert found, "no aibridge_bridged_limits_redis_errors_total"
    return float(found.group(1))


@pytest.fixture(scope="module", params=DATABASES)
def replicas(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    directory = tmp_path_factory.mktemp("governance-redis")
    secrets = Secrets()
    prefix = f"aibridge-test-{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # unreachable: the module fails, it does not skip
    with contextlib.ExitStack() as stack:
        stack.callback(client.close)
        stack.callback(lambda: [client.delete(k) for k in client.scan_iter(match=f"{prefix}*")])
        url = stack.enter_context(_database(request.param, directory))
        cp = Controlplane(url, directory, secrets).start()
        stack.callback(cp.stop)
        upstream = MockUpstream("A").start()
        stack.callback(upstream.stop)
        cp.admin.create_provider("oai", f"{upstream.url}/v1", keys=[PROVIDER_KEY])
        # These tests are about counting together, not about the default timeout (0.25 s):
        # on a loaded two-core machine a burst's checks have outlasted it, and a check that
        # times out admits its call uncounted (all 60 of a burst once, at 18e41f5).
        shared = (
            "--limits-redis", REDIS_URL, "--limits-redis-prefix", prefix,
            "--limits-redis-timeout", "2",
        )  # fmt: skip
        processes = []
        for name in ("bridged1", "bridged2"):
            process = Bridged([cp.address], directory, secrets, name=name, extra_args=shared)
            processes.append(process.start())
            stack.callback(process.stop)
        cp.admin.wait_applied(cp.admin.revision())
        yield Replicas(cp, processes, upstream, prefix, client, directory, secrets)


def test_requests_per_minute_shared_by_two_replicas(replicas: Replicas) -> None:
    token = create_token(replicas.cp, "shared-rpm")
    set_limits(replicas.cp, "token:shared-rpm", requests_per_minute=10)

    answers = raw_calls(replicas.urls, token, "redis-rpm", 60)
    admitted = sum(1 for a in answers if a.status_code == 200)
    assert admitted <= 10, f"{admitted} admitted by two replicas under a limit of 10"
    assert sorted(a.status_code for a in answers) == [200] * 10 + [429] * 50
    for refused in (a for a in answers if a.status_code == 429):
        assert refused.headers["x-aibridge-error"] == "rate_limited"
        assert refused.headers["x-ratelimit-limit-requests"] == "10"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert replicas.keys(), "nothing counted in Redis under the prefix"
    for process in replicas.bridged:
        assert redis_errors(process) == 0, process.log()
    assert seen(replicas.upstream, "redis-rpm") == 10
    assert statuses(records(replicas.cp, "shared-rpm", 60)) == [200] * 10 + [429] * 50


def test_concurrency_shared_by_two_replicas(replicas: Replicas) -> None:
    token = create_token(replicas.cp, "shared-conc")
    set_limits(replicas.cp, "token:shared-conc", max_concurrent=3)

    for round_ in (1, 2):  # the second round: the first's ends freed their places in Redis
        with Held(replicas.upstream):
            streams = StreamsAtOnce(replicas.urls, token, "redis-conc", 12)
            assert streams.wait_answered() == [200] * 3 + [429] * 9, f"round {round_}"
            assert seen(replicas.upstream, "redis-conc") == 3 * round_
            assert replicas.in_flight() == 3
        streams.finish()
        # The end of a call is sent to Redis after its answer: wait until it is.
        wait_until(lambda: replicas.in_flight() == 0, what="the streams' places to be freed")
    found = records(replicas.cp, "shared-conc", 24)
    assert statuses(found) == [200] * 6 + [429] * 18


def test_redis_unreachable_open_or_closed(replicas: Replicas) -> None:
    cp = replicas.cp
    password = f"pw-{uuid.uuid4().hex}"
    nowhere = f"redis://:{password}@127.0.0.1:{free_port()}/0"  # nothing listens there
    lonely = Bridged(
        [cp.address], replicas.directory, replicas.secrets, name="bridged-no-redis",
        extra_args=("--limits-redis", nowhere),
    ).start()  # fmt: skip
    try:
        url = [f"{lonely.provider_url('oai')}/v1/chat/completions"]
        limited = create_token(cp, "unreachable")
        set_limits(cp, "token:unreachable", requests_per_minute=1)
        free = create_token(cp, "no-limits")

        # open (the default): admitted, uncounted, with a metric and a log line.
        answers = raw_calls(url, limited, "redis-open", 3)
        assert [a.status_code for a in answers] == [200] * 3
        assert redis_errors(lonely) >= 3, lonely.metrics()
        assert password not in lonely.log()

        # closed: refused with 503, never reaching the upstream.
        setting = admin_pb2.SetSettingRequest(key="limits.redis_unavailable", value="closed")
        cp.admin.wait_applied(cp.admin.SetSetting(setting).revision)
        (refused,) = raw_calls(url, limited, "redis-closed", 1)
        assert refused.status_code == 503
        assert refused.headers["x-aibridge-error"] == "limits_unavailable"
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "limits_unavailable"
        # A token no limit set applies to needs no counter: served.
        assert [a.status_code for a in raw_calls(url, free, "redis-closed", 1)] == [200]
        assert seen(replicas.upstream, "redis-closed") == 1
        assert password not in lonely.log()
    finally:
        setting = admin_pb2.SetSettingRequest(key="limits.redis_unavailable", value="open")
        cp.admin.wait_applied(cp.admin.SetSetting(setting).revision, fleet_grace=0)
        lonely.stop()
