"""The real Claude Code against `bedrock` and `vertex` providers, set up as the README
says: in its Bedrock and Vertex modes (the cloud's own API, the gateway token in
ANTHROPIC_CUSTOM_HEADERS) and in its plain Anthropic mode, through bridged and through
proxyd. The upstreams are the local clouds (mockupstream/clouds.py), which check every
SigV4 signature and every Google access token as the real services do."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aibridge.v1 import admin_pb2
from mockupstream.clouds import MockBedrock, MockVertex
from tests.agents import AgentRun, claude_code
from tests.conftest import UpstreamPKI, proxyd_before_bridged
from tests.harness import Bridged, Controlplane, Proxyd, unique, wait_until
from tests.test_access_log import text_lines

BEDROCK_REGION = "eu-west-3"
VERTEX_REGION = "europe-west1"
VERTEX_PROJECT = "gateway-project"
# What Claude Code asks for in its Anthropic mode and in its Bedrock mode (AWS_REGION
# us-east-1: a US inference profile), and the provider's (EU) profile a model map makes
# of either.
MODEL = "claude-opus-5-5"
BEDROCK_MODE_MODEL = "us.anthropic.claude-opus-5-5"
PROFILE = "eu.anthropic.claude-opus-5-5-20261101-v1:0"


@dataclass
class BedrockProvider:
    name: str
    key_id: str


def bedrock_provider(
    cp: Controlplane, upstream: MockBedrock, base_url: str, **kw: object
) -> BedrockProvider:
    """A bedrock provider for `upstream`, whose credential only `upstream` knows."""
    key_id, secret = "AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    upstream.credentials[key_id] = secret
    name = unique("bedrock")
    key = json.dumps({"access_key_id": key_id, "secret_access_key": secret})
    created = cp.admin.create_provider(
        name, base_url, type="bedrock", region=BEDROCK_REGION, keys=[key], **kw
    )
    cp.admin.wait_applied(created.revision)
    return BedrockProvider(name, key_id)


def vertex_provider(cp: Controlplane, upstream: MockVertex, base_url: str) -> tuple[str, str]:
    """(name, the service account's email) of a vertex provider for `upstream`."""
    account = upstream.service_account(project_id=VERTEX_PROJECT)
    name = unique("vertex")
    created = cp.admin.create_provider(
        name, base_url, type="vertex", region=VERTEX_REGION, project=VERTEX_PROJECT,
        keys=[account],
    )  # fmt: skip
    cp.admin.wait_applied(created.revision)
    return name, json.loads(account)["client_email"]


def bedrock_mode(base_url: str, **extra: str) -> dict[str, str]:
    """Claude Code in its Bedrock mode, AWS auth skipped (the gateway signs)."""
    return {
        "ANTHROPIC_BASE_URL": "", "ANTHROPIC_AUTH_TOKEN": "",
        "CLAUDE_CODE_USE_BEDROCK": "1", "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
        "AWS_REGION": "us-east-1", "ANTHROPIC_BEDROCK_BASE_URL": base_url,
    } | extra  # fmt: skip


def vertex_mode(base_url: str, **extra: str) -> dict[str, str]:
    """Claude Code in its Vertex mode, Google auth skipped (the gateway mints tokens)."""
    return {
        "ANTHROPIC_BASE_URL": "", "ANTHROPIC_AUTH_TOKEN": "",
        "CLAUDE_CODE_USE_VERTEX": "1", "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
        "CLOUD_ML_REGION": "us-east5", "ANTHROPIC_VERTEX_PROJECT_ID": "someone-elses",
        "ANTHROPIC_VERTEX_BASE_URL": base_url,
    } | extra  # fmt: skip


def run_claude(home: Path, env: dict[str, str]) -> AgentRun:
    """`claude -p "say hi"` in the mode `env` sets (its own base URL and token unset)."""
    run = claude_code("say hi", home, base_url="", token="", extra_env=env)
    assert run.returncode == 0, run.output
    return run


def records(cp: Controlplane, provider: str) -> list[admin_pb2.InterceptionRecord]:
    """The provider's interceptions, once there is one with its tokens counted."""
    request = admin_pb2.ListInterceptionsRequest(
        filter=admin_pb2.InterceptionFilter(provider=provider), limit=100
    )

    def counted() -> list[admin_pb2.InterceptionRecord] | None:
        found = list(cp.admin.ListInterceptions(request).interceptions)
        return found if any(r.input_tokens > 0 and r.output_tokens > 0 for r in found) else None

    return wait_until(counted, what=f"{provider}'s calls recorded with their tokens")


def never_the_token(upstream: MockBedrock | MockVertex, token: str) -> None:
    assert upstream.seen
    for seen in upstream.seen:
        assert token not in repr(seen.header_list) and token.encode() not in seen.body


def refused(bridged: Bridged, provider: str) -> set[tuple[str, str, str]]:
    """(method, path, status) of what bridged refused `provider`'s callers, once there is
    something: what Claude Code asked of the cloud beside its model calls."""

    def lines() -> set[tuple[str, str, str]] | None:
        found = {
            (line["method"], line["route"], line["status"])
            for line in text_lines(bridged.log())
            if line.get("provider") == provider and line.get("status") != "200"
        }
        return found or None

    return wait_until(lines, what=f"bridged's refusals for {provider}")


def signed(upstream: MockBedrock) -> set[tuple[str, str, bool]]:
    """(operation, access key id, signature verified) of each call Bedrock saw."""
    return {(c.operation, c.access_key_id, c.verified) for c in upstream.calls}


@pytest.fixture
def bedrock() -> Iterator[MockBedrock]:
    upstream = MockBedrock(region=BEDROCK_REGION).start()
    yield upstream
    upstream.stop()


@pytest.fixture
def vertex() -> Iterator[MockVertex]:
    upstream = MockVertex().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def shared_pki(tmp_path_factory: pytest.TempPathFactory) -> UpstreamPKI:
    return UpstreamPKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def shared_mitm(
    shared_controlplane: Controlplane, shared_pki: UpstreamPKI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Bridged, Proxyd]]:  # fmt: skip
    """The module's proxyd, before a bridged that trusts the local clouds' CA."""
    cp = shared_controlplane
    directory = tmp_path_factory.mktemp("mitm")
    with proxyd_before_bridged(cp, directory, cp.secrets, shared_pki) as pair:
        yield pair


