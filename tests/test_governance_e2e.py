"""Governance end to end: every refusal through bridged and through proxyd with the real
SDKs, never reaching the upstream and recorded with its status; in-process counters exact
on one bridged; limits changed under load keep their counts; a budget crossed by a stream
refuses the scope's next calls on every replica within about a second; a user disabled
mid-stream; the stricter of a team's and a user's limits wins. SQLite and PostgreSQL.

One controlplane, two TLS upstreams (an OpenAI-type provider `oai`, an Anthropic-type
`ant`), two bridged and a proxyd serve the whole module: each test uses users, tokens
and models of its own, so that counters, spend and what the upstreams saw are its own."""

from __future__ import annotations

import contextlib
import functools
import gc
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from aibridge.v1 import admin_pb2
from mockupstream import ANTHROPIC_USAGE, OPENAI_USAGE, MockUpstream
from tests.conftest import DATABASES, UpstreamPKI, _database
from tests.governance import (
    ANTHROPIC_CALL_USD,
    OPENAI_CALL_USD,
    PROVIDER_KEY,
    Held,
    StreamsAtOnce,
    anthropic_client,
    anthropic_stream,
    budget_resets_at,
    chat,
    create_token,
    create_user,
    message,
    openai_client,
    openai_stream,
    proxied_anthropic,
    proxied_openai,
    raw_calls,
    records,
    refusal,
    refused_now,
    reset_seconds,
    seen,
    set_limits,
    set_price,
    spent,
    statuses,
)
from tests.harness import Bridged, Controlplane, Proxyd, Secrets, wait_until
from tests.proxy_client import connect


@dataclass
class Gateway:
    cp: Controlplane
    bridged: Bridged
    bridged2: Bridged  # a second replica, with counters of its own
    proxyd: Proxyd  # in front of `bridged`
    a: MockUpstream  # provider "oai" (OpenAI type)
    b: MockUpstream  # provider "ant" (Anthropic type)

    def chat_url(self, bridged: Bridged) -> str:
        return f"{bridged.provider_url('oai')}/v1/chat/completions"


@pytest.fixture(scope="module", params=DATABASES)
def gw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    directory: Path = tmp_path_factory.mktemp("governance")
    secrets = Secrets()
    pki = UpstreamPKI.create(directory)
    trust = ("--upstream-ca-file", str(pki.ca.cert_path))
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(_database(request.param, directory))
        cp = Controlplane(url, directory, secrets).start()
        stack.callback(cp.stop)
        a = MockUpstream("A", tls=pki.server_context()).start()
        stack.callback(a.stop)
        b = MockUpstream("B", tls=pki.server_context()).start()
        stack.callback(b.stop)
        cp.admin.create_provider("oai", f"https://localhost:{a.port}/v1", keys=[PROVIDER_KEY])
        cp.admin.create_provider(
            "ant", f"https://localhost:{b.port}", type="anthropic", keys=[PROVIDER_KEY]
        )
        bridged = Bridged([cp.address], directory, secrets, extra_args=trust).start()
        stack.callback(bridged.stop)
        bridged2 = Bridged(
            [cp.address], directory, secrets, name="bridged2", extra_args=trust
        ).start()
        stack.callback(bridged2.stop)
        proxyd = Proxyd([cp.address], bridged.url, directory, secrets).start()
        stack.callback(proxyd.stop)
        # Before it stops: the SDK clients the tests dropped still hold connections through
        # proxyd, whose shutdown would wait 5 s for them; collected, they close.
        stack.callback(gc.collect)
        cp.admin.wait_applied(cp.admin.revision())
        yield Gateway(cp, bridged, bridged2, proxyd, a, b)


# --- every refusal through bridged, with the SDKs ---------------------------------------


