"""Real processes for tests: the controlplane, databases, admin and subscriber clients."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, Self, cast

import grpc
import httpx
import psycopg
import sqlalchemy as sa
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aibridge.v1 import admin_pb2, admin_pb2_grpc, usage_pb2, usage_pb2_grpc
from common.state import (
    ADMIN_TOKEN_FILE,
    BRIDGED_TOKEN_FILE,
    DEFAULT_STATE_DIR,
    ENCRYPTION_KEYS_FILE,
    PROXYD_TOKEN_FILE,
    VIEWER_TOKEN_FILE,
)
from common.subscriber import ApplyResult, ProviderSnapshot, Subscriber
from controlplane.store.models import Interception
from mockupstream import OPENAI_USAGE

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"


def _port_block() -> Iterator[int]:
    """Ports for the processes a test starts: below the kernel's ephemeral range, where
    outgoing connections and bind(0) take theirs (a port freed by bind(0) could be taken
    again before the process bound it), in a block of its own for each xdist worker."""
    low = 32768  # Linux's default, if the file says otherwise nothing
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = 2000
    first = 10_000 + worker * size
    if first + size > low:  # an unusual range: fall back on the kernel's choice
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            yield port  # closed first: the caller binds it
    yield from itertools.cycle(range(first, first + size))


_PORTS = _port_block()


def free_port() -> int:
    """A port nothing listens on, and that nothing else in this run will be given."""
    for port in _PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use: a process of another run, or a test's that still lives
            return port
    raise AssertionError("no free port")


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """Process `pid`'s resident memory now (VmRSS), or at its peak (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    assert found is not None, f"no {field} in /proc/{pid}/status"
    return int(found.group(1)) * 1024


class HealthClient(Protocol):
    """grpc_health's HealthStub: its typeshed stub declares none of the methods it sets."""

    Check: grpc.UnaryUnaryMultiCallable[
        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    ]
    Watch: grpc.UnaryStreamMultiCallable[
        health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
    ]


def health_stub(channel: grpc.Channel) -> HealthClient:
    return cast(HealthClient, health_pb2_grpc.HealthStub(channel))


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Polls `predicate` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


async def async_wait_until(
    predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards. Fails if unreachable."""
    name = f"aibridge_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def backup_of(url: str, directory: Path) -> Iterator[str]:
    """A copy of a database nothing is writing to: same identity, same revision."""
    if url.startswith("sqlite"):
        copy = directory / "backup.db"
        # SQLite's online backup: what is still in the write-ahead log is copied too.
        source = sqlite3.connect(url.removeprefix("sqlite:///"))
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        yield f"sqlite:///{copy}"
        return
    name = url.rsplit("/", 1)[1]
    with postgres_database() as backup:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{backup.rsplit("/", 1)[1]}"')
            conn.execute(f'CREATE DATABASE "{backup.rsplit("/", 1)[1]}" TEMPLATE "{name}"')
        yield backup


@dataclass(frozen=True, kw_only=True)
class Secrets:
    """Known secret strings, so tests can check they never leak."""

    admin: str = field(default_factory=lambda: f"aba_admin_{uuid.uuid4().hex}")
    viewer: str = field(default_factory=lambda: f"abv_viewer_{uuid.uuid4().hex}")
    bridged: str = field(default_factory=lambda: f"abb_bridged_{uuid.uuid4().hex}")
    proxyd: str = field(default_factory=lambda: f"abp_proxyd_{uuid.uuid4().hex}")
    encryption_key: str = "cw_0x689RpI-jtRR7oE8h_eQsVVNhAAxBlHIpXyEXhA="  # test-only Fernet key

    def env(self) -> dict[str, str]:
        return {
            "AIBRIDGE_ADMIN_TOKEN": self.admin,
            "AIBRIDGE_VIEWER_TOKEN": self.viewer,
            "AIBRIDGE_BRIDGED_TOKEN": self.bridged,
            "AIBRIDGE_PROXYD_TOKEN": self.proxyd,
            "AIBRIDGE_ENCRYPTION_KEYS": self.encryption_key,
        }


def unique(name: str) -> str:
    """`name` with a random suffix: a test's own name for a user, team, token or provider
    on a controlplane the module's tests share (`name` is a valid name, so is this)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def instance_key() -> str:
    """A fresh instance key, for a test's own raw Watch stream (a Subscriber makes its own)."""
    return uuid.uuid4().hex + uuid.uuid4().hex


def clean_env() -> dict[str, str]:
    """The environment without any AIBRIDGE_* a developer may have exported."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIBRIDGE_")}


def insert_copy(url: str, template: str, **changes: str) -> None:
    """A provider row written straight into the database, bypassing the admin API's
    validation: a copy of `template`'s row with `changes`."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            row = dict(
                conn.execute(sa.text("SELECT * FROM providers WHERE name = :n"), {"n": template})
                .mappings().one()
            )  # fmt: skip
            row |= changes
            columns = ", ".join(row)
            values = ", ".join(f":{c}" for c in row)
            conn.execute(sa.text(f"INSERT INTO providers ({columns}) VALUES ({values})"), row)
    finally:
        engine.dispose()


