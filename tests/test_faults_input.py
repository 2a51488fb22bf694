"""Fault injection: hostile input to every process's front door.

1. The admin API, property-based (hypothesis) against one controlplane: every call either
   succeeds, and is then readable back exactly, or is refused with INVALID_ARGUMENT,
   ALREADY_EXISTS or NOT_FOUND and changes nothing; never UNKNOWN or INTERNAL.
2. Malformed HTTP to bridged over raw sockets: a clean 4xx (or a closed connection for
   bytes that are not HTTP), never a 5xx of bridged's own; it keeps serving and its open
   file descriptors return to their baseline.
3. Malformed input to proxyd, before and after CONNECT, in and under TLS: the same.

Each bug these tests found has a test of its own beside the properties.
FUZZ_EXAMPLES=400 runs the properties longer (default 60 examples each).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aibridge.v1 import admin_pb2
from common.wire import PROVIDER_TYPES
from mockupstream import MockUpstream
from tests.conftest import UpstreamPKI
from tests.harness import (
    AdminState,
    Bridged,
    Controlplane,
    Proxyd,
    Secrets,
    admin_state,
    health,
    postgres_database,
    wait_until,
)
from tests.proxy_client import HTTPConnection, tls
from tests.proxy_client import connect as proxy_connect
from tests.rawhttp import (
    RawReply,
    connect,
    exchange,
    open_fds,
    read_reply,
    request_bytes,
    send_quietly,
    settled_fds,
)

pytestmark = pytest.mark.faults

# ---------------------------------------------------------------------------------------
# 1. The admin API, property-based
# ---------------------------------------------------------------------------------------

REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.NOT_FOUND,
}
# The documented rule (DESIGN.md): the whole name, nothing after it.
DOCUMENTED_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
NAME_MAX = 63
TEN_YEARS = 3650 * 24 * 3600

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    database=None,  # no .hypothesis directory in the repository
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def fuzz_cp(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controlplane]:
    """One controlplane per database kind for every property of this module."""
    directory = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{directory / 'fuzz.db'}"
        else:
            url = stack.enter_context(postgres_database())
        cp = Controlplane(url, directory, Secrets()).start()
        try:
            yield cp
        finally:
            cp.stop()


def references(cp: Controlplane) -> st.SearchStrategy[str]:
    """Hostile references: NUL, control characters, very long ones."""
    return hostile()


# Text protobuf can carry: any code point but a surrogate.
CHARS = st.characters(exclude_categories=["Cs"])
SPECIALS = st.sampled_from([
    "", "\x00", "\n", "\r\n", " ", "\t", "\x7f", "\x85", "\u2028", "\ufeff", "\u200b",
    "\U0010ffff", "😀", "é", "İ", "ß", "%00", "'", '"', "\\", "--", ";", "/", "../", "?", "#",
    "Robert'); DROP TABLE providers;--", "${jndi:ldap://x}", "{{7*7}}",
])  # fmt: skip


def short_text(max_size: int = 30) -> st.SearchStrategy[str]:
    return st.text(CHARS, max_size=max_size)


def long_text(longest: int = 20_000) -> st.SearchStrategy[str]:
    return st.builds(lambda c, n: c * n, CHARS, st.integers(60, longest))


def hostile(longest: int = 20_000) -> st.SearchStrategy[str]:
    """Arbitrary unicode: short, special, very long, or special glued to plain."""
    strategy = st.one_of(
        short_text(),
        SPECIALS,
        long_text(longest),
        st.builds(lambda a, b, c: a + b + c, short_text(8), SPECIALS, short_text(8)),
    )
    return strategy


VALID_NAMES = st.from_regex(r"[a-z0-9]{1,10}(-[a-z0-9]{1,10}){0,3}", fullmatch=True)
NAMES = st.one_of(
    st.sampled_from(["p", "p-1", "dup", "openai", "a" * NAME_MAX, "a" * (NAME_MAX + 1)]),
    VALID_NAMES,
    st.from_regex(r"^[a-z0-9]+(-[a-z0-9]+)*$"),  # search semantics: may end in "\n"
    st.builds(lambda n, s: n + s, VALID_NAMES, SPECIALS),
    st.builds(lambda s, n: s + n, SPECIALS, VALID_NAMES),
    hostile(),
)
TYPES = st.one_of(
    st.sampled_from(PROVIDER_TYPES),
    st.sampled_from(["OpenAI", "openai ", " openai", "openai\x00", "anthropic\n"]),
    hostile(),
)
HOSTS = st.one_of(
    st.sampled_from([
        "api.example.com", "localhost", "127.0.0.1", "[::1]", "[::1", "::1", "ünïcödé.example",
        "xn--bcher-kva.example", "", "user:pw@host", "user@host", "host:0", "host:65535",
        "host:65536", "host:abc", "host:-1", "host:443", "a..b", ".", "[v1.x]", "h\x00st",
    ]),
    st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True),
    hostile(),
)  # fmt: skip
PATHS = st.one_of(
    st.sampled_from(
        [
            "",
            "/",
            "/v1",
            "/v1/",
            "//",
            "///",
            "/v1?x=1",
            "/v1#f",
            "/?",
            "/#",
            "/a b",
            "/%00",
            "/\x00",
            "/v1/../..",
            "/\n",
        ]
    ),  # fmt: skip
    st.builds(lambda t: "/" + t, short_text()),
    st.builds(lambda n: "/" + "a" * n, st.integers(100, 50_000)),
)
BASE_URLS = st.one_of(
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}{path}",
        st.sampled_from(["http", "https", "HTTPS", "ftp", "", "javascript", "http\x00", "h ttp"]),
        HOSTS,
        PATHS,
    ),
    hostile(),
)
GOOD_KEYS = st.from_regex(r"[!-~]{1,80}", fullmatch=True)  # printable ASCII, no space
KEYS = st.one_of(
    GOOD_KEYS,
    st.builds(lambda k: " " + k, GOOD_KEYS),
    st.builds(lambda k: k + "\n", GOOD_KEYS),
    st.builds(lambda a, s, b: a + s + b, GOOD_KEYS, SPECIALS, GOOD_KEYS),
    st.sampled_from(["k" * 4096, "k" * 4097, "ключ-секрет-0123456789", "\x00" * 20]),
    hostile(),
)
DISPLAY_NAMES = st.one_of(
    short_text(),
    st.sampled_from(["x" * 200, "x" * 201, "😀" * 200, "😀" * 201, "OpenAI (EU)"]),
    hostile(),
)
EXPIRIES = st.one_of(
    st.sampled_from([0, 1, -1, TEN_YEARS, TEN_YEARS + 1, 2**63 - 1, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 10**6),
)


def pick(items: list[str], fallback: str) -> st.SearchStrategy[str]:
    """One of `items`, the server's state of the moment, by a draw whose shape does not
    depend on that state (hypothesis replays draws against a state that has moved on)."""
    return st.integers(0, 2**16).map(lambda i: items[i % len(items)] if items else fallback)


def hint_of(key: str) -> str:
    """The masked hint the API promises: the last four characters of a long key."""
    return f"…{key[-4:]}" if len(key) >= 16 else "…"


def documented_name(name: str) -> bool:
    return len(name) <= NAME_MAX and DOCUMENTED_NAME.fullmatch(name) is not None


def distinctive(secrets: list[str], *others: str) -> list[str]:
    """Secrets long enough to look for, and that are not part of another field sent."""
    return [
        s for s in secrets
        if len(s.strip()) >= 12 and not any(s in o for o in others if o is not s)
    ]  # fmt: skip


@dataclass
class Outcome:
    response: Any
    code: grpc.StatusCode | None
    details: str
    before: AdminState
    after: AdminState

    @property
    def refused(self) -> bool:
        return self.code is not None


def attempt(
    cp: Controlplane,
    call: Callable[[Any], Any],
    request: Any,
    secrets: Sequence[str] = (),
) -> Outcome:
    """One admin call; a refusal must be one of REFUSALS, name its field when it is an
    INVALID_ARGUMENT, repeat no secret, and leave the state exactly as it was."""
    before = admin_state(cp)
    try:
        response = call(request)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        assert code in REFUSALS, f"{code.name}: {details!r} for {request!r:.2000}"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert re.match(r"[a-z_]+: \S", details), details
        for secret in secrets:
            assert secret not in details, "a refusal repeated a key"
        assert admin_state(cp) == before, f"a refused call changed something: {request!r:.2000}"
        cp.check_alive()
        return Outcome(None, code, details, before, before)
    cp.check_alive()
    return Outcome(response, None, "", before, admin_state(cp))


def assert_one_mutation(outcome: Outcome) -> None:
    """A successful mutation bumps the revision by one and writes one audit entry."""
    (rev_before, *_rest, audit_before), (rev_after, *_, audit_after) = (
        outcome.before, outcome.after,
    )  # fmt: skip
    assert rev_after == rev_before + 1 == outcome.response.revision
    assert audit_after == audit_before + 1


def listed_provider(cp: Controlplane, provider_id: str) -> admin_pb2.Provider | None:
    providers = cp.admin.ListProviders(admin_pb2.ListProvidersRequest()).providers
    return next((p for p in providers if p.id == provider_id), None)


def assert_readable_back(cp: Controlplane, provider: admin_pb2.Provider) -> None:
    assert cp.admin.GetProvider(admin_pb2.GetProviderRequest(ref=provider.id)) == provider
    assert cp.admin.GetProvider(admin_pb2.GetProviderRequest(ref=provider.name)) == provider
    assert listed_provider(cp, provider.id) == provider


def assert_no_secret_shown(cp: Controlplane, secrets: list[str], *messages: Any) -> None:
    shown = b"".join(m.SerializeToString() for m in messages)
    shown += cp.admin.ListProviders(admin_pb2.ListProvidersRequest()).SerializeToString()
    shown += cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=20)).SerializeToString()
    for secret in secrets:
        assert secret.encode() not in shown, "a key came back from the admin API"


CREATES = st.builds(
    admin_pb2.CreateProviderRequest,
    name=NAMES,
    type=TYPES,
    base_url=BASE_URLS,
    display_name=DISPLAY_NAMES,
    disabled=st.booleans(),
    keys=st.lists(KEYS, max_size=4),
)


@FUZZ
@given(request=CREATES)
def test_create_provider_property(
    fuzz_cp: Controlplane, request: admin_pb2.CreateProviderRequest
) -> None:
    cp = fuzz_cp
    keys = list(request.keys)
    secrets = distinctive(keys, request.name, request.base_url, request.display_name)
    outcome = attempt(cp, cp.admin.CreateProvider, request, secrets)
    if outcome.refused:
        return
    assert_one_mutation(outcome)
    p = outcome.response.provider
    assert p.id.startswith("prv_")
    assert (p.name, p.type, p.display_name, p.enabled) == (
        request.name, request.type, request.display_name, not request.disabled,
    )  # fmt: skip
    assert p.base_url == request.base_url.rstrip("/")
    assert [k.hint for k in p.keys] == [hint_of(k) for k in keys]
    assert documented_name(p.name), f"accepted a name the design refuses: {p.name!r}"
    assert p.type in PROVIDER_TYPES
    assert_readable_back(cp, p)
    assert_no_secret_shown(cp, secrets, outcome.response)


def ensure_providers(cp: Controlplane, at_least: int = 3) -> list[admin_pb2.Provider]:
    providers = list(cp.admin.ListProviders(admin_pb2.ListProvidersRequest()).providers)
    for _ in range(at_least - len(providers)):
        cp.admin.create_provider(
            f"seed-{os.urandom(4).hex()}", keys=[f"sk-seed-{os.urandom(8).hex()}"] * 2
        )
    providers = list(cp.admin.ListProviders(admin_pb2.ListProvidersRequest()).providers)
    assert len(providers) >= at_least, "created providers are not listed"
    return providers


def target_of(providers: list[admin_pb2.Provider], ref: str) -> admin_pb2.Provider | None:
    field = "id" if ref.startswith("prv_") else "name"
    return next((p for p in providers if getattr(p, field) == ref), None)


@FUZZ
@given(data=st.data())
def test_update_delete_get_provider_property(fuzz_cp: Controlplane, data: st.DataObject) -> None:
    cp = fuzz_cp
    providers = ensure_providers(cp)
    existing = [p.name for p in providers] + [p.id for p in providers]
    ref = data.draw(
        st.one_of(
            pick(existing, "p"),
            pick(existing, "p").map(str.upper),
            st.sampled_from(["", "prv_", "prv_0000", " ", "%"]),
            references(cp),
        ),
        label="ref",
    )
    operation = data.draw(st.sampled_from(["update", "update", "update", "delete", "get"]))
    target = target_of(providers, ref)

    if operation == "get":
        outcome = attempt(cp, cp.admin.GetProvider, admin_pb2.GetProviderRequest(ref=ref))
        if not outcome.refused:
            assert target is not None and outcome.response == target
        return

    if operation == "delete":
        outcome = attempt(cp, cp.admin.DeleteProvider, admin_pb2.DeleteProviderRequest(ref=ref))
        if outcome.refused:
            return
        assert_one_mutation(outcome)
        assert target is not None
        assert (outcome.response.id, outcome.response.name) == (target.id, target.name)
        assert listed_provider(cp, target.id) is None
        with pytest.raises(grpc.RpcError) as gone:
            cp.admin.GetProvider(admin_pb2.GetProviderRequest(ref=target.id))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        return

    key_ids = [k.id for p in providers for k in p.keys]
    fields: dict[str, Any] = {}
    if data.draw(st.booleans(), label="rename"):
        fields["name"] = data.draw(st.one_of(NAMES, pick([p.name for p in providers], "p")))
    if data.draw(st.booleans(), label="move"):
        fields["base_url"] = data.draw(BASE_URLS)
    if data.draw(st.booleans(), label="toggle"):
        fields["enabled"] = data.draw(st.booleans())
    if data.draw(st.booleans(), label="relabel"):
        fields["display_name"] = data.draw(DISPLAY_NAMES)
    add_keys = data.draw(st.lists(KEYS, max_size=3), label="add_keys")
    remove_ids = data.draw(
        st.lists(st.one_of(pick(key_ids, "key_none"), hostile()), max_size=2),
        label="remove_key_ids",
    )
    request = admin_pb2.UpdateProviderRequest(
        ref=ref, add_keys=add_keys, remove_key_ids=remove_ids, **fields
    )
    secrets = distinctive(add_keys, ref, *[str(v) for v in fields.values()], *remove_ids)
    outcome = attempt(cp, cp.admin.UpdateProvider, request, secrets)
    if outcome.refused:
        return
    assert_one_mutation(outcome)
    assert target is not None, f"updated a provider that {ref!r} does not name"
    assert set(remove_ids) <= {k.id for k in target.keys}, "removed another provider's key"
    u = outcome.response.provider
    assert (u.id, u.type, u.created_at) == (target.id, target.type, target.created_at)
    assert u.name == fields.get("name", target.name)
    assert u.base_url == fields.get("base_url", target.base_url).rstrip("/")
    assert u.enabled == fields.get("enabled", target.enabled)
    assert u.display_name == fields.get("display_name", target.display_name)
    kept = [k for k in target.keys if k.id not in remove_ids]
    assert list(u.keys)[: len(kept)] == kept
    assert [k.hint for k in u.keys[len(kept) :]] == [hint_of(k) for k in add_keys]
    assert documented_name(u.name), f"accepted a name the design refuses: {u.name!r}"
    assert_readable_back(cp, u)
    assert_no_secret_shown(cp, secrets, outcome.response)


@FUZZ
@given(data=st.data())
def test_token_property(fuzz_cp: Controlplane, data: st.DataObject) -> None:
    cp = fuzz_cp
    live = list(cp.admin.ListTokens(admin_pb2.ListTokensRequest()).tokens)
    operation = data.draw(st.sampled_from(["create", "create", "revoke"]))
    names = [t.name for t in live]
    if operation == "create":
        name = data.draw(st.one_of(NAMES, pick(names, "t")), label="name")
        expires = data.draw(EXPIRIES, label="expires_in_seconds")
        outcome = attempt(
            cp, cp.admin.CreateToken,
            admin_pb2.CreateTokenRequest(name=name, expires_in_seconds=expires),
        )  # fmt: skip
        if outcome.refused:
            return
        assert_one_mutation(outcome)
        created = outcome.response
        info, plaintext = created.info, created.token
        assert info.name == name and name not in names, "two live tokens with one name"
        assert documented_name(info.name), f"accepted a name the design refuses: {name!r}"
        assert plaintext.startswith("abt_") and len(plaintext) >= 40
        assert 0 <= expires <= TEN_YEARS
        if expires:
            lifetime = info.expires_at.ToDatetime() - info.created_at.ToDatetime()
            assert abs(lifetime - timedelta(seconds=expires)) < timedelta(seconds=1)
        else:
            assert not info.HasField("expires_at")
        listing = cp.admin.ListTokens(admin_pb2.ListTokensRequest(include_revoked=True))
        assert info in listing.tokens
        shown = listing.SerializeToString()
        shown += cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=5)).SerializeToString()
        assert plaintext.encode() not in shown and plaintext[8:].encode() not in shown
        return

    existing = names + [t.id for t in live]
    ref = data.draw(
        st.one_of(pick(existing, "t"), st.just("tok_"), references(cp)),
        label="ref",
    )
    outcome = attempt(cp, cp.admin.RevokeToken, admin_pb2.RevokeTokenRequest(ref=ref))
    if outcome.refused:
        return
    assert_one_mutation(outcome)
    revoked = outcome.response.info
    assert ref in (revoked.id, revoked.name) and revoked.HasField("revoked_at")
    assert revoked.id not in {
        t.id for t in cp.admin.ListTokens(admin_pb2.ListTokensRequest()).tokens
    }


# One of each kind of hostile text, for the survival test: it must not rely on the
# properties having run before it.
HOSTILE_SAMPLES = [
    "", "\x00", "a\x00b", "\n", "p\n", "\u2028", "\U0010ffff", "😀", "../", "%00",
    "Robert'); DROP TABLE providers;--", "x" * 20_000, "\x1f" * 6_000,
]  # fmt: skip


def test_controlplane_survived_the_fuzzing(fuzz_cp: Controlplane) -> None:
    """Hostile text in every admin call, then a valid change: still serving, healthy, still
    committing, and no error behind a refusal in the log. On the module's controlplane this
    also covers whatever the properties above sent it, when they ran first."""
    cp = fuzz_cp
    provider = ensure_providers(cp, at_least=1)[0]
    base_url = "https://api.example.com/v1"
    for i, text in enumerate(HOSTILE_SAMPLES):
        for call, request in (
            (cp.admin.CreateProvider, admin_pb2.CreateProviderRequest(
                name=text, type="openai", base_url=base_url)),
            (cp.admin.CreateProvider, admin_pb2.CreateProviderRequest(
                name=f"survivor-{i}", type=text, base_url=base_url)),
            (cp.admin.CreateProvider, admin_pb2.CreateProviderRequest(
                name=f"survivor-url-{i}", type="openai", base_url=text)),
            (cp.admin.GetProvider, admin_pb2.GetProviderRequest(ref=text)),
            (cp.admin.UpdateProvider, admin_pb2.UpdateProviderRequest(ref=text, enabled=False)),
            (cp.admin.UpdateProvider, admin_pb2.UpdateProviderRequest(
                ref=provider.id, display_name=text, remove_key_ids=[text])),
            (cp.admin.DeleteProvider, admin_pb2.DeleteProviderRequest(ref=text)),
            (cp.admin.CreateToken, admin_pb2.CreateTokenRequest(name=text)),
            (cp.admin.RevokeToken, admin_pb2.RevokeTokenRequest(ref=text)),
        ):  # fmt: skip
            attempt(cp, call, request)

    before = cp.admin.revision()
    cp.admin.create_provider(f"survivor-{os.urandom(4).hex()}")
    assert cp.admin.revision() == before + 1
    cp.check_alive()
    assert health(cp) == health_pb2.HealthCheckResponse.SERVING
    log = cp.log()
    assert "Traceback" not in log, log[-5000:]


def test_names_with_a_trailing_newline_are_refused(fuzz_cp: Controlplane) -> None:
    """The name rule is a whole-string match: "llm\\n" is not "llm"."""
    cp = fuzz_cp
    name = f"nl-{os.urandom(4).hex()}\n"
    accepted = []
    for call, request in (
        (cp.admin.CreateProvider, admin_pb2.CreateProviderRequest(
            name=name, type="openai", base_url="https://api.example.com/v1")),
        (cp.admin.CreateToken, admin_pb2.CreateTokenRequest(name=name)),
    ):  # fmt: skip
        try:
            call(request)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
        else:
            accepted.append(type(request).__name__)
    assert not accepted, f"names ending in a newline accepted by {accepted}"


def test_nul_in_a_reference_is_refused_cleanly(fuzz_cp: Controlplane) -> None:
    """A reference with NUL in it names nothing: NOT_FOUND (or INVALID_ARGUMENT)."""
    cp = fuzz_cp
    provider = ensure_providers(cp)[0]
    answers = {}
    for label, call, message in (
        ("GetProvider", cp.admin.GetProvider, admin_pb2.GetProviderRequest(ref="a\x00b")),
        ("DeleteProvider", cp.admin.DeleteProvider, admin_pb2.DeleteProviderRequest(ref="a\x00")),
        ("UpdateProvider", cp.admin.UpdateProvider,
         admin_pb2.UpdateProviderRequest(ref="prv_\x00", enabled=False)),
        ("UpdateProvider.remove_key_ids", cp.admin.UpdateProvider,
         admin_pb2.UpdateProviderRequest(ref=provider.id, remove_key_ids=["key_\x00"])),
        ("RevokeToken", cp.admin.RevokeToken, admin_pb2.RevokeTokenRequest(ref="tok_\x00")),
    ):  # fmt: skip
        before = admin_state(cp)
        try:
            call(message)
        except grpc.RpcError as exc:
            answers[label] = exc.code()
        else:
            answers[label] = grpc.StatusCode.OK
        assert admin_state(cp) == before
    assert all(code in REFUSALS for code in answers.values()), answers


def test_a_long_reference_is_refused_cleanly(fuzz_cp: Controlplane) -> None:
    """A reference longer than any id or name names nothing: refused as such, in a short
    message (quoting it whole once overflowed gRPC's metadata limit: RESOURCE_EXHAUSTED)."""
    cp = fuzz_cp
    answers = {}
    for ref in ("x" * 20_000, "É" * 4_000, "\x1f" * 6_000):  # past the 16 KiB hard limit
        for label, call, message in (
            ("GetProvider", cp.admin.GetProvider, admin_pb2.GetProviderRequest(ref=ref)),
            ("UpdateProvider", cp.admin.UpdateProvider,
             admin_pb2.UpdateProviderRequest(ref=ref, enabled=True)),
            ("DeleteProvider", cp.admin.DeleteProvider, admin_pb2.DeleteProviderRequest(ref=ref)),
            ("RevokeToken", cp.admin.RevokeToken, admin_pb2.RevokeTokenRequest(ref=ref)),
        ):  # fmt: skip
            try:
                call(message)
            except grpc.RpcError as exc:
                answers[(label, ref[0], len(ref))] = exc.code().name
                details = exc.details()
                assert details is not None and len(details) < 200, details
    assert set(answers.values()) == {"INVALID_ARGUMENT"}, answers


def test_display_names_refuse_every_control_character(fuzz_cp: Controlplane) -> None:
    """The rule says "must not contain control characters": DEL and C1 are ones too."""
    cp = fuzz_cp
    accepted = []
    for display_name in ("bell\x7f", "next\x85line", "csi\x9b"):
        try:
            created = cp.admin.create_provider(
                f"ctl-{os.urandom(4).hex()}", display_name=display_name
            )
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
            details = exc.details()
            assert details is not None and details.startswith("display_name:")
        else:
            accepted.append(created.provider.display_name)
    assert not accepted, f"display names with control characters accepted: {accepted!r}"


# ---------------------------------------------------------------------------------------
# 2. Malformed HTTP to bridged, over raw sockets
# ---------------------------------------------------------------------------------------

MAX_BODY = 64 * 1024
KEY = "sk-faults-input-provider-key-0001"
CHAT_PATH = "/api/v2/aibridge/llm/v1/chat/completions"
MESSAGES_PATH = "/api/v2/aibridge/claude/v1/messages"
CHAT_BODY = b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}'
FD_DEADLINE = 20.0  # a pooled upstream connection may take a moment to settle