def test_requests_per_minute(gw: Gateway) -> None:
    token = create_token(gw.cp, "rpm")
    set_limits(gw.cp, "token:rpm", requests_per_minute=2)
    oai = openai_client(gw.bridged, token)
    ant = anthropic_client(gw.bridged, token)

    assert chat(oai, "e2e-rpm") == "hello from A"
    assert message(ant, "e2e-rpm") == "hello from B"
    # A token's limit counts its calls to every provider.
    refused = refusal(lambda: chat(oai, "e2e-rpm"), openai.RateLimitError)
    assert refused.status_code == 429 and refused.code == "rate_limited"
    assert "token:rpm" in refused.message and "2" in refused.message
    headers = refused.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= reset_seconds(headers["x-ratelimit-reset-requests"]) <= 60

    refused = refusal(lambda: message(ant, "e2e-rpm"), anthropic.RateLimitError)
    assert refused.body["error"]["type"] == "rate_limit_error"
    assert refused.response.headers["x-aibridge-error"] == "rate_limited"
    assert refused.response.headers["x-ratelimit-limit-requests"] == "2"

    assert (seen(gw.a, "e2e-rpm"), seen(gw.b, "e2e-rpm")) == (1, 1)
    found = records(gw.cp, "rpm", 4)
    assert statuses(found) == [200, 200, 429, 429]
    for record in found:
        if record.status == 429:
            assert "token:rpm" in record.error_message, record.error_message


def test_tokens_per_minute(gw: Gateway) -> None:
    create_user(gw.cp, "tpm-user")
    token = create_token(gw.cp, "tpm", user="tpm-user")
    # One call's tokens (13 input, 4 + 2 cache read and write, 5 output) are more than the
    # limit: the first call is admitted (the window was empty), and its tokens, counted when
    # it ends, refuse the next.
    set_limits(gw.cp, "user:tpm-user", tokens_per_minute=10)
    ant = anthropic_client(gw.bridged, token)

    assert message(ant, "e2e-tpm") == "hello from B"
    refused = wait_until(
        lambda: refused_now(lambda: message(ant, "e2e-tpm"), anthropic.RateLimitError),
        what="the first call's tokens to be counted",
    )
    assert refused.status_code == 429
    assert refused.response.headers["x-aibridge-error"] == "rate_limited"
    assert "user:tpm-user" in refused.message
    headers = refused.response.headers
    assert headers["x-ratelimit-limit-tokens"] == "10"
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert 1 <= reset_seconds(headers["x-ratelimit-reset-tokens"]) <= 60
    assert 1 <= int(headers["retry-after"]) <= 60

    admitted = seen(gw.b, "e2e-tpm")
    assert admitted >= 1
    found = records(gw.cp, "tpm", admitted + 1)
    assert statuses(found) == [200] * admitted + [429]
    assert all(r.user_name == "tpm-user" for r in found)


def test_concurrency(gw: Gateway) -> None:
    token = create_token(gw.cp, "conc")
    set_limits(gw.cp, "token:conc", max_concurrent=1)
    oai = openai_client(gw.bridged, token)
    ant = anthropic_client(gw.bridged, token)

    with Held(gw.a) as held:
        stream = openai_stream(oai, "e2e-conc")
        stream.wait_first()
        refused = refusal(lambda: message(ant, "e2e-conc"), anthropic.RateLimitError)
        assert refused.status_code == 429
        assert refused.response.headers["x-aibridge-error"] == "concurrency_limited"
        assert refused.response.headers["retry-after"] == "5"  # CONCURRENCY_RETRY_AFTER
        assert "token:conc" in refused.message
        refused = refusal(lambda: chat(oai, "e2e-conc"), openai.RateLimitError)
        assert refused.code == "concurrency_limited"
        held.release()
        text, prompt_tokens = stream.finish()
    assert (text, prompt_tokens) == ("hello from A", OPENAI_USAGE["prompt_tokens"])
    # Its end frees the place (counted once the answer is complete: waited for).
    attempts = []

    def freed() -> bool:
        attempts.append(1)
        return refused_now(lambda: message(ant, "e2e-conc"), anthropic.RateLimitError) is None

    wait_until(freed, what="the stream's place to be freed")

    assert seen(gw.a, "e2e-conc") == 1
    assert seen(gw.b, "e2e-conc") == 1, "a refused call reached the upstream"
    found = records(gw.cp, "conc", 2 + 1 + len(attempts))
    assert statuses(found) == [200, 200] + [429] * (1 + len(attempts))


