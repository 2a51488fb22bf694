"""Snapshot → route table: an immutable value that a request reads once, at its start.

Each provider type knows its URL layout (how a client's path maps onto the base_url),
how the key is injected, and which endpoints are intercepted or passed through.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple
from urllib.parse import quote

from yarl import URL

from aibridge.v1 import snapshot_pb2
from bridged.capture import CaptureSettings
from bridged.governance import Governance
from common import clouds
from common.clouds import ANTHROPIC_TYPES, CLOUD_TYPES, BadCredential
from common.tokens import Callers
from common.urls import BadBaseURL, parse_base_url
from common.wire import OPENAI_COMPATIBLE_TYPES, SkippedProvider


@dataclass(frozen=True)
class Endpoint:
    """One allowed (method, path) of a provider family. `route` names intercepted ones."""

    method: str
    pattern: re.Pattern[str]
    route: str = ""  # "" for a pass-through endpoint: forwarded, not recorded
    # A cloud's own API ("bedrock", "vertex"), spoken by the client and the upstream
    # alike; "" for the API of the route's family.
    dialect: str = ""

    @property
    def intercepted(self) -> bool:
        return bool(self.route)


def _ep(method: str, path: str, route: str = "", dialect: str = "") -> Endpoint:
    return Endpoint(method, re.compile(f"^{path}$"), route, dialect)


_MODEL_ID = r"[A-Za-z0-9._:/@-]+"

# Paths as the client sends them, after /api/v2/aibridge/{provider}.
OPENAI_ENDPOINTS = (
    _ep("POST", "/v1/chat/completions", "chat.completions"),
    _ep("POST", "/v1/responses", "responses"),
    _ep("GET", "/v1/models"),
    _ep("GET", f"/v1/models/{_MODEL_ID}"),
)
ANTHROPIC_ENDPOINTS = (
    _ep("POST", "/v1/messages", "messages"),
    _ep("POST", "/v1/messages/count_tokens"),
    _ep("GET", "/v1/models"),
    _ep("GET", f"/v1/models/{_MODEL_ID}"),
)
# Claude on the clouds: the Anthropic API (bridged/clouds/calls.py translates it), and
# the cloud's own model-invocation paths, nothing else of it (the credential may be
# able to do much more).
_MESSAGES = ANTHROPIC_ENDPOINTS[:2]
BEDROCK_ENDPOINTS = (
    *_MESSAGES,
    _ep("POST", f"/model/(?P<model>{_MODEL_ID}?)/(?P<action>invoke|invoke-with-response-stream)",
        "messages", "bedrock"),
    _ep("POST", f"/model/(?P<model>{_MODEL_ID}?)/(?P<action>count-tokens)", "", "bedrock"),
)  # fmt: skip
_VERTEX_MODELS = "/v1/projects/[A-Za-z0-9.:_-]+/locations/[a-z0-9-]+/publishers/anthropic/models"
VERTEX_ENDPOINTS = (
    *_MESSAGES,
    _ep("POST", f"{_VERTEX_MODELS}/count-tokens:rawPredict", "", "vertex"),
    _ep("POST", f"{_VERTEX_MODELS}/(?P<model>[A-Za-z0-9._@-]+)"
        ":(?P<action>rawPredict|streamRawPredict)", "messages", "vertex"),
)  # fmt: skip
_ENDPOINTS = {
    "anthropic": ANTHROPIC_ENDPOINTS, "bedrock": BEDROCK_ENDPOINTS, "vertex": VERTEX_ENDPOINTS,
}  # fmt: skip
_NO_MODELS: Mapping[str, str] = MappingProxyType({})


class ProviderKey(NamedTuple):
    id: str
    secret: str
    hint: str

    def __repr__(self) -> str:  # never the secret
        return f"ProviderKey(id={self.id!r}, hint={self.hint!r})"


class Route(NamedTuple):
    """A provider as a request sees it. A named tuple: a table of 10,000 is quick to
    build and few objects for the garbage collector to walk."""

    id: str
    name: str
    type: str
    enabled: bool
    base_url: str  # read by common.urls: as yarl writes it, without a trailing slash
    origin: str  # scheme://host[:port]: the key of its connection pool
    keys: tuple[ProviderKey, ...]
    region: str = ""  # bedrock and vertex
    project: str = ""  # vertex
    model_map: Mapping[str, str] = _NO_MODELS  # the client's model name → the cloud's id

    @property
    def family(self) -> str:
        """The API its clients speak, whose error shape bridged answers in."""
        return "anthropic" if self.type in ANTHROPIC_TYPES else "openai"

    @property
    def cloud(self) -> bool:
        return self.type in CLOUD_TYPES

    def endpoint(self, method: str, path: str) -> Endpoint | None:
        # Dot and empty segments would let a model id climb out of the allowlist
        # (/v1/models/../files): an upstream that normalises the path serves another route.
        if any(segment in ("", ".", "..") for segment in path.split("/")[1:]):
            return None
        endpoints = _ENDPOINTS.get(self.type, OPENAI_ENDPOINTS)
        for e in endpoints:
            if e.method == method and e.pattern.match(path):
                return e
        return None

    def upstream_url(self, path: str, raw_query: str) -> URL:  # not for a cloud's: calls.py
        """OpenAI's base_url carries the version (…/v1) and so does the client's path;
        Anthropic's base_url is the host root. The query goes on exactly as it came."""
        tail = path.removeprefix("/v1") if self.family == "openai" else path
        url = self.base_url + _quote_path(tail)
        return URL(url + ("?" + raw_query if raw_query else ""), encoded=True)

    def auth_headers(self, secret: str) -> dict[str, str]:
        if self.type == "anthropic":
            return {"x-api-key": secret}
        if self.type == "azure-openai":
            return {"api-key": secret}
        return {"Authorization": f"Bearer {secret}"}