@dataclass
class Gateway:
    cp: Controlplane
    bridged: Bridged
    upstream: MockUpstream
    token: str

    @property
    def pid(self) -> int:
        assert self.bridged.proc is not None
        return self.bridged.proc.pid

    def auth(self) -> tuple[str, str]:
        return ("Authorization", f"Bearer {self.token}")

    def fresh_providers(self) -> tuple[str, str]:
        """An OpenAI and an Anthropic provider of the test's own, so that the usage it
        counts is only its own calls'."""
        suffix = os.urandom(4).hex()
        names = (f"openai-{suffix}", f"anthropic-{suffix}")
        self.cp.admin.create_provider(names[0], self.upstream.url + "/v1", keys=[KEY])
        created = self.cp.admin.create_provider(
            names[1], self.upstream.url, type="anthropic", keys=[KEY]
        )
        self.cp.admin.wait_applied(created.revision)
        return names

    def usage_requests(self, provider: str) -> int:
        rows = self.cp.admin.QueryUsage(
            admin_pb2.QueryUsageRequest(group_by="provider", provider=provider)
        ).rows
        return sum(r.requests for r in rows)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One controlplane, one upstream and one bridged (64 KiB body limit) for the module."""
    directory = tmp_path_factory.mktemp("gateway")
    secrets = Secrets()
    with contextlib.ExitStack() as stack:
        upstream = MockUpstream("A").start()
        stack.callback(upstream.stop)
        cp = Controlplane(f"sqlite:///{directory / 'gateway.db'}", directory, secrets).start()
        stack.callback(cp.stop)
        bridged = Bridged(
            [cp.address], directory, secrets,
            extra_args=("--max-body-bytes", str(MAX_BODY), "--idle-read-timeout", "10"),
        ).start()  # fmt: skip
        stack.callback(bridged.stop)
        cp.admin.create_provider("llm", upstream.url + "/v1", keys=[KEY])
        cp.admin.create_provider("claude", upstream.url, type="anthropic", keys=[KEY])
        created = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="faults"))
        cp.admin.wait_applied(created.revision)
        yield Gateway(cp, bridged, upstream, created.token)


def valid_chat(gw: Gateway) -> None:
    response = httpx.post(
        gw.bridged.url + CHAT_PATH,
        headers={"Authorization": f"Bearer {gw.token}", "Content-Type": "application/json"},
        content=CHAT_BODY,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "hello from A"


def fd_baseline(gw: Gateway) -> int:
    """Open descriptors once a normal request has warmed the upstream pool."""
    valid_chat(gw)
    return settled_fds(gw.pid)


def assert_bridged_healthy(gw: Gateway, baseline: int) -> None:
    """Alive, /healthz, a real proxied call, and no descriptor left behind."""
    gw.bridged.check_alive()
    assert httpx.get(gw.bridged.url + "/healthz", timeout=10).status_code == 200
    valid_chat(gw)
    wait_until(
        lambda: open_fds(gw.pid) <= baseline, FD_DEADLINE,
        f"bridged's descriptors back to {baseline} (now {open_fds(gw.pid)})",
    )  # fmt: skip


def not_bridged_5xx(reply: RawReply) -> None:
    """A 5xx may only be an upstream's, passed through (it carries the request id and no
    gateway error code); bridged itself must never answer 5xx to bad input."""
    if reply.status >= 500:
        assert reply.header("x-aibridge-request-id") and not reply.header("x-aibridge-error"), (
            f"bridged answered {reply.status} itself: {reply!r}"
        )


@dataclass(frozen=True)
class Bad:
    """Bytes to send (built from the token) and the answers allowed: 0 is a close."""

    id: str
    data: Callable[[str], bytes]
    allowed: frozenset[int]


def bad(id: str, data: bytes | Callable[[str], bytes], *allowed: int) -> Any:
    build = data if callable(data) else (lambda _token, raw=data: raw)
    return pytest.param(Bad(id, build, frozenset(allowed)), id=id)


def chat_request(token: str, *headers: tuple[bytes | str, bytes | str], body: bytes = CHAT_BODY,
                 content_length: bool = True, path: str = CHAT_PATH) -> bytes:  # fmt: skip
    return request_bytes(
        "POST", path, [("Authorization", f"Bearer {token}"), *headers], body,
        content_length=content_length,
    )  # fmt: skip


def chunked(token: str, chunks: bytes) -> bytes:
    return chat_request(token, ("Transfer-Encoding", "chunked"), body=chunks, content_length=False)


GARBAGE = bytes(b for b in os.urandom(4096) if b not in b"\r\n")[:2000]
CLIENT_HELLO_PREFIX = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)

MALFORMED_HTTP = [
    bad("request-line-too-long", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        400, 414),
    bad("header-too-long", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000
        + b"\r\n\r\n", 400, 431),
    bad("too-many-headers", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: a\r\n" % i for i in range(500)) + b"\r\n", 400, 431),
    bad("header-name-too-long", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X" * 20_000
        + b": a\r\n\r\n", 400, 431),
    bad("content-length-not-a-number",
        lambda t: chat_request(t, ("Content-Length", "abc"), content_length=False), 400),
    bad("content-length-negative",
        lambda t: chat_request(t, ("Content-Length", "-1"), content_length=False), 400),
    bad("content-length-overflow", lambda t: chat_request(
        t, ("Content-Length", "9" * 40), content_length=False), 400, 413),
    bad("content-length-twice", lambda t: chat_request(
        t, ("Content-Length", "2"), ("Content-Length", "3"), body=b"{}", content_length=False),
        400),
    bad("content-length-list", lambda t: chat_request(
        t, ("Content-Length", "2, 2"), body=b"{}", content_length=False), 400),
    bad("content-length-and-chunked", lambda t: chat_request(
        t, ("Content-Length", "5"), ("Transfer-Encoding", "chunked"), body=b"0\r\n\r\n",
        content_length=False), 400),
    bad("chunk-size-not-hex", lambda t: chunked(t, b"zz\r\nabc\r\n0\r\n\r\n"), 400),
    bad("chunk-size-overflow", lambda t: chunked(t, b"f" * 30 + b"\r\nab\r\n0\r\n\r\n"),
        400, 413),
    bad("chunk-longer-than-declared", lambda t: chunked(t, b"5\r\nabcdefghij\r\n0\r\n\r\n"),
        400),
    bad("chunk-without-crlf", lambda t: chunked(t, b"3\r\nabc0\r\n\r\n"), 400),
    bad("transfer-encoding-unknown", lambda t: chat_request(
        t, ("Transfer-Encoding", "bogus"), body=b"{}", content_length=False), 400, 501),
    bad("not-http", GARBAGE + b"\r\n\r\n", 0, 400),
    bad("nul-bytes", b"\x00" * 64 + b"\r\n\r\n", 0, 400),
    bad("tls-client-hello", CLIENT_HELLO_PREFIX, 0, 400),
    bad("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, 400, 505),
    bad("unknown-http-version", b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 0, 400, 505),
    bad("bare-lf-line-endings", b"GET /healthz HTTP/1.1\nHost: x\n\n", 0, 200, 400),
    bad("nul-in-header-value", request_bytes("GET", "/healthz", [("X-A", b"a\x00b")]), 400),
    bad("cr-in-header-value", request_bytes("GET", "/healthz", [("X-A", b"a\rb")]), 400),
    bad("header-without-colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
    bad("space-before-colon", b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    bad("obsolete-line-folding", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n",
        400),
    bad("non-token-header-name", request_bytes("GET", "/healthz", [(b"X-\xff", "a")]), 400),
    bad("invalid-utf8-in-path", lambda t: request_bytes(
        "GET", b"/api/v2/aibridge/\xff/v1/models", [("Authorization", f"Bearer {t}")]), 400, 404),
    bad("nul-in-path", lambda t: request_bytes(
        "GET", b"/api/v2/aibridge/llm/v1/mo\x00dels", [("Authorization", f"Bearer {t}")]), 400),
    bad("encoded-nul-provider", lambda t: request_bytes(
        "GET", "/api/v2/aibridge/%00/v1/models", [("Authorization", f"Bearer {t}")]), 400, 404),
    bad("encoded-garbage-model-id", lambda t: request_bytes(
        "GET", "/api/v2/aibridge/llm/v1/models/%ff%fe%00", [("Authorization", f"Bearer {t}")]),
        400, 404),
    bad("invalid-query", lambda t: request_bytes(
        "GET", b"/api/v2/aibridge/llm/v1/models?a=%zz&b=\xff", [("Authorization", f"Bearer {t}")]),
        400),
    bad("control-char-in-method", request_bytes("G\x01ET", "/healthz"), 400),
    bad("method-too-long", request_bytes("A" * 10_000, "/healthz"), 400, 405, 414),
    bad("absolute-form-elsewhere", b"GET http://169.254.169.254/latest HTTP/1.1\r\nHost: x\r\n\r\n",
        400, 404),
    bad("connect-to-bridged", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n",
        0, 400, 404, 405),
]  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED_HTTP)
def test_bridged_refuses_malformed_http_cleanly(gateway: Gateway, case: Bad) -> None:
    baseline = fd_baseline(gateway)
    seen = len(gateway.upstream.seen)
    reply = exchange(gateway.bridged.port, case.data(gateway.token), timeout=10)
    assert not reply.timed_out, f"no answer and no close: {reply!r}"
    assert reply.status in case.allowed, f"{case.id}: {reply!r}"
    not_bridged_5xx(reply)
    assert len(gateway.upstream.seen) == seen, "malformed input reached the upstream"
    assert_bridged_healthy(gateway, baseline)


def test_bridged_body_limits(gateway: Gateway) -> None:
    """Over --max-body-bytes, by Content-Length, chunked or after 100-continue: 413 in
    the provider's shape, and nothing reaches the upstream. Exactly at the limit: 200."""
    gw = gateway
    baseline = fd_baseline(gw)
    seen = len(gw.upstream.seen)
    pad = b'{"model": "gpt", "pad": "'
    over = pad + b"x" * (MAX_BODY + 1 - len(pad) - 2) + b'"}'
    assert len(over) == MAX_BODY + 1
    piece = b"x" * 8192
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(MAX_BODY // 8192 + 1))

    for label, data in (
        ("content-length", chat_request(gw.token, body=over)),
        ("chunked", chunked(gw.token, chunks + b"0\r\n\r\n")),
        ("content-length, anthropic", chat_request(gw.token, ("anthropic-version", "2023-06-01"),
                                                   body=over, path=MESSAGES_PATH)),
    ):  # fmt: skip
        reply = exchange(gw.bridged.port, data, timeout=15)
        assert reply.status == 413, (label, reply)
        assert reply.header("x-aibridge-error") == "request_too_large", (label, reply)
        assert reply.header("content-type").startswith("application/json")
        json.loads(reply.body)

    # A client that waits for 100-continue before sending a body that is too large.
    with connect(gw.bridged.port) as sock:
        head = chat_request(
            gw.token, ("Expect", "100-continue"), ("Content-Length", str(len(over))),
            body=b"", content_length=False,
        )  # fmt: skip
        sock.sendall(head)
        sock.settimeout(5)
        try:
            first = sock.recv(65536)
        except TimeoutError:  # no interim answer: send the body anyway, as curl does
            first = b""
        if first.startswith(b"HTTP/1.1 100"):
            send_quietly(sock, over)
            reply = read_reply(_Replay(sock, first.partition(b"\r\n\r\n")[2]), 15)
        elif not first:
            send_quietly(sock, over)
            reply = read_reply(sock, 15)
        else:  # a final answer before the body
            reply = read_reply(_Replay(sock, first), 15)
        assert reply.status == 413, reply
    assert len(gw.upstream.seen) == seen, "an oversized body reached the upstream"

    # The limit itself is allowed through, byte for byte.
    fits = pad + b"x" * (MAX_BODY - len(pad) - 2) + b'"}'
    reply = exchange(gw.bridged.port, chat_request(gw.token, body=fits), timeout=15)
    assert reply.status == 200, reply
    assert gw.upstream.seen[-1].body == fits
    assert_bridged_healthy(gw, baseline)


class _Replay:
    """A socket whose first bytes were already read."""

    def __init__(self, sock: socket.socket, first: bytes) -> None:
        self.sock, self.first = sock, first

    def settimeout(self, value: float) -> None:
        self.sock.settimeout(value)

    def recv(self, size: int) -> bytes:
        if self.first:
            data, self.first = self.first, b""
            return data
        return self.sock.recv(size)


BAD_BODIES = [
    b'{"model": "gpt", "messages": [',  # truncated JSON
    b"[]",
    b'"a string"',
    b"null",
    b"",
    b'{"model": 5, "stream": "yes", "messages": {}}',
    b'{"model": NaN, "stream": Infinity}',
    b'{"model": 1e999999, "max_tokens": -1e400}',
    b'{"model": "\xff\xfe", "messages": []}',  # not UTF-8
    b"\xff\xfe\x00\x00garbage",
    b'{"model": "gpt", "model": "dup", "stream": true, "stream": false}',
    b'{"model": "' + b"m" * 60_000 + b'"}',
]


def test_bridged_forwards_bad_json_without_failing_itself(gateway: Gateway) -> None:
    """Bodies are the provider's business: bridged forwards them, records the call, and
    whatever the upstream makes of them, bridged adds no 5xx of its own."""
    gw = gateway
    baseline = fd_baseline(gw)
    openai, anthropic = gw.fresh_providers()
    for body in BAD_BODIES:
        path = f"/api/v2/aibridge/{openai}/v1/chat/completions"
        reply = exchange(gw.bridged.port, chat_request(gw.token, body=body, path=path), timeout=15)
        assert reply.status != 0 and not reply.timed_out, (body[:40], reply)
        not_bridged_5xx(reply)
        reply = exchange(
            gw.bridged.port,
            chat_request(gw.token, ("anthropic-version", "2023-06-01"), body=body,
                         path=f"/api/v2/aibridge/{anthropic}/v1/messages"),
            timeout=15,
        )  # fmt: skip
        assert reply.status != 0 and not reply.timed_out, (body[:40], reply)
        not_bridged_5xx(reply)
    # Every one of them was recorded.
    wait_until(
        lambda: all(gw.usage_requests(p) == len(BAD_BODIES) for p in (openai, anthropic)),
        10,
        "both providers' usage",
    )
    assert_bridged_healthy(gw, baseline)


def test_bridged_survives_deeply_nested_json(gateway: Gateway) -> None:
    gw = gateway
    baseline = fd_baseline(gw)
    for body in (b"[" * 50_000, b'{"a":' * 10_000):
        reply = exchange(gw.bridged.port, chat_request(gw.token, body=body), timeout=15)
        assert reply.status != 0, reply
        not_bridged_5xx(reply)
    assert_bridged_healthy(gw, baseline)


def test_bridged_passes_non_utf8_header_values(gateway: Gateway) -> None:
    """Header values that are not UTF-8, on headers bridged only forwards: no 5xx."""
    gw = gateway
    baseline = fd_baseline(gw)
    for header in (("X-Custom", b"\xff\xfe\x80"), ("anthropic-beta", b"caf\xe9"),
                   ("Accept", b"\xc3\x28")):  # fmt: skip
        reply = exchange(gw.bridged.port, chat_request(gw.token, header), timeout=15)
        assert reply.status == 200, (header, reply)
    assert_bridged_healthy(gw, baseline)


def test_bridged_non_utf8_credentials_are_401(gateway: Gateway) -> None:
    gw = gateway
    baseline = fd_baseline(gw)
    answers = {}
    for header in (("Authorization", b"Bearer \xff\xfe"), ("x-api-key", b"abt_\xff"),
                   ("Authorization", b"Bearer abt_caf\xe9")):  # fmt: skip
        data = request_bytes("POST", CHAT_PATH, [header], CHAT_BODY)
        answers[header] = exchange(gw.bridged.port, data, timeout=15).status
    assert set(answers.values()) == {401}, answers
    assert_bridged_healthy(gw, baseline)


def test_bridged_records_usage_of_odd_text(gateway: Gateway) -> None:
    gw = gateway
    baseline = fd_baseline(gw)
    openai, _ = gw.fresh_providers()
    path = f"/api/v2/aibridge/{openai}/v1/chat/completions"
    calls = [
        chat_request(gw.token, path=path),  # an ordinary one: the count works
        chat_request(gw.token, ("User-Agent", b"agent/\xff\xfe"), path=path),
        chat_request(gw.token, body=b'{"model": "\\ud800", "messages": []}', path=path),
        chat_request(
            gw.token,
            ("User-Agent", b"agent/\xe9"),
            path=path,
            body=b'{"model": "gpt", "messages": [], "stream": true}',
        ),
    ]
    for data in calls:
        reply = exchange(gw.bridged.port, data, timeout=15)
        assert reply.status == 200, reply
    wait_until(lambda: gw.usage_requests(openai) >= 1, 10, "the ordinary call's usage")
    wait_until(lambda: gw.usage_requests(openai) == len(calls), 3, "the odd calls' usage")
    assert_bridged_healthy(gw, baseline)


def test_bridged_truncated_and_silent_clients(gateway: Gateway) -> None:
    """Clients that stop mid-body, mid-head, or never say anything: others are served
    meanwhile, and every descriptor is released once they go."""
    gw = gateway
    baseline = fd_baseline(gw)
    seen = len(gw.upstream.seen)
    truncated = [
        chat_request(
            gw.token, ("Content-Length", "500"), body=b'{"model": "gp', content_length=False
        ),  # fmt: skip
        chunked(gw.token, b"10\r\n" + b"a" * 8),
        chunked(gw.token, b"4\r\nabcd\r\n"),  # no last chunk
        b"POST " + CHAT_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthor",  # mid-head
        b"GET /hea",  # mid request line
    ]
    held = []
    try:
        for data in truncated:
            sock = connect(gw.bridged.port)
            held.append(sock)
            sock.sendall(data)
        for _ in range(20):  # connect and say nothing
            held.append(connect(gw.bridged.port))
        # All of them open: the others are still served, and the descriptors show them.
        valid_chat(gw)
        assert httpx.get(gw.bridged.url + "/healthz", timeout=10).status_code == 200
        wait_until(
            lambda: open_fds(gw.pid) >= baseline + len(held), 10, "the held connections' fds"
        )
    finally:
        for sock in held:
            sock.close()
    assert len(gw.upstream.seen) == seen + 1  # the valid chat only
    assert_bridged_healthy(gw, baseline)


def test_bridged_half_closed_connections(gateway: Gateway) -> None:
    """A client that shuts its sending side: whatever bridged does, it is not a 5xx, it does
    not hang, and it leaks nothing."""
    gw = gateway
    baseline = fd_baseline(gw)
    for data in (
        chat_request(gw.token),  # a whole request, then FIN
        request_bytes("GET", "/healthz"),
        chat_request(gw.token, ("Content-Length", "99"), body=b"{", content_length=False),
        b"GET /healthz HTTP/1.1\r\nHost",  # half a head, then FIN
        b"",  # nothing at all, then FIN
    ):
        reply = exchange(gw.bridged.port, data, timeout=15, half_close=True)
        assert not reply.timed_out, (data[:40], reply)
        assert reply.status in (0, 200, 400), (data[:40], reply)
        not_bridged_5xx(reply)
        if reply.status == 200:
            assert reply.body, reply  # a complete answer, not a torn one
    assert_bridged_healthy(gw, baseline)


# ---------------------------------------------------------------------------------------
# 3. Malformed input to proxyd
# ---------------------------------------------------------------------------------------

PROXY_MAX_BODY = 64 * 1024
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Proxy:
    cp: Controlplane
    bridged: Bridged
    proxyd: Proxyd
    upstream: MockUpstream
    token: str

    @property
    def pid(self) -> int:
        assert self.proxyd.proc is not None
        return self.proxyd.proc.pid

    @property
    def target(self) -> str:
        """The intercepted provider host, as CONNECT names it."""
        return f"localhost:{self.upstream.port}"

    def basic(self, token: str | None = None) -> str:
        credentials = f"user:{self.token if token is None else token}".encode()
        return "Basic " + base64.b64encode(credentials).decode()

    def connect_head(self, target: bytes | str, token: str | None = None) -> bytes:
        raw = target if isinstance(target, bytes) else target.encode()
        return (
            b"CONNECT " + raw + b" HTTP/1.1\r\nHost: " + raw + b"\r\n"
            + b"Proxy-Authorization: " + self.basic(token).encode() + b"\r\n\r\n"
        )  # fmt: skip


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """A TLS upstream that is a provider's host, bridged trusting it, proxyd in front."""
    directory = tmp_path_factory.mktemp("proxy")
    secrets = Secrets()
    pki = UpstreamPKI.create(directory)
    context = pki.server_context()
    with contextlib.ExitStack() as stack:
        upstream = MockUpstream("A", tls=context).start()
        stack.callback(upstream.stop)
        cp = Controlplane(f"sqlite:///{directory / 'proxy.db'}", directory, secrets).start()
        stack.callback(cp.stop)
        bridged = Bridged(
            [cp.address],
            directory,
            secrets,
            extra_args=("--upstream-ca-file", str(pki.ca.cert_path)),
        ).start()
        stack.callback(bridged.stop)
        proxyd = Proxyd(
            [cp.address], bridged.url, directory, secrets,
            extra_args=("--max-body-bytes", str(PROXY_MAX_BODY)),
        ).start()  # fmt: skip
        stack.callback(proxyd.stop)
        cp.admin.create_provider("p", f"https://localhost:{upstream.port}/v1", keys=[KEY])
        created = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="faults"))
        cp.admin.wait_applied(created.revision)
        yield Proxy(cp, bridged, proxyd, upstream, created.token)