def test_budget_exceeded_names_the_scope_and_the_reset(gw: Gateway) -> None:
    create_user(gw.cp, "broke")
    token = create_token(gw.cp, "broke-laptop", user="broke")
    set_limits(gw.cp, "user:broke", monthly_budget_usd=0)  # a budget of 0 allows nothing

    refused = refusal(lambda: chat(openai_client(gw.bridged, token), "e2e-budget0"),
                      openai.PermissionDeniedError)  # fmt: skip
    assert refused.status_code == 403 and refused.code == "budget_exceeded"
    assert "user:broke" in refused.message and "$0.00" in refused.message
    assert budget_resets_at() in refused.message
    assert "retry-after" not in refused.response.headers  # needs an administrator
    refused = refusal(lambda: message(anthropic_client(gw.bridged, token), "e2e-budget0"),
                      anthropic.PermissionDeniedError)  # fmt: skip
    assert refused.body["error"]["type"] == "permission_error"
    assert refused.response.headers["x-aibridge-error"] == "budget_exceeded"
    assert budget_resets_at() in refused.message

    assert (seen(gw.a, "e2e-budget0"), seen(gw.b, "e2e-budget0")) == (0, 0)
    found = records(gw.cp, "broke-laptop", 2)
    assert statuses(found) == [403, 403]
    assert all("user:broke" in r.error_message and r.user_name == "broke" for r in found)


def test_model_and_provider_not_allowed(gw: Gateway) -> None:
    create_user(gw.cp, "picky")
    token = create_token(gw.cp, "picky-laptop", user="picky")
    set_limits(gw.cp, "user:picky", models=["e2e-ok*", "claude-e2e-*"])
    oai = openai_client(gw.bridged, token)

    refused = refusal(lambda: chat(oai, "e2e-gpt-4o"), openai.PermissionDeniedError)
    assert refused.status_code == 403 and refused.code == "model_not_allowed"
    assert "'e2e-gpt-4o'" in refused.message and "user:picky" in refused.message
    assert "e2e-ok*" in refused.message
    assert chat(oai, "e2e-ok-1") == "hello from A"

    provider_token = create_token(gw.cp, "only-oai")
    set_limits(gw.cp, "token:only-oai", providers=["oai"])
    refused = refusal(
        lambda: message(anthropic_client(gw.bridged, provider_token), "claude-e2e-x"),
        anthropic.PermissionDeniedError,
    )
    assert refused.body["error"]["type"] == "permission_error"
    assert refused.response.headers["x-aibridge-error"] == "model_not_allowed"
    assert "'ant'" in refused.message and "token:only-oai" in refused.message
    # Pass-through endpoints are held to the provider allowlist too.
    listing = httpx.get(
        f"{gw.bridged.provider_url('ant')}/v1/models", headers={"x-api-key": provider_token}
    )
    assert listing.status_code == 403
    assert listing.headers["x-aibridge-error"] == "model_not_allowed"
    assert chat(openai_client(gw.bridged, provider_token), "e2e-ok-2") == "hello from A"

    assert seen(gw.a, "e2e-gpt-4o") == 0 and seen(gw.b, "claude-e2e-x") == 0
    assert not [s for s in gw.b.seen if s.path == "/v1/models"]
    assert statuses(records(gw.cp, "picky-laptop", 2)) == [200, 403]
    assert statuses(records(gw.cp, "only-oai", 2)) == [200, 403]


# --- and through proxyd ----------------------------------------------------------------


