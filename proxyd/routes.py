"""Snapshot → host map: which CONNECT targets belong to which provider.

A provider is intercepted at the lowercased host and port of its base_url (default
port by scheme), enabled or not: a disabled provider's host must not become a tunnel
that reaches the provider with the client's own key. Its requests go to bridged, which
refuses them as disabled. When two providers share a host, an enabled one wins over a
disabled one, then the name that sorts first; a losing enabled provider is skipped (and
reported). The choice never depends on arrival order.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from yarl import URL

from aibridge.v1 import snapshot_pb2
from common import SkippedProvider


@dataclass(frozen=True)
class HostRoute:
    provider: str
    type: str
    base_path: str  # the base_url's path, without a trailing slash

    def bridged_path(self, path: str) -> str:
        """The path bridged expects under /api/v2/aibridge/{provider}.

        bridged maps an OpenAI-type client path `/v1/…` onto the base_url (which carries
        the version) and an Anthropic path onto the host root; a client talking to the
        provider's own host sends the base_url's path instead.
        """
        if self.type == "anthropic":
            return path
        if self.base_path and (path == self.base_path or path.startswith(self.base_path + "/")):
            return "/v1" + path[len(self.base_path) :]
        return path


@dataclass(frozen=True)
class Verifier:
    token_id: str
    name: str
    expires_at: int


@dataclass(frozen=True)
class HostRouter:
    version: int
    hosts: Mapping[str, HostRoute] = field(default_factory=dict)  # "host:port" → route
    verifiers: Mapping[str, Verifier] = field(default_factory=dict)  # sha256 → token

    def route(self, host_port: str) -> HostRoute | None:
        return self.hosts.get(host_port.lower())

    def verify(self, token_sha256: str) -> Verifier | None:
        verifier = self.verifiers.get(token_sha256)
        if verifier is None or (verifier.expires_at and verifier.expires_at <= time.time()):
            return None
        return verifier


def host_key(host: str, port: int) -> str:
    # `api.openai.com.` is the same host: it must not slip past interception.
    host = host.lower().strip("[]").rstrip(".")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_host_router(
    snapshot: snapshot_pb2.ProviderSnapshot,
) -> tuple[HostRouter, list[SkippedProvider]]:
    hosts: dict[str, HostRoute] = {}
    owner: dict[str, str] = {}
    skipped: list[SkippedProvider] = []
    for p in sorted(snapshot.providers, key=lambda p: (not p.enabled, p.name)):
        try:
            url = URL(p.base_url)
            port = url.port
        except (ValueError, TypeError) as exc:
            skipped.append(SkippedProvider(p.id, p.name, f"malformed base_url: {exc}"))
            continue
        # raw_host: an internationalised host as clients send it in CONNECT (punycode),
        # and no IDNA decoding, which would cost more than the rest of the row.
        if not p.base_url or url.scheme not in ("http", "https") or not url.raw_host or not port:
            skipped.append(SkippedProvider(p.id, p.name, "base_url has no http(s) host"))
            continue
        key = host_key(url.raw_host, port)
        if key in hosts:
            if not p.enabled:
                continue  # the host is intercepted all the same: nothing is lost
            skipped.append(
                SkippedProvider(p.id, p.name, f"host {key} is already routed to {owner[key]}")
            )
            continue
        hosts[key] = HostRoute(p.name, p.type, url.path.rstrip("/"))
        owner[key] = p.name
    verifiers = {t.sha256: Verifier(t.id, t.name, t.expires_at) for t in snapshot.tokens}
    router = HostRouter(snapshot.version, MappingProxyType(hosts), MappingProxyType(verifiers))
    return router, skipped
