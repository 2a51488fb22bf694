"""Fault injection: no secret ever leaks.

One whole scenario with known, distinctive secrets (provider keys, gateway tokens, the
role credentials, the encryption key): providers created with keys through aibridgectl
and the admin API, calls through bridged and through proxyd that succeed, that the
upstream refuses (401), that carry a wrong token or the client's own provider key; keys
added, rotated and removed, a token revoked, a provider deleted, every listing command.

Then every place a secret could end up is searched, byte for byte: each process's log,
every admin listing, aibridgectl's output, the HTTP endpoints of the data planes and the
controlplane's metrics, proxyd's snapshot (which must never hold a provider key), every
file in each data plane's state directory (bridged's snapshot cache is encrypted,
proxyd's holds no key at all), and the SQLite database files themselves (keys are stored
encrypted). Positive controls check that each place searched is the right one and that
the secrets were really used.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream
from tests.conftest import UpstreamPKI
from tests.harness import (
    Bridged,
    Controlplane,
    Proxyd,
    RecordingSubscriber,
    Secrets,
    ctl,
    wait_until,
)
from tests.proxy_client import HTTPConnection, connect, tls
from tests.rawhttp import exchange

pytestmark = pytest.mark.faults

CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


@dataclass(frozen=True)
class Secret:
    """A secret and the forms of it that must not appear either (its distinctive core,
    its Basic-auth encoding...)."""

    label: str
    forms: tuple[str, ...]

    def found_in(self, blob: bytes) -> bool:
        return any(form.encode() in blob for form in self.forms)


def key_secret(name: str) -> tuple[str, Secret]:
    core = uuid.uuid4().hex
    value = f"sk-live-LEAKCHECK-{name}-{core}"
    return value, Secret(f"provider key {name}", (value, core))


def token_secret(label: str, plaintext: str) -> Secret:
    basic = base64.b64encode(f"user:{plaintext}".encode()).decode()
    # The hint shows the first 8 characters (abt_XXXX); everything after them is secret.
    return Secret(label, (plaintext, plaintext[8:], basic))


def credential_secret(label: str, value: str) -> Secret:
    return Secret(label, (value, value.rsplit("_", 1)[-1]))


@dataclass
class Scenario:
    """Everything the scenario produced, gathered for the tests below to search."""

    keys: dict[str, str] = field(default_factory=dict)  # name → plaintext
    key_secrets: list[Secret] = field(default_factory=list)
    token_secrets: list[Secret] = field(default_factory=list)
    role_secrets: list[Secret] = field(default_factory=list)
    logs: dict[str, bytes] = field(default_factory=dict)
    admin: dict[str, bytes] = field(default_factory=dict)
    ctl_outputs: dict[str, bytes] = field(default_factory=dict)
    token_create_output: str = ""
    http: dict[str, bytes] = field(default_factory=dict)
    proxyd_snapshot: bytes = b""
    bridged_snapshot: bytes = b""
    state_files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # role → files
    database_files: list[dict[str, bytes]] = field(default_factory=list)  # running, stopped
    upstream_keys: list[str] = field(default_factory=list)
    upstream_headers: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    bridged_cache: bytes | None = None  # bridged's snapshot cache, decrypted, if it has one

    @property
    def every_secret(self) -> list[Secret]:
        return self.key_secrets + self.token_secrets + self.role_secrets


def leaked(secrets: list[Secret], places: dict[str, bytes]) -> list[tuple[str, str]]:
    return [
        (secret.label, place)
        for place, blob in places.items()
        for secret in secrets
        if secret.found_in(blob)
    ]


def files_under(directory: Path) -> dict[str, bytes]:
    if not directory.exists():
        return {}
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def database_files(db_path: Path) -> dict[str, bytes]:
    """The SQLite database and its -wal/-shm/-journal companions, as raw bytes."""
    return {
        path.name: path.read_bytes()
        for path in sorted(db_path.parent.glob(db_path.name + "*"))
        if path.is_file()
    }


def decrypted_cache(path: Path, credential: str) -> bytes | None:
    """bridged's snapshot cache opened with its credential: a positive control that the
    file searched for plaintext keys really holds them, encrypted."""
    try:
        from common.snapshot_file import SnapshotFile
    except ImportError:  # no cache in this version
        return None
    if not path.exists():
        return None
    snapshot = SnapshotFile(path, credential).load("bridged")
    return snapshot.SerializeToString() if snapshot is not None else b""


def get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()
    except urllib.error.HTTPError as exc:  # /readyz answers 503 while not ready
        return exc.read()


def chat_through_proxy(
    proxyd: Proxyd, host: str, port: int, token: str, headers: dict[str, str] | None = None
) -> int:
    status, sock = connect(proxyd.port, f"{host}:{port}", token)
    if status != 200:
        sock.close()
        return status
    conn = HTTPConnection(tls(sock, host, proxyd.ca_path), f"{host}:{port}")
    try:
        return conn.request("POST", "/v1/chat/completions", CHAT, headers).status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp("secrets")
    # Each process has a directory of its own: its log, its state directory.
    cp_dir, bridged_dir, proxyd_dir = root / "cp", root / "bridged", root / "proxyd"
    for directory in (cp_dir, bridged_dir, proxyd_dir):
        directory.mkdir()
    db_path = cp_dir / "aibridge.db"
    secrets = Secrets()
    s = Scenario()
    for name in ("first", "refused", "onlybad", "claude", "second", "rotated", "invalid",
                 "client-own"):  # fmt: skip
        s.keys[name], secret = key_secret(name)
        s.key_secrets.append(secret)
    wrong_token = f"abt_LEAKCHECK_wrong_{uuid.uuid4().hex}"
    s.token_secrets.append(token_secret("a wrong gateway token", wrong_token))
    s.role_secrets = [
        credential_secret("admin credential", secrets.admin),
        credential_secret("bridged credential", secrets.bridged),
        credential_secret("proxyd credential", secrets.proxyd),
        Secret("encryption key", (secrets.encryption_key,)),
    ]
    keys = s.keys

    pki = UpstreamPKI.create(root)
    context = pki.server_context()

    with contextlib.ExitStack() as stack:
        upstream = MockUpstream("A", tls=context).start()
        stack.callback(upstream.stop)
        upstream.key_status = {keys["refused"]: 401, keys["onlybad"]: 401}
        cp = Controlplane(
            f"sqlite:///{db_path}", cp_dir, secrets, extra_args=("--log-level", "debug")
        ).start()
        stack.callback(cp.stop)
        bridged = Bridged(
            [cp.address], bridged_dir, secrets,
            extra_args=("--upstream-ca-file", str(pki.ca.cert_path), "--log-level", "debug"),
        ).start()  # fmt: skip
        stack.callback(bridged.stop)
        proxyd = Proxyd(
            [cp.address], bridged.url, proxyd_dir, secrets,
            extra_args=("--log-level", "debug", "--log-format", "json"),
        ).start()  # fmt: skip
        stack.callback(proxyd.stop)
        admin = cp.admin
        base_url = f"https://localhost:{upstream.port}/v1"

        def run_ctl(label: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            result = ctl(cp, *args, check=check)
            s.ctl_outputs[label] = (result.stdout + result.stderr).encode()
            return result

        # Providers, by aibridgectl and by the API; the refused key is tried first.
        run_ctl(
            "providers create llm", "providers", "create", "llm", "--type", "openai",
            "--base-url", base_url, "--key", keys["refused"], "--key", keys["first"],
        )  # fmt: skip
        admin.create_provider("onlybad2", base_url, keys=[keys["onlybad"]])
        admin.create_provider(
            "claude", f"https://127.0.0.1:{upstream.port}", type="anthropic",
            display_name="LEAKCHECK display name", keys=[keys["claude"]],
        )  # fmt: skip
        # Refused keys: the error never repeats them.
        refused = run_ctl("providers create bad key", "providers", "create", "badkey", "--type",
                          "openai", "--base-url", base_url, "--key", " " + keys["invalid"],
                          check=False)  # fmt: skip
        assert refused.returncode != 0
        with pytest.raises(grpc.RpcError) as invalid:
            admin.create_provider("badkey2", base_url, keys=[keys["invalid"] + "\n"])
        s.admin["CreateProvider refusal"] = str(invalid.value).encode()

        # Gateway tokens: the plaintext is printed once, by the create command.
        created = run_ctl("tokens create alice", "tokens", "create", "alice")
        (alice,) = re.findall(r"^\s+(abt_\S+)$", created.stdout, re.M)
        s.token_create_output = created.stdout
        del s.ctl_outputs["tokens create alice"]  # it must show the token, once
        bob = admin.CreateToken(
            admin_pb2.CreateTokenRequest(name="bob", expires_in_seconds=3600)
        ).token
        s.token_secrets += [token_secret("token alice", alice), token_secret("token bob", bob)]
        admin.wait_applied(admin.revision())

        # Through bridged: failover past a refused key, Anthropic, streaming, a wrong
        # token, every key refused, and the client's own key sent along.
        def post(provider: str, path: str, headers: dict[str, str], **kw: Any) -> int:
            return httpx.post(
                f"{bridged.provider_url(provider)}{path}", headers=headers, timeout=30, **kw,
            ).status_code  # fmt: skip

        bearer = {"Authorization": f"Bearer {alice}"}
        s.statuses["chat after a refused key"] = post("llm", "/v1/chat/completions", bearer,
                                                      json=CHAT)  # fmt: skip
        s.statuses["messages"] = post(
            "claude", "/v1/messages", {"x-api-key": bob, "anthropic-version": "2023-06-01"},
            json={"model": "claude", "max_tokens": 5, "messages": []},
        )  # fmt: skip
        s.statuses["stream"] = post(
            "llm", "/v1/chat/completions", bearer, json=CHAT | {"stream": True}
        )
        s.statuses["wrong token"] = post(
            "llm", "/v1/chat/completions", {"Authorization": f"Bearer {wrong_token}"}, json=CHAT
        )
        s.statuses["every key refused"] = post("onlybad2", "/v1/chat/completions", bearer,
                                               json=CHAT)  # fmt: skip
        s.statuses["client's own key"] = post(
            "llm", "/v1/chat/completions", bearer | {"x-api-key": keys["client-own"]}, json=CHAT
        )

        # Through proxyd: intercepted calls (one with the client's own key, which must be
        # dropped), a wrong token, a revoked-to-be token.
        s.statuses["proxy chat"] = chat_through_proxy(proxyd, "localhost", upstream.port, alice)
        s.statuses["proxy chat with own key"] = chat_through_proxy(
            proxyd, "localhost", upstream.port, bob,
            {"Authorization": f"Bearer {keys['client-own']}"},
        )  # fmt: skip
        s.statuses["proxy wrong token"] = chat_through_proxy(
            proxyd, "localhost", upstream.port, wrong_token
        )

        # Rotation: add keys, remove the first, revoke a token, delete a provider.
        llm = admin.GetProvider(admin_pb2.GetProviderRequest(ref="llm"))
        first_id = llm.keys[1].id
        run_ctl("providers update", "providers", "update", "llm", "--add-key", keys["rotated"],
                "--remove-key", first_id, "--display-name", "rotated")  # fmt: skip
        admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref="llm", add_keys=[keys["second"]]))
        run_ctl("tokens revoke bob", "tokens", "revoke", "bob")
        run_ctl("providers delete claude", "providers", "delete", "claude")
        admin.wait_applied(admin.revision())
        s.statuses["chat after rotation"] = post("llm", "/v1/chat/completions", bearer, json=CHAT)
        s.statuses["proxy revoked token"] = chat_through_proxy(
            proxyd, "localhost", upstream.port, bob
        )
        s.statuses["proxy chat after rotation"] = chat_through_proxy(
            proxyd, "localhost", upstream.port, alice
        )
        wait_until(
            lambda: sum(
                r.requests
                for r in admin.QueryUsage(admin_pb2.QueryUsageRequest(group_by="token")).rows
            ) >= 7,
            15, "usage to be recorded",
        )  # fmt: skip

        # Every listing, both ways.
        for label, args in (
            ("status", ("status",)),
            ("status --json", ("--json", "status")),
            ("providers list", ("providers", "list")),
            ("providers list --json", ("--json", "providers", "list")),
            ("providers get --json", ("--json", "providers", "get", "llm")),
            ("providers get", ("providers", "get", "llm")),
            ("tokens list", ("tokens", "list")),
            ("tokens list --json", ("--json", "tokens", "list")),
            ("audit --json", ("--json", "audit", "--limit", "1000")),
            ("audit", ("audit", "--limit", "1000")),
            ("usage --json", ("--json", "usage", "--by", "token")),
            ("usage by model", ("usage", "--by", "model")),
        ):
            run_ctl(label, *args)
        for label, message in (
            ("ListProviders", admin.ListProviders(admin_pb2.ListProvidersRequest())),
            ("GetProvider", admin.GetProvider(admin_pb2.GetProviderRequest(ref="llm"))),
            ("ListTokens", admin.ListTokens(admin_pb2.ListTokensRequest(include_revoked=True))),
            ("ListAudit", admin.ListAudit(admin_pb2.ListAuditRequest(limit=10_000))),
            ("GetStatus", admin.GetStatus(admin_pb2.GetStatusRequest())),
            ("QueryUsage", admin.QueryUsage(admin_pb2.QueryUsageRequest(group_by="token"))),
        ):
            s.admin[label] = message.SerializeToString() + str(message).encode()

        for label, url in (
            ("bridged /metrics", bridged.url + "/metrics"),
            ("bridged /readyz", bridged.url + "/readyz"),
            ("bridged /healthz", bridged.url + "/healthz"),
            ("proxyd /metrics", proxyd.url + "/metrics"),
            ("proxyd /readyz", proxyd.url + "/readyz"),
            ("proxyd /ca.pem", proxyd.url + "/ca.pem"),
            ("controlplane /metrics", f"http://127.0.0.1:{cp.metrics_port}/metrics"),
        ):
            s.http[label] = get(url)

        # The snapshots each role is sent, as the real subscriber library receives them.
        async def snapshots() -> tuple[bytes, bytes]:
            revision = admin.revision()
            as_proxyd = RecordingSubscriber(
                [cp.address], "proxyd", secrets.proxyd, subscriber_id="leakcheck-proxyd"
            ).start()
            as_bridged = RecordingSubscriber(
                [cp.address], "bridged", secrets.bridged, subscriber_id="leakcheck-bridged"
            ).start()
            try:
                await as_proxyd.wait_version(revision)
                await as_bridged.wait_version(revision)
                assert as_proxyd.current is not None and as_bridged.current is not None
                return (
                    b"".join(x.SerializeToString() for x in as_proxyd.applied),
                    b"".join(x.SerializeToString() for x in as_bridged.applied),
                )
            finally:
                await as_proxyd.stop()
                await as_bridged.stop()

        s.proxyd_snapshot, s.bridged_snapshot = asyncio.run(snapshots())
        s.upstream_keys = [seen.key for seen in upstream.seen]
        s.upstream_headers = [json.dumps(seen.headers) for seen in upstream.seen]

        # On disk while everything runs (the WAL holds the latest writes)...
        s.database_files.append(database_files(db_path))
        s.state_files["bridged (running)"] = files_under(bridged_dir / "state")
        s.state_files["proxyd (running)"] = files_under(proxyd_dir / "state")
        # ...and once every process has stopped, with their last log lines.
        for process in (proxyd, bridged, cp):
            process.stop()
    s.database_files.append(database_files(db_path))
    s.state_files["bridged"] = files_under(bridged_dir / "state")
    s.state_files["proxyd"] = files_under(proxyd_dir / "state")
    s.state_files["controlplane"] = files_under(cp_dir / "state")
    s.bridged_cache = decrypted_cache(bridged_dir / "state" / "bridged.snapshot", secrets.bridged)
    s.logs = {
        "controlplane": cp.log_path.read_bytes(),
        "bridged": bridged.log_path.read_bytes(),
        "proxyd": proxyd.log_path.read_bytes(),
    }
    yield s


def test_the_scenario_used_every_secret(scenario: Scenario) -> None:
    """Positive controls: the calls went as planned and the keys were really injected, so
    that their absence everywhere else means something."""
    s = scenario
    assert s.statuses == {
        "chat after a refused key": 200,
        "messages": 200,
        "stream": 200,
        "wrong token": 401,
        "every key refused": 502,
        "client's own key": 200,
        "proxy chat": 200,
        "proxy chat with own key": 200,
        "proxy wrong token": 407,
        "chat after rotation": 200,
        "proxy revoked token": 407,
        "proxy chat after rotation": 200,
    }, s.statuses
    keys = s.keys
    for name in ("refused", "first", "claude", "onlybad", "rotated"):
        assert keys[name] in s.upstream_keys, f"the {name} key was never sent upstream"
    assert keys["second"] not in s.upstream_keys  # behind "rotated" in failover order
    # The client's own key and the gateway tokens never reach the upstream.
    for leak in (keys["client-own"], *[t.forms[0] for t in s.token_secrets]):
        assert not any(leak in headers for headers in s.upstream_headers)
    # The bridged cut carries the live keys (so the proxyd cut is searched for real).
    assert keys["rotated"].encode() in s.bridged_snapshot
    assert keys["second"].encode() in s.bridged_snapshot
    # The token was printed by its create command, once.
    alice = next(t for t in s.token_secrets if t.label == "token alice").forms[0]
    assert s.token_create_output.count(alice) == 1
    assert "will not be shown again" in s.token_create_output


def test_no_secret_in_any_log(scenario: Scenario) -> None:
    s = scenario
    for name, log in s.logs.items():
        assert log, f"{name} wrote no log"
    # The logs are the ones written by this scenario, at debug level.
    assert b"applied snapshot" in s.logs["bridged"]
    assert b"refused key" in s.logs["bridged"]  # the 401 from the upstream was logged
    assert b"serving gRPC" in s.logs["controlplane"]
    assert leaked(s.every_secret, s.logs) == []


def test_no_secret_in_any_admin_answer(scenario: Scenario) -> None:
    s = scenario
    listing = s.admin["ListProviders"].decode(errors="replace")
    assert "llm" in listing and "…" in listing  # hints, not keys
    assert leaked(s.every_secret, s.admin) == []


def test_no_secret_in_aibridgectl_output(scenario: Scenario) -> None:
    s = scenario
    assert b"llm" in s.ctl_outputs["providers list --json"]
    assert b"key" in s.ctl_outputs["providers create bad key"]  # it did refuse the key
    assert leaked(s.every_secret, s.ctl_outputs) == []
    # The one output that shows a token shows nothing else secret.
    others = [t for t in s.every_secret if t.label != "token alice"]
    assert leaked(others, {"tokens create alice": s.token_create_output.encode()}) == []


def test_no_secret_on_the_http_endpoints(scenario: Scenario) -> None:
    s = scenario
    assert b"aibridge_bridged" in s.http["bridged /metrics"]
    assert b'"ready": true' in s.http["bridged /readyz"]
    assert b"BEGIN CERTIFICATE" in s.http["proxyd /ca.pem"]
    assert leaked(s.every_secret, s.http) == []


def test_proxyd_is_never_sent_a_provider_key(scenario: Scenario) -> None:
    s = scenario
    snapshot = s.proxyd_snapshot
    assert b"llm" in snapshot and b"localhost" in snapshot  # routing metadata is there
    assert leaked(s.every_secret, {"proxyd's snapshot": snapshot}) == []


def test_no_plaintext_secret_in_the_data_planes_state(scenario: Scenario) -> None:
    """bridged's snapshot cache is encrypted, proxyd's holds no key at all; whatever else
    either keeps on disk, no key, token or credential is in it in plaintext."""
    s = scenario
    assert s.state_files["proxyd"], "proxyd's state directory is empty (no CA?)"
    places = {
        f"{role}/{name}": blob
        for role, files in s.state_files.items()
        for name, blob in files.items()
    }  # fmt: skip
    assert leaked(s.every_secret, places) == []
    if s.bridged_cache is not None:
        # The cache holds the live keys: encrypted, so the search above meant something.
        assert s.keys["rotated"].encode() in s.bridged_cache


def test_no_plaintext_key_in_the_database_files(scenario: Scenario) -> None:
    """The raw bytes of the SQLite database, WAL included, running and stopped: keys are
    stored encrypted, tokens as hashes."""
    s = scenario
    running, stopped = s.database_files
    assert "aibridge.db" in stopped
    assert any(
        b"LEAKCHECK display name" in blob for blob in [*running.values(), *stopped.values()]
    ), "the database files searched are not this scenario's"
    places = {f"running/{n}": b for n, b in running.items()}
    places |= {f"stopped/{n}": b for n, b in stopped.items()}
    assert leaked(s.every_secret, places) == []


def test_a_malformed_credential_header_is_never_logged(tmp_path: Path) -> None:
    """A gateway token with a stray carriage return (a CRLF .env file) or a control
    character makes the header invalid: refused, and the token is not written anywhere."""
    secrets = Secrets()
    with contextlib.ExitStack() as stack:
        cp = Controlplane(f"sqlite:///{tmp_path / 'aibridge.db'}", tmp_path, secrets).start()
        stack.callback(cp.stop)
        bridged = Bridged([cp.address], tmp_path, secrets).start()
        stack.callback(bridged.stop)
        created = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="crlf"))
        cp.admin.wait_applied(created.revision)
        token, own_key = created.token, f"sk-live-LEAKCHECK-own-{uuid.uuid4().hex}"
        for header in (
            b"Authorization: Bearer " + token.encode() + b"\r",
            b"Authorization: Bearer " + token.encode() + b"\x01",
            b"x-api-key: " + own_key.encode() + b"\x00",
        ):
            request = (
                b"POST /api/v2/aibridge/llm/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                + header + b"\r\nContent-Length: 2\r\n\r\n{}"
            )  # fmt: skip
            reply = exchange(bridged.port, request)
            assert 400 <= reply.status < 500, reply
        # The refusals are logged (or not) by the time the answers are out; a normal request
        # after them is logged after them, so the log is complete up to here.
        assert httpx.get(bridged.url + "/healthz", timeout=10).status_code == 200
        bridged.stop()
        log = bridged.log_path.read_bytes()
    assert b"applied snapshot" in log
    secrets_found = [
        s.label
        for s in (token_secret("the token", token), key_secret_of("the client's key", own_key))
        if s.found_in(log)
    ]
    assert secrets_found == [], f"{secrets_found} written to bridged's log"


def key_secret_of(label: str, value: str) -> Secret:
    return Secret(label, (value, value.rsplit("-", 1)[-1]))
