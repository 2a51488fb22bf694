"""Claude on Google Vertex AI through the gateway, both ways in: the Anthropic API (the
anthropic SDK) and Vertex's own (the SDK's AnthropicVertex). The upstream is a local
Vertex with its own OAuth token endpoint: it takes only access tokens it minted for a
service account's signed assertion (mockupstream/clouds.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import pytest
from aiohttp import web
from anthropic.lib.vertex import AnthropicVertex

from aibridge.v1 import admin_pb2
from mockupstream import ANTHROPIC_USAGE
from mockupstream.clouds import MockVertex
from tests.harness import Bridged, Controlplane, free_port, unique, wait_until

REGION = "europe-west1"
PROJECT = "gateway-project"
MODEL = "claude-opus-5-5"
VERTEX_MODEL = "claude-opus-5-5@20261101"
MESSAGES: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]


@dataclass
class Cloud:
    cp: Controlplane
    bridged: Bridged
    token: str
    upstream: MockVertex
    provider: str
    emails: list[str]

    @property
    def url(self) -> str:
        return self.bridged.provider_url(self.provider)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=self.token, max_retries=0, timeout=15)

    def vertex(self, **kw: Any) -> AnthropicVertex:
        """The SDK's Vertex client with another project and region than the provider's
        (the gateway's win), the gateway token as its access token."""
        options: dict[str, Any] = {"access_token": self.token} | kw
        return AnthropicVertex(
            base_url=self.url + "/v1", region="us-east5", project_id="someone-elses",
            max_retries=0, timeout=15, **options,
        )  # fmt: skip


def _provider(cp: Controlplane, upstream: MockVertex, keys: int = 1) -> tuple[str, list[str]]:
    name = unique("vertex")
    texts = [upstream.service_account(project_id=PROJECT) for _ in range(keys)]
    emails = [upstream_email(t) for t in texts]
    created = cp.admin.create_provider(
        name, upstream.url, type="vertex", region=REGION, project=PROJECT, keys=texts,
        model_map=[admin_pb2.ModelMapping(model=MODEL, upstream_model=VERTEX_MODEL)],
    )  # fmt: skip
    cp.admin.wait_applied(created.revision)
    return name, emails


def upstream_email(service_account: str) -> str:
    return str(json.loads(service_account)["client_email"])


@pytest.fixture
def vertex() -> Iterator[MockVertex]:
    upstream = MockVertex().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def cloud(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    vertex: MockVertex, monkeypatch: pytest.MonkeyPatch,
) -> Cloud:  # fmt: skip
    for variable in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_VERTEX_BASE_URL",
                     "ANTHROPIC_VERTEX_PROJECT_ID", "CLOUD_ML_REGION"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    name, emails = _provider(shared_controlplane, vertex)
    return Cloud(shared_controlplane, shared_bridged, shared_token, vertex, name, emails)


def test_anthropic_api_in_raw_predict_out(cloud: Cloud) -> None:
    client = cloud.anthropic()
    message = client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    assert message.content[0].type == "text"
    with client.messages.stream(model=MODEL, max_tokens=50, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == cloud.upstream.text()
    assert final.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]

    calls = cloud.upstream.calls
    assert [(c.operation, c.project, c.region, c.model, c.client_email) for c in calls] == [
        ("rawPredict", PROJECT, REGION, VERTEX_MODEL, cloud.emails[0]),
        ("streamRawPredict", PROJECT, REGION, VERTEX_MODEL, cloud.emails[0]),
    ]
    assert all(cloud.token not in repr(s.header_list) for s in cloud.upstream.seen)
    # One token minted, and kept: the second call used the first call's.
    assert cloud.upstream.mints[cloud.emails[0]] == 1
    assert calls[0].token == calls[1].token


def test_vertex_sdk_through_its_own_paths(cloud: Cloud) -> None:
    """AnthropicVertex's paths name a project and region: the provider's are used."""
    cloud.upstream.anthropic_version = None  # the SDK's own, which Vertex takes
    client = cloud.vertex()
    message = client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    assert message.content[0].type == "text"
    keyed = cloud.vertex(access_token="client-google-token", default_headers={
        "x-api-key": cloud.token})  # fmt: skip
    with keyed.messages.stream(model=MODEL, max_tokens=50, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == cloud.upstream.text()
    counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert counted.input_tokens == 10

    calls = cloud.upstream.calls
    assert [(c.operation, c.project, c.region, c.client_email) for c in calls] == [
        ("rawPredict", PROJECT, REGION, cloud.emails[0]),
        ("streamRawPredict", PROJECT, REGION, cloud.emails[0]),
        ("count-tokens", PROJECT, REGION, cloud.emails[0]),
    ]
    assert [c.model for c in calls] == [VERTEX_MODEL] * 3  # count-tokens': its body's
    assert all("client-google-token" not in repr(s.header_list) for s in cloud.upstream.seen)
    records = admin_pb2.ListInterceptionsRequest(
        filter=admin_pb2.InterceptionFilter(provider=cloud.provider)
    )
    found = wait_until(
        lambda: len(cloud.cp.admin.ListInterceptions(records).interceptions) == 2 or None,
        what="two interceptions",
    )
    assert found


def test_a_token_is_minted_again_before_it_expires(cloud: Cloud) -> None:
    """google-auth refreshes within 3 min 45 s of expiry: a token that lives 226 s is
    good for about a second, and the next call after that gets a new one."""
    cloud.upstream.token_lifetime = 226
    client = cloud.anthropic()
    email = cloud.emails[0]

    def minted_again() -> bool:
        client.messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
        return cloud.upstream.mints[email] >= 2

    wait_until(minted_again, timeout=20, what="a second token")
    tokens = {c.token for c in cloud.upstream.calls}
    assert len(tokens) >= 2 and all(c.client_email == email for c in cloud.upstream.calls)


def test_a_revoked_token_is_replaced_within_the_call(cloud: Cloud) -> None:
    client = cloud.anthropic()
    client.messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    cloud.upstream.revoke_all()
    message = client.messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    assert message.content
    assert cloud.upstream.mints[cloud.emails[0]] == 2
    assert [c.client_email for c in cloud.upstream.calls] == [cloud.emails[0], "", cloud.emails[0]]


def test_keys_fail_over_on_a_refused_token_and_on_quota(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    vertex: MockVertex,
) -> None:  # fmt: skip
    name, emails = _provider(shared_controlplane, vertex, keys=2)
    cloud = Cloud(shared_controlplane, shared_bridged, shared_token, vertex, name, emails)
    vertex.token_status[emails[0]] = 400  # the token endpoint refuses the first account
    assert cloud.anthropic().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    assert [c.client_email for c in vertex.calls] == [emails[1]]

    vertex.key_status[emails[1]] = 429
    with pytest.raises(anthropic.RateLimitError):
        cloud.anthropic().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    response = httpx.post(
        cloud.url + f"/v1/projects/p/locations/{REGION}/publishers/anthropic/models/"
        f"{MODEL}:rawPredict",
        headers={"x-api-key": cloud.token}, timeout=15,
        json={"anthropic_version": "vertex-2023-10-16", "messages": MESSAGES, "max_tokens": 5},
    )  # fmt: skip
    assert response.status_code == 429
    assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_only_model_invocation_paths_are_open(cloud: Cloud) -> None:
    models = f"/v1/projects/{PROJECT}/locations/{REGION}/publishers/anthropic/models"
    for method, path in [
        ("GET", f"/v1/projects/{PROJECT}/locations/{REGION}/endpoints"),
        ("POST", f"{models}/{MODEL}:predict"),
        ("POST", f"/v1/projects/{PROJECT}/locations/{REGION}/publishers/google/models/"
                 "gemini:generateContent"),
    ]:  # fmt: skip
        response = httpx.request(method, cloud.url + path, headers={"x-api-key": cloud.token})
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["status"] == "NOT_FOUND"
    assert cloud.upstream.seen == []


@dataclass
class HeldVertex(MockVertex):
    """Holds each call that asks for 6 tokens before reading its token, until `release`."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path != "/token" and b'"max_tokens":6' in await request.read():
            self.arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 15)
        return await super()._dispatch(request)


def test_a_late_401_does_not_forget_the_token_minted_since(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
) -> None:  # fmt: skip
    """Two calls sent the same revoked token. The first 401 mints a new one; the second,
    answered later, must retry with that one rather than forget it and rest the key."""
    upstream = HeldVertex().start()
    try:
        name, emails = _provider(shared_controlplane, upstream)
        cloud = Cloud(shared_controlplane, shared_bridged, shared_token, upstream, name, emails)

        def call(max_tokens: int) -> httpx.Response:
            return httpx.post(
                cloud.url + "/v1/messages", timeout=15,
                headers={"x-api-key": shared_token, "anthropic-version": "2023-06-01"},
                json={"model": MODEL, "max_tokens": max_tokens, "messages": MESSAGES},
            )  # fmt: skip

        assert call(5).status_code == 200
        upstream.revoke_all()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(call, 6)  # sent with the revoked token, answered last
            assert upstream.arrived.wait(15)
            assert call(5).status_code == 200  # its 401 mints a second token
            upstream.release.set()
            assert held.result().status_code == 200, held.result().text
        assert call(5).status_code == 200  # the key never rested
        assert upstream.mints[emails[0]] == 2
    finally:
        upstream.release.set()
        upstream.stop()


def test_an_unreachable_token_endpoint_fails_over_to_the_next_key(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    vertex: MockVertex,
) -> None:  # fmt: skip
    unreachable = json.loads(vertex.service_account(project_id=PROJECT))
    unreachable["token_uri"] = f"http://127.0.0.1:{free_port()}/token"  # nothing listens
    good = vertex.service_account(project_id=PROJECT)
    name = unique("vertex")
    created = shared_controlplane.admin.create_provider(
        name, vertex.url, type="vertex", region=REGION, project=PROJECT,
        keys=[json.dumps(unreachable), good],
    )  # fmt: skip
    shared_controlplane.admin.wait_applied(created.revision)
    cloud = Cloud(shared_controlplane, shared_bridged, shared_token, vertex, name, [])
    assert cloud.anthropic().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    assert [c.client_email for c in vertex.calls] == [upstream_email(good)]


def test_a_kept_refusal_reaches_an_anthropic_client_in_anthropic_shape(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    vertex: MockVertex,
) -> None:  # fmt: skip
    """The first key's 403 is kept while the second is tried; the second gets no token."""
    name, emails = _provider(shared_controlplane, vertex, keys=2)
    cloud = Cloud(shared_controlplane, shared_bridged, shared_token, vertex, name, emails)
    vertex.key_status[emails[0]] = 403
    vertex.token_status[emails[1]] = 400
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        cloud.anthropic().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    body = refused.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