class AdminClient:
    """The Admin stub with the admin credential and a deadline on every call."""

    def __init__(
        self, address: str, token: str, credentials: grpc.ChannelCredentials | None = None
    ):
        if credentials is None:
            self.channel = grpc.insecure_channel(address)
        else:
            self.channel = grpc.secure_channel(address, credentials)
        self.stub = admin_pb2_grpc.AdminStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"), ("x-aibridge-actor", "tester"))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return functools.partial(getattr(self.stub, name), metadata=self.metadata, timeout=15)

    def create_provider(
        self, name: str, base_url: str = "https://api.example.com/v1", **kw: Any
    ) -> admin_pb2.ProviderResponse:
        kw.setdefault("type", "openai")
        return self.CreateProvider(
            admin_pb2.CreateProviderRequest(name=name, base_url=base_url, **kw)
        )

    def revision(self) -> int:
        return self.GetStatus(admin_pb2.GetStatusRequest()).revision

    def wait_applied(
        self, revision: int, timeout: float = 15.0, fleet_grace: float | None = None
    ) -> None:
        """Every subscriber applied `revision`: those connected, and those disconnected
        within `fleet_grace` seconds (the API's default unless given; 0 when the test knows
        the ones that vanished are gone for good)."""
        request = admin_pb2.WaitForRevisionRequest(revision=revision, timeout_seconds=timeout)
        if fleet_grace is not None:
            request.fleet_grace_seconds = fleet_grace
        response = self.WaitForRevision(request)
        assert response.done, f"laggards at revision {revision}: {response.laggards}"

    def close(self) -> None:
        self.channel.close()


class ManagedProcess:
    """A server process a test starts, stops, kills and reads the log of."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, command: list[str], env: dict[str, str]) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGUSR1)  # its stacks into the log, for the failure
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(1)
                self.proc.kill()
                self.proc.wait()
        self.stopped()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stopped()

    def stopped(self) -> None:
        """Hook: release clients of the process."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def url(self) -> str:
        """HTTP processes: where /healthz, /readyz and /metrics are."""
        return ""

    def wait_http(self, path: str, timeout: float = 30.0) -> None:
        def answers() -> bool:
            self.check_alive()
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(answers, timeout, f"{self.name} {path}")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as response:
            return response.read().decode()