def test_every_refusal_through_proxyd(gw: Gateway) -> None:
    cp, proxyd = gw.cp, gw.proxyd
    create_user(cp, "px")
    token = create_token(cp, "px-laptop", user="px")
    set_limits(cp, "user:px", requests_per_minute=2, models=["px-*"])
    oai = proxied_openai(proxyd, gw.a, token)

    refused = refusal(lambda: chat(oai, "e2e-px-other"), openai.PermissionDeniedError)
    assert refused.code == "model_not_allowed" and "user:px" in refused.message
    assert chat(oai, "px-1") == "hello from A"
    assert chat(oai, "px-1") == "hello from A"
    refused = refusal(lambda: chat(oai, "px-1"), openai.RateLimitError)
    assert refused.code == "rate_limited"
    headers = refused.response.headers
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(headers["retry-after"]) <= 60
    assert 1 <= reset_seconds(headers["x-ratelimit-reset-requests"]) <= 60

    create_user(cp, "px-broke")
    broke = create_token(cp, "px-broke-laptop", user="px-broke")
    set_limits(cp, "user:px-broke", monthly_budget_usd=0)
    refused = refusal(
        lambda: message(proxied_anthropic(proxyd, gw.b, broke), "px-budget"),
        anthropic.PermissionDeniedError,
    )
    assert refused.response.headers["x-aibridge-error"] == "budget_exceeded"
    assert "user:px-broke" in refused.message and budget_resets_at() in refused.message

    single = create_token(cp, "px-single")
    set_limits(cp, "token:px-single", max_concurrent=1)
    with Held(gw.b) as held:
        stream = anthropic_stream(proxied_anthropic(proxyd, gw.b, single), "px-conc")
        stream.wait_first()
        refused = refusal(
            lambda: chat(proxied_openai(proxyd, gw.a, single), "px-conc"), openai.RateLimitError
        )
        assert refused.code == "concurrency_limited"
        assert refused.response.headers["retry-after"] == "5"  # CONCURRENCY_RETRY_AFTER
        held.release()
        assert stream.finish() == ("hello from B", ANTHROPIC_USAGE["output_tokens"])

    assert (seen(gw.a, "e2e-px-other"), seen(gw.a, "px-1")) == (0, 2)
    assert (seen(gw.b, "px-budget"), seen(gw.a, "px-conc"), seen(gw.b, "px-conc")) == (0, 0, 1)
    assert statuses(records(cp, "px-laptop", 4)) == [200, 200, 403, 429]
    assert statuses(records(cp, "px-broke-laptop", 1)) == [403]
    assert statuses(records(cp, "px-single", 2)) == [200, 429]


# --- counters ------------------------------------------------------------------------


def test_one_bridged_counts_exactly(gw: Gateway) -> None:
    token = create_token(gw.cp, "exact")
    set_limits(gw.cp, "token:exact", requests_per_minute=7)
    answers = raw_calls([gw.chat_url(gw.bridged)], token, "e2e-exact", 30)
    assert sorted(r.status_code for r in answers) == [200] * 7 + [429] * 23
    assert seen(gw.a, "e2e-exact") == 7

    held_token = create_token(gw.cp, "exact-conc")
    set_limits(gw.cp, "token:exact-conc", max_concurrent=3)
    with Held(gw.a):
        streams = StreamsAtOnce([gw.chat_url(gw.bridged)], held_token, "e2e-exact-conc", 10)
        assert streams.wait_answered() == [200] * 3 + [429] * 7
        assert seen(gw.a, "e2e-exact-conc") == 3
    streams.finish()


def test_limits_changed_under_load_keep_their_counts(gw: Gateway) -> None:
    cp = gw.cp
    token = create_token(cp, "load")
    set_limits(cp, "token:load", requests_per_minute=5)
    url = gw.chat_url(gw.bridged)
    answers: list[httpx.Response] = []
    stop = threading.Event()

    def flow() -> None:
        """Calls, four at a time, until stopped."""
        while not stop.is_set():
            answers.extend(raw_calls([url], token, "e2e-load", 4))

    def admitted() -> int:
        return sum(1 for a in answers if a.status_code == 200)

    flowing = threading.Thread(target=flow, daemon=True)
    flowing.start()
    try:
        wait_until(lambda: len(answers) >= 20, what="20 answers")
        assert admitted() == 5
        # Raised while calls flow (those in flight are decided by either limit).
        set_limits(cp, "token:load", requests_per_minute=8)  # applied by every replica
        applied = len(answers)
        wait_until(lambda: len(answers) >= applied + 20, what="20 answers under the new limit")
    finally:
        stop.set()
        flowing.join(30)
    # The five already counted still count, and the refused ones counted nothing: three
    # more were admitted, not eight.
    assert admitted() == 8
    last = answers[-1]
    assert last.status_code == 429
    assert last.headers["x-ratelimit-limit-requests"] == "8"
    assert last.headers["x-ratelimit-remaining-requests"] == "0"
    # Lowered below the count: refused at once.
    set_limits(cp, "token:load", requests_per_minute=3)
    refused = raw_calls([url], token, "e2e-load", 4)
    assert {a.status_code for a in refused} == {429}
    assert refused[0].headers["x-ratelimit-limit-requests"] == "3"
    assert seen(gw.a, "e2e-load") == 8