def test_bedrock_mode_through_bridged(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    bedrock: MockBedrock, tmp_path: Path,
) -> None:  # fmt: skip
    """Claude Code first asks for the inference profiles (with AWS's SDK, which sends
    no custom header: so no token, and bridged refuses it with 401); it goes on with the
    model it knows, and its model calls (with the token) are signed with the provider's
    key. It writes Bedrock's anthropic_version in the body itself, which the mock checks."""
    provider = bedrock_provider(shared_controlplane, bedrock, bedrock.url)
    url = shared_bridged.provider_url(provider.name)

    run = run_claude(
        tmp_path, bedrock_mode(url, ANTHROPIC_CUSTOM_HEADERS=f"x-api-key: {shared_token}")
    )
    assert bedrock.text() in run.output
    assert signed(bedrock) == {("invoke-with-response-stream", provider.key_id, True)}
    assert {c.model_id for c in bedrock.calls} == {BEDROCK_MODE_MODEL}  # no mapping: as sent
    never_the_token(bedrock, shared_token)
    assert refused(shared_bridged, provider.name) == {("GET", "/inference-profiles", "401")}
    calls = records(shared_controlplane, provider.name)
    assert {(r.provider_type, r.status, r.client) for r in calls} == {
        ("bedrock", 200, "claude-code")
    }


def test_vertex_mode_through_bridged(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    vertex: MockVertex, tmp_path: Path,
) -> None:  # fmt: skip
    """Claude Code names its own project and region in the path; the provider's are used.
    It writes Vertex's anthropic_version in the body itself, which the mock checks."""
    name, email = vertex_provider(shared_controlplane, vertex, vertex.url)
    url = shared_bridged.provider_url(name) + "/v1"

    run = run_claude(
        tmp_path, vertex_mode(url, ANTHROPIC_CUSTOM_HEADERS=f"x-api-key: {shared_token}")
    )
    assert vertex.text() in run.output
    assert vertex.calls
    assert {(c.operation, c.project, c.region, c.client_email) for c in vertex.calls} == {
        ("streamRawPredict", VERTEX_PROJECT, VERTEX_REGION, email)
    }
    assert vertex.mints[email] == 1  # the gateway's token, minted once and kept
    never_the_token(vertex, shared_token)
    calls = records(shared_controlplane, name)
    assert {(r.provider_type, r.status, r.client) for r in calls} == {
        ("vertex", 200, "claude-code")
    }