class Controlplane(ManagedProcess):
    """One `aibridge-controlplane` process, restartable on the same port and database."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        secrets: Secrets,
        *,
        name: str = "controlplane",
        extra_args: tuple[str, ...] = (),
        port: int | None = None,
        generated_secrets: bool = False,
    ) -> None:
        """With `generated_secrets`, the process gets no credential in its environment and
        the default state dir (`.aibridge` in `workdir`), as after a fresh `make run`;
        `secrets` is replaced by what it generated there once it serves. An empty
        `database_url` leaves the default (SQLite in the state dir)."""
        super().__init__(name, workdir)
        self.generated_secrets = generated_secrets
        self.database_url = database_url
        self.secrets = secrets
        self.extra_args = extra_args
        self.port = port or free_port()
        self.metrics_port = free_port()
        self._admin: AdminClient | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(self.address, self.secrets.admin, self.channel_credentials())
        return self._admin

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        return None

    def command(self) -> list[str]:
        # Relative, as by default: it resolves against the process's cwd, `workdir`.
        state_dir = DEFAULT_STATE_DIR if self.generated_secrets else str(self.state_dir)
        database = ["--database-url", self.database_url] if self.database_url else []
        return [
            PYTHON, "-m", "controlplane",
            "--listen", self.address,
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            "--state-dir", state_dir,
            *database,
            "--revision-check-interval", "1",
            "--controlplane-id", self.name,
            *self.extra_args,
        ]  # fmt: skip

    def start(self, wait: bool = True) -> Controlplane:
        self.spawn(
            self.command(), clean_env() | ({} if self.generated_secrets else self.secrets.env())
        )
        if wait:
            self.wait_serving()
            if self.generated_secrets:
                self.secrets = self.read_generated_secrets()
        return self

    @property
    def state_dir(self) -> Path:
        return self.workdir / (DEFAULT_STATE_DIR if self.generated_secrets else "state")

    def read_generated_secrets(self) -> Secrets:
        def read(name: str) -> str:
            return (self.state_dir / name).read_text().strip()

        self._close_admin()
        return Secrets(
            admin=read(ADMIN_TOKEN_FILE),
            viewer=read(VIEWER_TOKEN_FILE),
            bridged=read(BRIDGED_TOKEN_FILE),
            proxyd=read(PROXYD_TOKEN_FILE),
            encryption_key=read(ENCRYPTION_KEYS_FILE),
        )

    def wait_serving(self, timeout: float = 30.0) -> None:
        def serving() -> bool:
            self.check_alive()
            with self._open_channel() as channel:
                stub = health_stub(channel)
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.RpcError:
                    return False
                return reply.status == health_pb2.HealthCheckResponse.SERVING

        wait_until(serving, timeout, f"{self.name} to serve")

    def _open_channel(self) -> grpc.Channel:
        credentials = self.channel_credentials()
        if credentials is None:
            return grpc.insecure_channel(self.address)
        return grpc.secure_channel(self.address, credentials)

    def stopped(self) -> None:
        self._close_admin()

    def _close_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


class DataPlane(ManagedProcess):
    """A bridged or proxyd process subscribed to the given controlplanes."""

    role = ""

    def __init__(
        self,
        controlplanes: list[str],
        workdir: Path,
        secrets: Secrets,
        *,
        name: str = "",
        extra_args: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        super().__init__(name or self.role, workdir)
        self.controlplanes = controlplanes
        self.secrets = secrets
        self.extra_args = extra_args
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def own_args(self) -> list[str]:
        """The role's flags, before the test's `extra_args`."""
        return []

    def start(self, wait_ready: bool = True) -> Self:
        token = self.secrets.bridged if self.role == "bridged" else self.secrets.proxyd
        self.spawn(
            [
                PYTHON, "-m", self.role,
                "--listen", f"127.0.0.1:{self.port}",
                "--controlplane", ",".join(self.controlplanes),
                "--state-dir", str(self.workdir / "state"),
                *self.own_args(),
                *self.extra_args,
            ],
            clean_env() | {f"AIBRIDGE_{self.role.upper()}_TOKEN": token},
        )  # fmt: skip
        self.wait_http("/readyz" if wait_ready else "/healthz")
        return self


class Bridged(DataPlane):
    role = "bridged"

    def provider_url(self, provider: str) -> str:
        return f"{self.url}/api/v2/aibridge/{provider}"

    def own_args(self) -> list[str]:
        return ["--usage-flush-interval", "0.2"]


class RecordingSubscriber:
    """The real subscriber library, applying into a list the test can read."""

    def __init__(self, addresses: list[str], role: str, token: str, **kwargs: Any) -> None:
        self.applied: list[ProviderSnapshot] = []
        self.reject: Callable[[ProviderSnapshot], str | None] = lambda _s: None
        self.subscriber = Subscriber(
            addresses, role, token, self._apply, backoff_base=0.05, backoff_max=0.5, **kwargs
        )
        self.task: asyncio.Task[None] | None = None

    def _apply(self, snapshot: ProviderSnapshot) -> ApplyResult:
        problem = self.reject(snapshot)
        if problem:
            raise ValueError(problem)
        self.applied.append(snapshot)
        return ApplyResult()

    @property
    def version(self) -> int:
        return self.subscriber.applied_version

    @property
    def current(self) -> ProviderSnapshot | None:
        return self.subscriber.current

    @property
    def snapshot(self) -> ProviderSnapshot:
        """The applied snapshot, once there is one (after a `wait_version`)."""
        assert self.subscriber.current is not None, "no snapshot applied yet"
        return self.subscriber.current

    def start(self) -> RecordingSubscriber:
        self.task = asyncio.get_running_loop().create_task(self.subscriber.run())
        return self

    async def stop(self, leave: bool = True) -> None:
        """Ends the subscription: cleanly (as a data plane's SIGTERM does), or, without
        `leave`, as if the process vanished (it stays listed, disconnected)."""
        if self.task is not None:
            if leave:
                await self.subscriber.leave()
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def wait_version(self, version: int, timeout: float = 15.0) -> None:
        await async_wait_until(
            lambda: self.version >= version,
            timeout,
            f"{self.subscriber.subscriber_id} at {version}",
        )


def ctl(
    cp: Controlplane, *args: str, env: dict[str, str] | None = None, check: bool = False,
    stdin: str = "",
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Runs `aibridgectl` as a user would, against `cp`, with `stdin` as its input."""
    environ = (
        clean_env()
        | {
            "AIBRIDGE_CONTROLPLANE": cp.address,
            "AIBRIDGE_ADMIN_TOKEN": cp.secrets.admin,
        }
        | (env or {})
    )
    result = subprocess.run(
        [PYTHON, "-m", "controlplane.ctl", *args],
        env=environ, cwd=cp.workdir, capture_output=True, text=True, timeout=60, input=stdin,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(
            f"aibridgectl {' '.join(args)} exited {result.returncode}: {result.stderr}"
        )
    return result


def printed_revision(text: str) -> int:
    """The revision an `aibridgectl` change says it made ("... at revision N")."""
    match = re.search(r"at revision (\d+)", text)
    assert match, text
    return int(match.group(1))


def lagging_line(output: str, subscriber_id: str) -> str:
    """The one line of `aibridgectl` output (a wait's laggards, status's subscribers)
    that names `subscriber_id`."""
    (line,) = [line for line in output.splitlines() if subscriber_id in line]
    return line


# Revision, providers, tokens (revoked too), audit length.
AdminState = tuple[int, list[admin_pb2.Provider], list[admin_pb2.Token], int]


def admin_state(cp: Controlplane) -> AdminState:
    """Revision, providers, tokens and audit length: what a refused mutation must leave alone."""
    providers = cp.admin.ListProviders(admin_pb2.ListProvidersRequest())
    tokens = cp.admin.ListTokens(admin_pb2.ListTokensRequest(include_revoked=True))
    audit = cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=10000))
    return providers.revision, list(providers.providers), list(tokens.tokens), len(audit.entries)