def test_user_disabled_mid_stream(gw: Gateway) -> None:
    cp = gw.cp
    create_user(cp, "leaver")
    token = create_token(cp, "leaver-laptop", user="leaver")
    oai = openai_client(gw.bridged, token)
    with Held(gw.a) as held:
        stream = openai_stream(oai, "e2e-leaver")
        stream.wait_first()
        disabled = cp.admin.UpdateUser(admin_pb2.UpdateUserRequest(ref="leaver", enabled=False))
        cp.admin.wait_applied(disabled.revision)
        held.release()
        assert stream.finish() == ("hello from A", OPENAI_USAGE["prompt_tokens"])
    refused = refusal(lambda: chat(oai, "e2e-leaver"), openai.AuthenticationError)
    assert refused.status_code == 401 and refused.code == "invalid_token"
    status, sock = connect(gw.proxyd.port, f"localhost:{gw.a.port}", token)
    sock.close()
    assert status == 407

    enabled = cp.admin.UpdateUser(admin_pb2.UpdateUserRequest(ref="leaver", enabled=True))
    cp.admin.wait_applied(enabled.revision)
    assert chat(oai, "e2e-leaver") == "hello from A"
    assert seen(gw.a, "e2e-leaver") == 2


# --- budgets -------------------------------------------------------------------------


def test_budget_crossed_mid_stream_refuses_on_every_replica(gw: Gateway) -> None:
    cp = gw.cp
    set_price(cp, "e2e-budget*")
    create_user(cp, "spender")
    token = create_token(cp, "spender-laptop", user="spender")
    set_limits(cp, "user:spender", monthly_budget_usd=1.0)
    replicas = [openai_client(gw.bridged, token), openai_client(gw.bridged2, token)]

    with Held(gw.a) as held_a, Held(gw.b) as held_b:
        crossing = openai_stream(replicas[0], "e2e-budget")  # $1.08: crosses $1
        other = anthropic_stream(anthropic_client(gw.bridged2, token), "e2e-budget")
        crossing.wait_first()
        other.wait_first()
        held_a.release()
        assert crossing.finish() == ("hello from A", OPENAI_USAGE["prompt_tokens"])
        ended = crossing.result["ended"]

        # The next call is refused on each replica: probe each until it refuses.
        refusals: dict[int, openai.PermissionDeniedError] = {}
        probes = [0, 0]

        def every_replica_refuses() -> bool:
            for i, client in enumerate(replicas):
                if i not in refusals:
                    probes[i] += 1
                    found = refused_now(
                        functools.partial(chat, client, "e2e-budget"), openai.PermissionDeniedError
                    )
                    if found is not None:
                        refusals[i] = found
            return len(refusals) == 2

        wait_until(every_replica_refuses, timeout=3.0, what="every replica to refuse")
        took = time.monotonic() - ended
        overshoot = probes[0] + probes[1] - 2  # probes served after the crossing call ended
        print(f"budget: refused on both replicas {took:.2f}s after the crossing call ended; "
              f"{overshoot} calls admitted meanwhile")  # fmt: skip
        for refused in refusals.values():
            assert refused.code == "budget_exceeded"
            assert "user:spender" in refused.message and "$1.00" in refused.message
            assert budget_resets_at() in refused.message

        # A stream in flight when its scope crossed is never cut.
        held_b.release()
        assert other.finish() == ("hello from B", ANTHROPIC_USAGE["output_tokens"])

    # Refused everywhere from now on, whichever provider.
    refused = refusal(
        lambda: message(anthropic_client(gw.bridged, token), "e2e-budget"),
        anthropic.PermissionDeniedError,
    )
    assert refused.response.headers["x-aibridge-error"] == "budget_exceeded"
    assert seen(gw.a, "e2e-budget") == 1 + overshoot
    assert seen(gw.b, "e2e-budget") == 1
    found = records(cp, "spender-laptop", 2 + overshoot + 3)
    assert statuses(found) == [200] * (2 + overshoot) + [403] * 3
    expected = ANTHROPIC_CALL_USD + (1 + overshoot) * OPENAI_CALL_USD
    wait_until(lambda: abs(spent(cp, "spender") - expected) < 1e-6, what=f"spend {expected}")


