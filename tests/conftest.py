"""Fixtures: each test gets its own database (SQLite file, or a fresh PostgreSQL database)
and its own controlplane process."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream
from tests.certs import CertFiles, issue, make_ca
from tests.console import LAPTOP, ConsoleStack, chromium
from tests.console import console_stack as _console_stack
from tests.harness import Bridged, Controlplane, Proxyd, Secrets, postgres_database, unique

DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextlib.contextmanager
def _database(kind: str, directory: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'aibridge.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with _database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=DATABASES)
def shared_controlplane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controlplane]:
    """One controlplane for a module's tests that leave no state behind (refused inputs),
    or that each use names of their own (`harness.unique`) and count only what they made."""
    directory = tmp_path_factory.mktemp("shared")
    with _database(request.param, directory) as url:
        cp = Controlplane(url, directory, Secrets()).start()
        try:
            yield cp
        finally:
            cp.stop()


@pytest.fixture(scope="module")
def shared_bridged(
    shared_controlplane: Controlplane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bridged]:
    """bridged subscribed to the module's shared controlplane, for tests that each make
    providers (and upstreams) of their own."""
    cp = shared_controlplane
    process = Bridged([cp.address], tmp_path_factory.mktemp("bridged"), cp.secrets).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def shared_token(shared_controlplane: Controlplane) -> str:
    """A gateway token of the shared controlplane, already applied by every subscriber."""
    created = shared_controlplane.admin.CreateToken(
        admin_pb2.CreateTokenRequest(name=unique("tester"))
    )
    shared_controlplane.admin.wait_applied(created.revision)
    return created.token


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture
def controlplane(database_url: str, tmp_path: Path, secrets: Secrets) -> Iterator[Controlplane]:
    cp = Controlplane(database_url, tmp_path, secrets).start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def upstream_a() -> Iterator[MockUpstream]:
    upstream = MockUpstream("A").start()
    yield upstream
    upstream.stop()


@pytest.fixture
def upstream_b() -> Iterator[MockUpstream]:
    upstream = MockUpstream("B").start()
    yield upstream
    upstream.stop()


@pytest.fixture
def bridged(controlplane: Controlplane, tmp_path: Path, secrets: Secrets) -> Iterator[Bridged]:
    process = Bridged([controlplane.address], tmp_path, secrets).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def token(controlplane: Controlplane) -> str:
    """A gateway token, already applied by every subscriber."""
    created = controlplane.admin.CreateToken(admin_pb2.CreateTokenRequest(name="tester"))
    controlplane.admin.wait_applied(created.revision)
    return created.token


@dataclass
class UpstreamPKI:
    """A throwaway CA and a certificate for the local upstreams (localhost, 127.0.0.1)."""

    ca: CertFiles
    server: CertFiles

    @classmethod
    def create(cls, directory: Path) -> UpstreamPKI:
        ca = make_ca(directory / "pki", "upstream-ca", "upstream test CA")
        server = issue(ca, directory / "pki", "upstream", server_names=["localhost", "127.0.0.1"])
        return cls(ca, server)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server.cert_path, self.server.key_path)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> UpstreamPKI:
    return UpstreamPKI.create(tmp_path)


@pytest.fixture
def tls_upstream_a(pki: UpstreamPKI) -> Iterator[MockUpstream]:
    upstream = MockUpstream("A", tls=pki.server_context()).start()
    yield upstream
    upstream.stop()


@pytest.fixture
def tls_upstream_b(pki: UpstreamPKI) -> Iterator[MockUpstream]:
    upstream = MockUpstream("B", tls=pki.server_context()).start()
    yield upstream
    upstream.stop()


@pytest.fixture
def mitm(
    controlplane: Controlplane, tmp_path: Path, secrets: Secrets, pki: UpstreamPKI
) -> Iterator[tuple[Bridged, Proxyd]]:
    """bridged (trusting the test upstreams' CA) with proxyd in front of it."""
    with proxyd_before_bridged(controlplane, tmp_path, secrets, pki) as pair:
        yield pair


@contextlib.contextmanager
def proxyd_before_bridged(
    controlplane: Controlplane,
    tmp_path: Path,
    secrets: Secrets,
    pki: UpstreamPKI,
    proxyd_args: tuple[str, ...] = (),
) -> Iterator[tuple[Bridged, Proxyd]]:
    """bridged (trusting the test upstreams' CA) with proxyd, given `proxyd_args`, in front."""
    bridged = Bridged(
        [controlplane.address], tmp_path, secrets,
        extra_args=("--upstream-ca-file", str(pki.ca.cert_path)),
    ).start()  # fmt: skip
    try:
        proxyd = Proxyd(
            [controlplane.address], bridged.url, tmp_path, secrets, extra_args=proxyd_args
        ).start()
        try:
            yield bridged, proxyd
        finally:
            proxyd.stop()
    finally:
        bridged.stop()


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    """A module's console, with a controlplane (SQLite: the console never opens the
    database), a bridged and a proxyd for it to show."""
    directory = tmp_path_factory.mktemp("console")
    with _console_stack(f"sqlite:///{directory / 'aibridge.db'}", directory) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) at laptop width."""
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()