def tunnel(px: Proxy) -> ssl.SSLSocket:
    """An intercepted connection, TLS established with proxyd's leaf for the provider host."""
    status, sock = proxy_connect(px.proxyd.port, px.target, px.token)
    assert status == 200
    return tls(sock, "localhost", px.proxyd.ca_path)


def chat_through(px: Proxy) -> None:
    secure = tunnel(px)
    try:
        reply = HTTPConnection(secure, px.target).request("POST", "/v1/chat/completions", CHAT)
    finally:
        secure.close()
    assert reply.status == 200, reply
    assert reply.json()["choices"][0]["message"]["content"] == "hello from A"


def proxy_baseline(px: Proxy) -> int:
    chat_through(px)
    return settled_fds(px.pid)


def assert_proxyd_healthy(px: Proxy, baseline: int) -> None:
    """Alive, its local /readyz, a real request through it, and no descriptor left behind."""
    px.proxyd.check_alive()
    ready = exchange(px.proxyd.port, b"GET /readyz HTTP/1.1\r\nHost: p\r\n\r\n")
    assert ready.status == 200 and json.loads(ready.body)["ready"] is True, ready
    chat_through(px)
    wait_until(
        lambda: open_fds(px.pid) <= baseline, FD_DEADLINE,
        f"proxyd's descriptors back to {baseline} (now {open_fds(px.pid)})",
    )  # fmt: skip