def test_the_stricter_of_a_team_and_a_user_wins(gw: Gateway) -> None:
    cp = gw.cp
    set_price(cp, "e2e-strict*")
    # A generous team, a user with a small budget: the user's budget refuses.
    create_user(cp, "carol", teams=["generous"])
    carol = create_token(cp, "carol-laptop", user="carol")
    set_limits(cp, "team:generous", monthly_budget_usd=100)
    set_limits(cp, "user:carol", monthly_budget_usd=1)
    # A generous user in a team with a small budget: the team's budget refuses, and every
    # member of the team is refused with it.
    create_user(cp, "dave", teams=["frugal"])
    create_user(cp, "erin", teams=["frugal"])
    dave = create_token(cp, "dave-laptop", user="dave")
    erin = create_token(cp, "erin-laptop", user="erin")
    set_limits(cp, "team:frugal", monthly_budget_usd=1)
    set_limits(cp, "user:dave", monthly_budget_usd=100)

    for token in (carol, dave):
        assert chat(openai_client(gw.bridged, token), "e2e-strict") == "hello from A"

    def refusal_of(token: str) -> openai.PermissionDeniedError:
        client = openai_client(gw.bridged, token)
        return wait_until(
            lambda: refused_now(lambda: chat(client, "e2e-strict"), openai.PermissionDeniedError),
            what="the budget's refusal",
        )

    refused = refusal_of(carol)
    assert refused.code == "budget_exceeded" and "user:carol" in refused.message
    refused = refusal_of(dave)
    assert refused.code == "budget_exceeded" and "team:frugal" in refused.message
    refused = refusal(lambda: chat(openai_client(gw.bridged, erin), "e2e-strict"),
                      openai.PermissionDeniedError)  # fmt: skip
    assert "team:frugal" in refused.message

    # The same both ways for rates.
    create_user(cp, "fay", teams=["wide"])
    create_user(cp, "gil", teams=["narrow"])
    fay = create_token(cp, "fay-laptop", user="fay")
    gil = create_token(cp, "gil-laptop", user="gil")
    set_limits(cp, "team:wide", requests_per_minute=100)
    set_limits(cp, "user:fay", requests_per_minute=1)
    set_limits(cp, "team:narrow", requests_per_minute=1)
    set_limits(cp, "user:gil", requests_per_minute=100)
    for token, scope in ((fay, "user:fay"), (gil, "team:narrow")):
        client = openai_client(gw.bridged, token)
        assert chat(client, "e2e-strict-rate") == "hello from A"
        refused = refusal(functools.partial(chat, client, "e2e-strict-rate"), openai.RateLimitError)
        assert scope in refused.message, refused.message
        assert refused.response.headers["x-ratelimit-limit-requests"] == "1"
    assert seen(gw.a, "e2e-strict-rate") == 2


def test_default_applies_to_each_identity_separately(gw: Gateway) -> None:
    cp = gw.cp
    create_user(cp, "def-a")
    create_user(cp, "def-b")
    laptop = create_token(cp, "def-a-laptop", user="def-a")
    server = create_token(cp, "def-a-server", user="def-a")
    other = create_token(cp, "def-b-laptop", user="def-b")
    own = create_token(cp, "def-own")  # no user: its own identity
    try:
        set_limits(cp, "default", requests_per_minute=1)
        assert chat(openai_client(gw.bridged, laptop), "e2e-default") == "hello from A"
        # The user's other token shares the user's count.
        refused = refusal(
            lambda: chat(openai_client(gw.bridged, server), "e2e-default"), openai.RateLimitError
        )
        assert "default" in refused.message and "def-a" in refused.message, refused.message
        # Another user, and a token without one, each have a count of their own.
        for token in (other, own):
            assert chat(openai_client(gw.bridged, token), "e2e-default") == "hello from A"
        refused = refusal(
            lambda: chat(openai_client(gw.bridged, own), "e2e-default"), openai.RateLimitError
        )
        assert refused.response.headers["x-ratelimit-limit-requests"] == "1"
    finally:
        cleared = cp.admin.ClearLimits(admin_pb2.ClearLimitsRequest(scope="default"))
        cp.admin.wait_applied(cleared.revision)
    assert seen(gw.a, "e2e-default") == 3
