"""Snapshot → host map: which CONNECT targets belong to which provider.

A provider is intercepted at the lowercased host and port of its base_url (default
port by scheme), enabled or not: a disabled provider's host must not become a tunnel
that reaches the provider with the client's own key. Its requests go to bridged, which
refuses them as disabled. When two providers share a host, an enabled one wins over a
disabled one, then the name that sorts first; a losing enabled provider is skipped (and
reported). The choice never depends on arrival order.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aibridge.v1 import snapshot_pb2
from common.clouds import ANTHROPIC_TYPES
from common.tokens import Callers
from common.urls import BadBaseURL, parse_base_url
from common.wire import SkippedProvider


@dataclass(frozen=True)
class HostRoute:
    provider: str
    type: str
    base_path: str  # the base_url's path as sent, without a trailing slash

    def bridged_path(self, path: str) -> str:
        """The path bridged expects under /api/v2/aibridge/{provider}.

        bridged maps an OpenAI-type client path `/v1/…` onto the base_url (which carries
        the version) and an Anthropic path (Bedrock's and Vertex's too) onto the host
        root; a client talking to the provider's own host sends the base_url's path
        instead.
        """
        if self.type in ANTHROPIC_TYPES:
            return path
        if self.base_path and (path == self.base_path or path.startswith(self.base_path + "/")):
            return "/v1" + path[len(self.base_path) :]
        return path


@dataclass(frozen=True)
class HostRouter:
    version: int
    hosts: Mapping[str, HostRoute] = field(default_factory=dict)  # "host:port" → route
    callers: Callers = field(default_factory=Callers)

    def route(self, host_port: str) -> HostRoute | None:
        return self.hosts.get(host_port.lower())


def host_key(host: str, port: int) -> str:
    # `api.openai.com.` is the same host, and so is each spelling of an IPv6 address
    # (common.urls writes a base_url's in its shortest form): none may slip past
    # interception.
    host = host.lower().strip("[]").rstrip(".")
    if ":" not in host:
        return f"{host}:{port}"
    with contextlib.suppress(ValueError):
        host = ipaddress.IPv6Address(host).compressed
    return f"[{host}]:{port}"


def build_host_router(
    snapshot: snapshot_pb2.ProviderSnapshot,
) -> tuple[HostRouter, list[SkippedProvider]]:
    hosts: dict[str, HostRoute] = {}
    owner: dict[str, str] = {}
    skipped: list[SkippedProvider] = []
    for p in sorted(snapshot.providers, key=lambda p: (not p.enabled, p.name)):
        try:
            url = parse_base_url(p.base_url)
        except BadBaseURL as bad:
            skipped.append(SkippedProvider(p.id, p.name, f"unusable base_url: {bad}"))
            continue
        key = host_key(url.host, url.port)
        if key in hosts:
            if not p.enabled:
                continue  # the host is intercepted all the same: nothing is lost
            skipped.append(
                SkippedProvider(p.id, p.name, f"host {key} is already routed to {owner[key]}")
            )
            continue
        hosts[key] = HostRoute(p.name, p.type, url.path)
        owner[key] = p.name
    router = HostRouter(snapshot.version, MappingProxyType(hosts), Callers(snapshot.tokens))
    return router, skipped