def test_anthropic_mode_against_a_bedrock_provider(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    bedrock: MockBedrock, tmp_path: Path,
) -> None:  # fmt: skip
    """Claude Code as for `anthropic`: the gateway turns its Messages calls into signed
    InvokeModelWithResponseStream calls, for the model map's id."""
    provider = bedrock_provider(
        shared_controlplane, bedrock, bedrock.url,
        model_map=[admin_pb2.ModelMapping(model=MODEL, upstream_model=PROFILE)],
    )  # fmt: skip
    run = claude_code(
        "say hi", tmp_path, base_url=shared_bridged.provider_url(provider.name),
        token=shared_token,
    )  # fmt: skip
    assert run.returncode == 0, run.output
    assert bedrock.text() in run.output
    assert {(c.model_id, c.access_key_id, c.verified) for c in bedrock.calls} == {
        (PROFILE, provider.key_id, True)
    }
    assert {c.operation for c in bedrock.calls} == {"invoke-with-response-stream"}
    # The gateway's Bedrock version, whatever Claude Code's anthropic-version says.
    assert {c.body["anthropic_version"] for c in bedrock.calls if c.body} == {"bedrock-2023-05-31"}
    never_the_token(bedrock, shared_token)
    calls = records(shared_controlplane, provider.name)
    assert {(r.provider_type, r.status, r.route) for r in calls} == {("bedrock", 200, "messages")}


def test_bedrock_and_vertex_modes_through_proxyd(
    shared_controlplane: Controlplane, shared_mitm: tuple[Bridged, Proxyd], shared_token: str,
    shared_pki: UpstreamPKI, tmp_path: Path,
) -> None:  # fmt: skip
    """Claude Code pointed at the cloud's own host, proxyd as HTTPS_PROXY with the token:
    no gateway header at all, and the call is signed (or tokened) with the provider's. The
    bedrock provider maps Claude Code's US profile to its own region's."""
    bridged, proxyd = shared_mitm
    proxy = {
        "HTTPS_PROXY": proxyd.proxy_url(shared_token), "NO_PROXY": "",
        "NODE_EXTRA_CA_CERTS": str(proxyd.ca_path),
    }  # fmt: skip
    bedrock = MockBedrock(region=BEDROCK_REGION, tls=shared_pki.server_context()).start()
    vertex = MockVertex(tls=shared_pki.server_context()).start()
    try:
        # localhost names no region: the provider says it (bedrock_provider's region).
        bedrock_url = f"https://localhost:{bedrock.port}"
        mapping = admin_pb2.ModelMapping(model=BEDROCK_MODE_MODEL, upstream_model=PROFILE)
        provider = bedrock_provider(shared_controlplane, bedrock, bedrock_url, model_map=[mapping])
        vertex_url = f"https://localhost:{vertex.port}"
        name, email = vertex_provider(shared_controlplane, vertex, vertex_url)

        run = run_claude(tmp_path / "bedrock", bedrock_mode(bedrock_url, **proxy))
        assert bedrock.text() in run.output
        assert signed(bedrock) == {("invoke-with-response-stream", provider.key_id, True)}
        assert {c.model_id for c in bedrock.calls} == {PROFILE}
        never_the_token(bedrock, shared_token)
        records(shared_controlplane, provider.name)
        # The token came with the proxy's credentials: the profile lookup reached bridged
        # as the caller's, and was refused as off the allowlist.
        assert refused(bridged, provider.name) == {("GET", "/inference-profiles", "404")}

        run = run_claude(tmp_path / "vertex", vertex_mode(vertex_url + "/v1", **proxy))
        assert vertex.text() in run.output
        assert {(c.operation, c.project, c.region, c.client_email) for c in vertex.calls} == {
            ("streamRawPredict", VERTEX_PROJECT, VERTEX_REGION, email)
        }
        never_the_token(vertex, shared_token)
        records(shared_controlplane, name)
    finally:
        bedrock.stop()
        vertex.stop()