def client_hello(server_name: str = "localhost") -> bytes:
    """A real TLS ClientHello, as the first flight of a real client."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_object = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls_object.do_handshake()
    hello = outgoing.read()
    assert hello.startswith(b"\x16\x03")
    return hello


@dataclass(frozen=True)
class ProxyBad:
    id: str
    data: Callable[[Proxy], bytes]
    allowed: frozenset[int]


def pbad(id: str, data: bytes | Callable[[Proxy], bytes], *allowed: int) -> Any:
    build = data if callable(data) else (lambda _px, raw=data: raw)
    return pytest.param(ProxyBad(id, build, frozenset(allowed)), id=id)


MALFORMED_PROXY_HEADS = [
    pbad("connect-bare", b"CONNECT\r\n\r\n", 400),
    pbad("connect-without-version", b"CONNECT localhost:443\r\n\r\n", 400),
    pbad("connect-no-port", lambda px: px.connect_head("localhost"), 400),
    pbad("connect-empty-port", lambda px: px.connect_head("localhost:"), 400),
    pbad("connect-no-host", lambda px: px.connect_head(":443"), 400),
    pbad("connect-port-0", lambda px: px.connect_head("localhost:0"), 400),
    pbad("connect-port-65536", lambda px: px.connect_head("localhost:65536"), 400),
    pbad("connect-port-negative", lambda px: px.connect_head("localhost:-1"), 400),
    pbad("connect-port-signed", lambda px: px.connect_head("localhost:+443"), 400),
    pbad("connect-port-huge", lambda px: px.connect_head("localhost:" + "9" * 50), 400),
    pbad("connect-port-arabic-digit", lambda px: px.connect_head("localhost:\u0661".encode()), 400),
    pbad("connect-empty-brackets", lambda px: px.connect_head("[]:443"), 400),
    pbad("connect-unclosed-bracket", lambda px: px.connect_head("[::1:443"), 400, 403),
    pbad("connect-userinfo", lambda px: px.connect_head("user@localhost:443"), 400),
    pbad("connect-with-path", lambda px: px.connect_head("localhost:443/admin"), 400),
    pbad("connect-non-ascii-host", lambda px: px.connect_head(b"\xff\xfe:443"), 400),
    pbad("connect-nul-host", lambda px: px.connect_head(b"a\x00b:443"), 400),
    pbad("connect-no-token", b"CONNECT localhost:443 HTTP/1.1\r\nHost: x\r\n\r\n", 407),
    pbad("connect-garbage-token", b"CONNECT localhost:443 HTTP/1.1\r\nHost: x\r\n"
         b"Proxy-Authorization: Basic \xff\xfe\x00\r\n\r\n", 400, 407),
    pbad("connect-token-not-utf8", lambda px: b"CONNECT localhost:443 HTTP/1.1\r\nHost: x\r\n"
         b"Proxy-Authorization: Basic " + base64.b64encode(b"user:abt_\xff\xfe") + b"\r\n\r\n",
         407),
    pbad("connect-token-huge", lambda px: px.connect_head(px.target, "abt_" + "x" * 30_000),
         407, 431),
    pbad("unknown-method-local", b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", 404, 405),
    pbad("unknown-method-absolute", b"FOO http://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    pbad("request-line-too-long", b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
         400, 414, 431),
    pbad("connect-line-too-long", lambda px: px.connect_head("a" * 200_000 + ":443"),
         400, 414, 431),
    pbad("header-too-long", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 200_000
         + b"\r\n\r\n", 400, 431),
    pbad("too-many-headers", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
         + b"".join(b"X-%d: a\r\n" % i for i in range(20_000)) + b"\r\n", 400, 431),
    pbad("binary-garbage", GARBAGE + b"\r\n\r\n", 0, 400),
    pbad("nul-bytes", b"\x00" * 100 + b"\r\n\r\n", 0, 400),
    pbad("tls-client-hello-to-the-proxy", lambda _px: client_hello(), 0, 400),
    pbad("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, 400, 405, 505),
    pbad("bad-content-length", b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
         400),
    pbad("bad-chunked-local", b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
         b"\r\n\r\nzz\r\n\r\n", 0, 200, 400),
]  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED_PROXY_HEADS)
def test_proxyd_refuses_malformed_heads_cleanly(proxy: Proxy, case: ProxyBad) -> None:
    baseline = proxy_baseline(proxy)
    seen = len(proxy.upstream.seen)
    reply = exchange(proxy.proxyd.port, case.data(proxy), timeout=10)
    assert not reply.timed_out, f"no answer and no close: {reply!r}"
    assert reply.status in case.allowed, f"{case.id}: {reply!r}"
    assert proxy.token.encode() not in reply.raw
    assert len(proxy.upstream.seen) == seen
    assert_proxyd_healthy(proxy, baseline)


def test_proxyd_answers_connect_to_an_unencodable_host(proxy: Proxy) -> None:
    baseline = proxy_baseline(proxy)
    answers = {}
    for host in ("a..b:443", ".:443", "a" * 64 + ".example:443", "x" * 300 + ":443"):
        answers[host[:20]] = exchange(proxy.proxyd.port, proxy.connect_head(host)).status
    assert all(status in (400, 403, 502) for status in answers.values()), answers
    assert "Unhandled exception" not in proxy.proxyd.log()
    assert_proxyd_healthy(proxy, baseline)


def read_until_close(sock: socket.socket, timeout: float = 20.0) -> tuple[bytes, bool]:
    """Everything until the peer closes; (bytes, closed) — closed False on the deadline."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def test_proxyd_tls_garbage_after_connect(proxy: Proxy) -> None:
    """What comes after a successful CONNECT to an intercepted host is not TLS, or stops
    partway: proxyd hangs up without a word of HTTP; everyone else is served."""
    px = proxy
    baseline = proxy_baseline(px)
    held = []
    try:
        for first_flight in (
            os.urandom(4096),  # random bytes instead of a ClientHello
            b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n",  # plain HTTP, no TLS
            b"\x16\x03\x01\xff\xff" + os.urandom(600),  # a TLS record header, then noise
            b"\x15\x03\x03\x00\x02\x02\x28",  # an alert before any hello
        ):
            status, sock = proxy_connect(px.proxyd.port, px.target, px.token)
            assert status == 200
            with sock:
                sock.sendall(first_flight)
                answer, closed = read_until_close(sock)
            assert closed, f"proxyd kept the connection after {first_flight[:16]!r}"
            assert b"HTTP/" not in answer, answer[:200]

        # A real ClientHello, then the client vanishes; a cut ClientHello, then silence.
        status, sock = proxy_connect(px.proxyd.port, px.target, px.token)
        assert status == 200
        sock.sendall(client_hello())
        sock.close()
        status, sock = proxy_connect(px.proxyd.port, px.target, px.token)
        assert status == 200
        sock.sendall(client_hello()[:40])
        held.append(sock)
        # CONNECT, then a half-close instead of a handshake.
        status, sock = proxy_connect(px.proxyd.port, px.target, px.token)
        assert status == 200
        sock.shutdown(socket.SHUT_WR)
        _answer, closed = read_until_close(sock)
        assert closed, "proxyd kept a connection its client had finished with"
        sock.close()
        # A ClientHello sent with the CONNECT, before proxyd's answer.
        with connect(px.proxyd.port) as sock:
            sock.sendall(px.connect_head(px.target) + client_hello())
            answer, closed = read_until_close(sock)
            assert closed and not answer.startswith(b"HTTP/1.1 5"), answer[:200]
        chat_through(px)  # served while the cut handshake is pending
    finally:
        for sock in held:
            sock.close()
    assert_proxyd_healthy(px, baseline)