def refused(
    cp: Controlplane,
    code: grpc.StatusCode,
    call: Callable[[Any], object],
    request: object,
    field: str = "",
) -> str:
    """Calls an admin method that must fail with `code`, naming `field`, changing nothing."""
    before = admin_state(cp)
    try:
        call(request)
    except grpc.RpcError as exc:
        assert exc.code() == code, exc.details()
        details = exc.details()
    else:
        raise AssertionError(f"expected {code.name}, the call succeeded")
    assert details is not None, "a refusal without details"
    if field:
        assert details.startswith(f"{field}:"), details
    assert admin_state(cp) == before, "a refused mutation changed something"
    return details


def skipped_by(cp: Controlplane, role: str) -> dict[str, tuple[str, str]]:
    """What the `role` subscriber reported skipping in its last acknowledgement, which is of
    the current revision: name → (id, reason)."""
    status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
    (subscriber,) = [s for s in status.subscribers if s.role == role]
    assert subscriber.applied_version == status.revision
    return {s.name: (s.provider_id, s.reason) for s in subscriber.skipped}


class Proxyd(DataPlane):
    """proxyd in front of the bridged at `bridged_url`."""

    role = "proxyd"

    def __init__(
        self, controlplanes: list[str], bridged_url: str, workdir: Path, secrets: Secrets,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(controlplanes, workdir, secrets, **kwargs)
        self.bridged_url = bridged_url

    def proxy_url(self, token: str) -> str:
        """What a user puts in HTTPS_PROXY."""
        return f"http://user:{token}@127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> Path:
        return self.workdir / "state" / "proxyd-ca.pem"

    def own_args(self) -> list[str]:
        return ["--bridged", self.bridged_url]


def stream_in_background(
    bridged: Bridged, provider: str, token: str
) -> tuple[threading.Thread, dict[str, object], threading.Event]:
    """Starts a streaming chat with usage; returns (thread, result dict, first-chunk event)."""
    result: dict[str, object] = {}
    first_chunk = threading.Event()

    def run() -> None:
        body = b""
        try:
            with httpx.stream(
                "POST", f"{bridged.provider_url(provider)}/v1/chat/completions",
                headers={"Authorization": f"Bearer {token}"},
                json={"model": "gpt", "messages": [], "stream": True,
                      "stream_options": {"include_usage": True}},
                timeout=60,
            ) as response:  # fmt: skip
                result["status"] = response.status_code
                for chunk in response.iter_raw():
                    body += chunk
                    first_chunk.set()
        except httpx.HTTPError as exc:
            result["error"] = repr(exc)
        result["body"] = body.decode()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result, first_chunk


def finish_stream(thread: threading.Thread, result: dict[str, object]) -> None:
    """Joins a `stream_in_background` stream and checks it arrived whole, usage included."""
    thread.join(30)
    assert not thread.is_alive()
    assert "error" not in result, result
    assert result["status"] == 200
    body = str(result["body"])
    text = "".join(p for p in ("hello ", "from ", "A") if f'"content": "{p}"' in body)
    assert text == "hello from A", body
    assert f'"prompt_tokens": {OPENAI_USAGE["prompt_tokens"]}' in body
    assert body.rstrip().endswith("data: [DONE]")


def interception(
    request_id: str,
    ago: timedelta,
    now: datetime | None = None,
    provider: str = "openai",
    model: str = "gpt-4o",
    token: str = "alice",
    status: int = 200,
    tokens: tuple[int, int, int, int] = (0, 0, 0, 0),
    **fields: Any,
) -> usage_pb2.Interception:
    """A record as bridged reports it, of a call started `ago` before `now`; `fields` sets
    any other field of usage_pb2.Interception (client, session_id, prompt, tool_calls as
    usage_pb2.ToolCall, ...)."""
    started_at = Timestamp()
    started_at.FromDatetime((now or datetime.now(UTC)) - ago)
    input_tokens, output_tokens, cache_read, cache_write = tokens
    return usage_pb2.Interception(
        request_id=request_id, started_at=started_at, token_id=f"tok_{token}",
        token_name=token, provider_id=f"prv_{provider}", provider_name=provider,
        provider_type="anthropic" if provider == "anthropic" else "openai", model=model,
        route="/v1/chat/completions", status=status, input_tokens=input_tokens,
        output_tokens=output_tokens, cache_read_tokens=cache_read, cache_write_tokens=cache_write,
        streaming=True, ttfb_ms=12.5, duration_ms=340.0, user_agent="test", **fields,
    )  # fmt: skip


def report(
    cp: Controlplane, interceptions: Sequence[usage_pb2.Interception], token: str | None
) -> int:
    """Sends the records through the Usage service as `token` would (bridged's credential,
    for one that must be taken); returns how many were new."""
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    with grpc.insecure_channel(cp.address) as channel:
        stub = usage_pb2_grpc.UsageStub(channel)
        request = usage_pb2.ReportUsageRequest(interceptions=interceptions)
        return stub.ReportUsage(request, metadata=metadata, timeout=15).stored


def usage_requests(cp: Controlplane, provider: str) -> int:
    """The calls through `provider` that the controlplane has recorded usage of."""
    response = cp.admin.QueryUsage(admin_pb2.QueryUsageRequest(provider=provider))
    return sum(row.requests for row in response.rows)


def providers_or_none(cp: Controlplane) -> admin_pb2.ListProvidersResponse | None:
    """The provider listing, or None while the controlplane answers UNAVAILABLE."""
    try:
        return cp.admin.ListProviders(admin_pb2.ListProvidersRequest())
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return None


def health(cp: Controlplane) -> int:
    """The controlplane's standard gRPC health status."""
    with grpc.insecure_channel(cp.address) as channel:
        stub = health_stub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status


def stored_records(cp: Controlplane) -> list[Interception]:
    """Every interception row, straight from the controlplane's database (read-only)."""
    engine = sa.create_engine(cp.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(Interception)).all()
        return [Interception(**row._asdict()) for row in rows]
    finally:
        engine.dispose()