@dataclass(frozen=True)
class RouteTable:
    version: int
    routes: Mapping[str, Route] = field(default_factory=dict)
    callers: Callers = field(default_factory=Callers)
    capture: CaptureSettings = CaptureSettings()  # what is recorded of intercepted calls
    governance: Governance = field(default_factory=Governance)  # who may use what, how much

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(r.origin for r in self.routes.values())

    @property
    def cloud_key_ids(self) -> frozenset[str]:
        return frozenset(k.id for r in self.routes.values() if r.cloud for k in r.keys)


class RouteBuilder:
    """Builds route tables, reusing the Route of every provider whose row is unchanged
    since the previous snapshot: a change to one of 10,000 providers costs a comparison
    per row, not a parse."""

    def __init__(self) -> None:
        # By provider id, as of the last build: its encoded row, and its Route or why it
        # was skipped. Two dicts, not a dict of pairs: 10,000 pairs would be 10,000 more
        # objects for every full garbage collection to walk (a dict of bytes is none).
        self._rows: dict[str, bytes] = {}
        self._results: dict[str, Route | str] = {}

    def build(
        self, snapshot: snapshot_pb2.ProviderSnapshot
    ) -> tuple[RouteTable, list[SkippedProvider]]:
        routes: dict[str, Route] = {}
        skipped: list[SkippedProvider] = []
        rows: dict[str, bytes] = {}
        results: dict[str, Route | str] = {}
        for p in snapshot.providers:
            row = rows[p.id] = p.SerializeToString()
            result = self._results.get(p.id) if self._rows.get(p.id) == row else None
            if result is None:
                result = _route(p)
            results[p.id] = result
            if isinstance(result, str):
                skipped.append(SkippedProvider(p.id, p.name, result))
            else:
                routes[p.name] = result
        self._rows, self._results = rows, results
        table = RouteTable(
            snapshot.version, MappingProxyType(routes), Callers(snapshot.tokens),
            CaptureSettings.of(snapshot),
            Governance(snapshot.governance, snapshot.settings.limits_redis_unavailable),
        )  # fmt: skip
        return table, skipped


def _route(p: snapshot_pb2.SnapshotProvider) -> Route | str:
    """The provider's Route, or why it cannot have one."""
    if p.type not in ANTHROPIC_TYPES and p.type not in OPENAI_COMPATIBLE_TYPES:
        return f"unknown provider type {p.type!r}"
    try:
        where = parse_base_url(p.base_url)
    except BadBaseURL as bad:
        return f"unusable base_url: {bad}"
    keys = tuple(ProviderKey(k.id, k.secret, k.hint) for k in p.keys)
    if p.type not in CLOUD_TYPES:
        return Route(p.id, p.name, p.type, p.enabled, where.url, where.origin, keys)
    unusable = _cloud_unusable(p)
    if unusable:
        return unusable
    return Route(
        p.id, p.name, p.type, p.enabled, where.url, where.origin, keys, p.region, p.project,
        MappingProxyType(dict(p.model_map)),
    )  # fmt: skip


def _cloud_unusable(p: snapshot_pb2.SnapshotProvider) -> str:
    """Why a bedrock or vertex row cannot be served ("" if it can): the controlplane
    checks the same, so only a row from an older database could fail here."""
    if not clouds.REGION.fullmatch(p.region):
        return "no usable region"
    if p.type == clouds.VERTEX and not clouds.PROJECT.fullmatch(p.project):
        return "no usable project"
    read = clouds.aws_credential if p.type == clouds.BEDROCK else clouds.service_account
    for k in p.keys:
        try:
            read(k.secret)
        except BadCredential as bad:
            return f"key {k.hint}: {bad}"
    return ""


def _quote_path(path: str) -> str:
    # The path was decoded by the server; allowlisted paths hold only safe characters.
    return quote(path, safe="/:@-._~")