def inside(request: bytes) -> Callable[[Proxy], bytes]:
    return lambda _px: request


def chat_inside(*headers: bytes, body: bytes = json.dumps(CHAT).encode(),
                target: bytes = b"/v1/chat/completions", length: bool = True) -> bytes:  # fmt: skip
    lines = [b"POST " + target + b" HTTP/1.1", b"Host: localhost", *headers]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


OVER_PROXY_LIMIT = b'{"pad": "' + b"x" * PROXY_MAX_BODY + b'"}'
# A body that cannot be parsed may be answered 400 or just closed (proxyd closes).
MALFORMED_INSIDE = [
    pbad("bad-chunk-size", inside(chat_inside(b"Transfer-Encoding: chunked",
                                              body=b"zz\r\nabc\r\n0\r\n\r\n", length=False)),
         0, 400),
    pbad("chunk-longer-than-declared", inside(chat_inside(
        b"Transfer-Encoding: chunked", body=b"3\r\nabcdef\r\n0\r\n\r\n", length=False)),
        0, 400),
    pbad("body-over-limit", inside(chat_inside(body=OVER_PROXY_LIMIT)), 413),
    pbad("chunked-over-limit", inside(chat_inside(
        b"Transfer-Encoding: chunked",
        body=b"".join(b"2000\r\n" + b"x" * 0x2000 + b"\r\n" for _ in range(9)) + b"0\r\n\r\n",
        length=False)), 413),
    pbad("content-length-not-a-number", inside(chat_inside(
        b"Content-Length: abc", body=b"{}", length=False)), 400),
    # Refused, or framed by Transfer-Encoding alone (RFC 9112 6.3) and re-framed for bridged.
    pbad("content-length-and-chunked", inside(chat_inside(
        b"Content-Length: 5", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n", length=False)),
        200, 400),
    pbad("absolute-form-target", inside(chat_inside(
        target=b"https://localhost/v1/chat/completions")), 400),
    pbad("dot-segments", inside(chat_inside(target=b"/v1/../../admin")), 400),
    pbad("encoded-dot-segments", inside(chat_inside(target=b"/v1/%2e%2E/%2e%2e/admin")), 400),
    pbad("asterisk-target", inside(b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n"), 400),
    pbad("nul-in-header", inside(chat_inside(b"X-A: a\x00b")), 400),
    pbad("header-without-colon", inside(chat_inside(b"NoColon")), 400),
    pbad("target-too-long", inside(b"GET /v1/" + b"a" * 100_000 + b" HTTP/1.1\r\n"
                                   b"Host: localhost\r\n\r\n"), 400, 414, 431),
    pbad("not-http-inside-tls", inside(GARBAGE + b"\r\n\r\n"), 0, 400),
    pbad("non-utf8-header-value", inside(chat_inside(b"X-Custom: \xff\xfe\x80")), 200),
    pbad("non-utf8-user-agent", inside(chat_inside(b"User-Agent: agent/\xe9")), 200),
    pbad("unknown-method", inside(b"BREW /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n"),
         400, 404, 405),
]  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED_INSIDE)
def test_proxyd_malformed_requests_inside_the_tunnel(proxy: Proxy, case: ProxyBad) -> None:
    """Decrypted, the request is still hostile: a clean status (or a close), the upstream
    sees only what it should, and proxyd keeps serving."""
    px = proxy
    baseline = proxy_baseline(px)
    seen = len(px.upstream.seen)
    with tunnel(px) as secure:
        send_quietly(secure, case.data(px))
        reply = read_reply(secure, 15)
    assert not reply.timed_out, f"no answer and no close: {reply!r}"
    assert reply.status in case.allowed, f"{case.id}: {reply!r}"
    if reply.status >= 500:
        assert reply.header("x-aibridge-request-id"), f"a 5xx of the gateway's own: {reply!r}"
    if reply.status != 200:
        assert len(px.upstream.seen) == seen, "a refused request reached the upstream"
    assert_proxyd_healthy(px, baseline)


def test_proxyd_truncated_idle_and_half_open_connections(proxy: Proxy) -> None:
    px = proxy
    baseline = proxy_baseline(px)
    held: list[socket.socket] = []
    try:
        # Say nothing at all; stop mid-line; stop mid-CONNECT head.
        for data in (b"", b"CONNECT local", px.connect_head(px.target)[:-2]):
            sock = connect(px.proxyd.port)
            sock.sendall(data)
            held.append(sock)
        # Inside the tunnel: a body cut short, then the client stays.
        secure = tunnel(px)
        held.append(secure)
        secure.sendall(chat_inside(b"Content-Length: 500", body=b'{"mo', length=False))
        # Everyone else is served meanwhile, and the descriptors show the held ones.
        chat_through(px)
        wait_until(lambda: open_fds(px.pid) >= baseline + len(held), 10, "held connections' fds")
    finally:
        for sock in held:
            sock.close()

    # Half-closed after a whole request, a partial one, or nothing.
    for data, allowed in (
        (b"GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n", {200}),
        (b"GET /healthz HTTP/1.1\r\nHo", {0, 400}),
        (b"CONNECT localhost:", {0, 400}),
        (b"", {0}),
        (px.connect_head(px.target), {0, 200}),
    ):
        reply = exchange(px.proxyd.port, data, timeout=15, half_close=True)
        assert not reply.timed_out, (data[:30], reply)
        assert reply.status in allowed, (data[:30], reply)
    # A truncated body inside the tunnel, then a close.
    secure = tunnel(px)
    secure.sendall(chat_inside(b"Content-Length: 500", body=b'{"mo', length=False))
    secure.close()
    assert_proxyd_healthy(px, baseline)
