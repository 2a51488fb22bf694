"""Claude on AWS Bedrock through the gateway, both ways in: the Anthropic API (the
anthropic SDK, raw HTTP) and Bedrock's own (the SDK's AnthropicBedrock). The upstream is
a local Bedrock that recomputes every SigV4 signature with botocore and streams real
event-stream frames (mockupstream/clouds.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.lib.bedrock import AnthropicBedrock

from aibridge.v1 import admin_pb2
from mockupstream import ANTHROPIC_USAGE
from mockupstream.clouds import MockBedrock
from tests import cloud_keys
from tests.governance import create_token, set_limits
from tests.harness import Bridged, Controlplane, unique, wait_until

REGION = "eu-west-3"
MODEL = "claude-opus-5-5"  # what clients send
PROFILE = "eu.anthropic.claude-opus-5-5-20261101-v1:0"  # what Bedrock is asked for
MESSAGES: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]


def aws_key() -> tuple[str, str, str]:
    """(access key id, secret, the key as the gateway takes it)."""
    credential = cloud_keys.aws_credential()
    return credential["access_key_id"], credential["secret_access_key"], json.dumps(credential)


@dataclass
class Cloud:
    cp: Controlplane
    bridged: Bridged
    token: str
    upstream: MockBedrock
    provider: str
    key_ids: list[str]

    @property
    def url(self) -> str:
        return self.bridged.provider_url(self.provider)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=self.token, max_retries=0, timeout=15)

    def bedrock(self, **kw: Any) -> AnthropicBedrock:
        """The SDK's Bedrock client, its base URL the gateway; the gateway token as its
        Bedrock API key (a bearer) unless `kw` says otherwise."""
        options: dict[str, Any] = {"api_key": self.token} | kw
        return AnthropicBedrock(
            base_url=self.url, aws_region="us-east-1", max_retries=0, timeout=15, **options
        )

    def records(self, count: int) -> list[admin_pb2.InterceptionRecord]:
        request = admin_pb2.ListInterceptionsRequest(
            filter=admin_pb2.InterceptionFilter(provider=self.provider), limit=100
        )

        def stored() -> list[admin_pb2.InterceptionRecord] | None:
            found = list(self.cp.admin.ListInterceptions(request).interceptions)
            return found if len(found) >= count else None

        found = wait_until(stored, what=f"{count} interceptions of {self.provider}")
        assert len(found) == count
        return found


def _provider(cp: Controlplane, upstream: MockBedrock, keys: int = 1) -> tuple[str, list[str]]:
    name = unique("bedrock")
    key_ids, texts = [], []
    for _ in range(keys):
        key_id, secret, text = aws_key()
        upstream.credentials[key_id] = secret
        key_ids.append(key_id)
        texts.append(text)
    created = cp.admin.create_provider(
        name, upstream.url, type="bedrock", region=REGION, keys=texts,
        model_map=[admin_pb2.ModelMapping(model=MODEL, upstream_model=PROFILE)],
    )  # fmt: skip
    cp.admin.wait_applied(created.revision)
    return name, key_ids


@pytest.fixture
def bedrock() -> Iterator[MockBedrock]:
    upstream = MockBedrock(region=REGION).start()
    yield upstream
    upstream.stop()


@pytest.fixture
def cloud(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    bedrock: MockBedrock, monkeypatch: pytest.MonkeyPatch,
) -> Cloud:  # fmt: skip
    for variable in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "AWS_BEARER_TOKEN_BEDROCK",
                     "ANTHROPIC_BEDROCK_BASE_URL", "AWS_PROFILE"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    name, key_ids = _provider(shared_controlplane, bedrock)
    return Cloud(shared_controlplane, shared_bridged, shared_token, bedrock, name, key_ids)


def test_anthropic_api_in_invoke_model_out(cloud: Cloud) -> None:
    message = cloud.anthropic().messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    assert message.content[0].type == "text" and message.content[0].text.startswith("hello")
    assert message.usage.input_tokens == ANTHROPIC_USAGE["input_tokens"]

    (call,) = cloud.upstream.calls
    assert call.verified and call.access_key_id == cloud.key_ids[0]
    assert (call.operation, call.model_id) == ("invoke", PROFILE)  # the model map's id
    assert call.body is not None and call.body["anthropic_version"] == "bedrock-2023-05-31"
    (seen,) = cloud.upstream.seen
    assert cloud.token not in repr(seen.header_list) and cloud.token.encode() not in seen.body
    (record,) = cloud.records(1)
    assert (record.provider_type, record.status, record.route) == ("bedrock", 200, "messages")
    assert record.input_tokens == ANTHROPIC_USAGE["input_tokens"]
    assert record.output_tokens == ANTHROPIC_USAGE["output_tokens"]


def test_anthropic_api_streams_from_event_stream_frames(cloud: Cloud) -> None:
    client = cloud.anthropic()
    with client.messages.stream(model=MODEL, max_tokens=50, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == cloud.upstream.text()
    assert final.usage.output_tokens == ANTHROPIC_USAGE["output_tokens"]
    (call,) = cloud.upstream.calls
    assert (call.operation, call.model_id, call.verified) == (
        "invoke-with-response-stream", PROFILE, True,
    )  # fmt: skip
    assert call.body is not None and "stream" not in call.body
    (record,) = cloud.records(1)
    assert record.streaming and record.status == 200
    assert record.input_tokens == ANTHROPIC_USAGE["input_tokens"]
    assert record.cache_read_tokens == ANTHROPIC_USAGE["cache_read"]


def test_each_frame_reaches_the_client_as_it_completes(cloud: Cloud) -> None:
    """The first event arrives while the upstream holds the rest of its stream."""
    cloud.upstream.hold = threading.Event()
    try:
        with httpx.stream(
            "POST", cloud.url + "/v1/messages", timeout=15,
            headers={"x-api-key": cloud.token, "anthropic-version": "2023-06-01"},
            json={"model": MODEL, "max_tokens": 50, "messages": MESSAGES, "stream": True},
        ) as response:  # fmt: skip
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert next(lines) == "event: message_start"
            cloud.upstream.hold.set()
            rest = list(lines)
        assert "event: message_stop" in rest
    finally:
        cloud.upstream.hold.set()


def test_bedrock_sdk_through_its_own_paths(cloud: Cloud) -> None:
    """AnthropicBedrock sends /model/{id}/invoke[-with-response-stream]; the gateway
    token as its API key (a bearer), or in x-api-key beside the SDK's own SigV4
    signature, which the gateway drops for the provider's."""
    cloud.upstream.anthropic_version = None  # the SDK's own, which Bedrock takes
    client = cloud.bedrock()
    message = client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    assert message.content[0].type == "text"
    signing = cloud.bedrock(
        api_key=None, aws_access_key="AKIACLIENTOWNKEY0000", aws_secret_key="client-secret",
        default_headers={"x-api-key": cloud.token},
    )  # fmt: skip
    with signing.messages.stream(model=MODEL, max_tokens=50, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
    assert text == cloud.upstream.text()

    calls = cloud.upstream.calls
    assert [(c.operation, c.model_id, c.access_key_id, c.verified) for c in calls] == [
        ("invoke", PROFILE, cloud.key_ids[0], True),
        ("invoke-with-response-stream", PROFILE, cloud.key_ids[0], True),
    ]
    for seen in cloud.upstream.seen:
        assert "AKIACLIENTOWNKEY0000" not in repr(seen.header_list)
        assert cloud.token not in repr(seen.header_list)
    records = cloud.records(2)
    assert sorted(r.streaming for r in records) == [False, True]
    assert all(r.output_tokens == ANTHROPIC_USAGE["output_tokens"] for r in records)
    # The model the answer names, as for anthropic (the price table's names).
    assert {r.model for r in records} == {"claude-opus-5-5-20261101"}


def test_only_model_invocation_paths_are_open(cloud: Cloud) -> None:
    headers = {"x-api-key": cloud.token}
    for method, path in [
        ("GET", "/inference-profiles?type=SYSTEM_DEFINED"),
        ("POST", f"/model/{PROFILE}/converse"),
        ("GET", "/foundation-models"),
        ("POST", "/model/%2E%2E/guardrail/invoke"),  # a dot segment, decoded
    ]:
        response = httpx.request(method, cloud.url + path, headers=headers, timeout=15)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
        assert "message" in response.json()
    assert cloud.upstream.seen == []


def test_a_bad_token_is_refused_in_bedrock_shape(cloud: Cloud) -> None:
    response = httpx.post(
        f"{cloud.url}/model/{PROFILE}/invoke", headers={"x-api-key": "abt_wrong"},
        json={"anthropic_version": "bedrock-2023-05-31", "messages": MESSAGES, "max_tokens": 5},
        timeout=15,
    )  # fmt: skip
    assert response.status_code == 401
    assert response.headers["x-amzn-ErrorType"] == "UnrecognizedClientException"
    assert cloud.upstream.seen == []


def test_count_tokens_through_bedrock(cloud: Cloud) -> None:
    counted = cloud.anthropic().messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert counted.input_tokens == 10
    (call,) = cloud.upstream.calls
    assert (call.operation, call.model_id, call.verified) == ("count-tokens", PROFILE, True)


def test_a_throttled_key_fails_over_to_the_next(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    bedrock: MockBedrock,
) -> None:  # fmt: skip
    name, key_ids = _provider(shared_controlplane, bedrock, keys=2)
    cloud = Cloud(shared_controlplane, shared_bridged, shared_token, bedrock, name, key_ids)
    bedrock.key_status[key_ids[0]] = 429
    message = cloud.anthropic().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    assert message.content
    assert [(c.access_key_id, c.verified) for c in bedrock.calls] == [
        (key_ids[0], True), (key_ids[1], True),
    ]  # fmt: skip
    # The throttled key rests: the next call goes to the second key at once.
    bedrock.calls.clear()
    bedrock.anthropic_version = None  # the SDK's own, which Bedrock takes
    cloud.bedrock().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    assert [c.access_key_id for c in bedrock.calls] == [key_ids[1]]

    # Every key throttled: 429 with Retry-After, in each API's shape.
    bedrock.key_status[key_ids[1]] = 429
    with pytest.raises(anthropic.RateLimitError) as way1:
        cloud.anthropic().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    assert way1.value.response.headers["retry-after"]
    response = httpx.post(
        f"{cloud.url}/model/{PROFILE}/invoke", headers={"x-api-key": cloud.token},
        json={"anthropic_version": "bedrock-2023-05-31", "messages": MESSAGES, "max_tokens": 5},
        timeout=15,
    )  # fmt: skip
    assert response.status_code == 429 and response.headers["retry-after"]
    assert response.headers["x-amzn-ErrorType"] == "ThrottlingException"


def test_a_cloud_error_reaches_an_anthropic_client_in_anthropic_shape(cloud: Cloud) -> None:
    cloud.upstream.key_status[cloud.key_ids[0]] = 403
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        cloud.anthropic().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    body = refused.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
    assert body["error"]["message"]


def test_malformed_frames_end_the_stream_with_an_error_event(cloud: Cloud) -> None:
    cloud.upstream.malformed_frames = True
    status, body, error = stream_raw(cloud)
    assert status == 200 and body.startswith("event: message_start")
    assert error["type"] == "api_error"
    (record,) = cloud.records(1)
    assert record.status == 502 and record.partial
    assert "malformed" in record.error_message

    # The SDK reads it as the stream's error, and does not hang.
    with pytest.raises(anthropic.APIStatusError):
        with cloud.anthropic().messages.stream(
            model=MODEL, max_tokens=50, messages=MESSAGES
        ) as stream:
            list(stream.text_stream)


def test_an_exception_frame_becomes_an_anthropic_error_event(cloud: Cloud) -> None:
    cloud.upstream.stream_exception = "throttlingException"
    status, body, error = stream_raw(cloud)
    assert status == 200 and body.startswith("event: message_start")
    assert error["type"] == "rate_limit_error"


def stream_raw(cloud: Cloud) -> tuple[int, str, dict[str, Any]]:
    """A streamed call's status and whole body, and the error its last event carries."""
    with httpx.stream(
        "POST", cloud.url + "/v1/messages", timeout=15,
        headers={"x-api-key": cloud.token, "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "max_tokens": 50, "messages": MESSAGES, "stream": True},
    ) as response:  # fmt: skip
        body = response.read().decode()
    last = body.strip().split("\n\n")[-1]
    assert last.startswith("event: error"), body
    return response.status_code, body, json.loads(last.partition("data: ")[2])["error"]


def test_limits_apply_as_for_anthropic_in_each_apis_shape(cloud: Cloud) -> None:
    """A token limited to other models, then to one call a minute: refused before the
    upstream, in Anthropic's shape on its API and in Bedrock's on Bedrock's paths."""
    name = unique("limited")
    token = create_token(cloud.cp, name)
    limited = Cloud(cloud.cp, cloud.bridged, token, cloud.upstream, cloud.provider, cloud.key_ids)
    set_limits(cloud.cp, f"token:{name}", models=["claude-haiku-*"])
    with pytest.raises(anthropic.PermissionDeniedError):
        limited.anthropic().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    invoke = f"{cloud.url}/model/{MODEL}/invoke"
    body = {"anthropic_version": "bedrock-2023-05-31", "messages": MESSAGES, "max_tokens": 5}
    refused = httpx.post(invoke, headers={"x-api-key": token}, json=body, timeout=15)
    assert refused.status_code == 403
    assert refused.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert "message" in refused.json()
    assert cloud.upstream.calls == []

    set_limits(cloud.cp, f"token:{name}", models=[], requests_per_minute=1)
    assert httpx.post(invoke, headers={"x-api-key": token}, json=body, timeout=15).is_success
    throttled = httpx.post(invoke, headers={"x-api-key": token}, json=body, timeout=15)
    assert throttled.status_code == 429 and throttled.headers["retry-after"]
    assert throttled.headers["x-amzn-ErrorType"] == "ThrottlingException"
    assert len(cloud.upstream.calls) == 1


def test_a_changed_model_map_and_key_apply_without_a_restart(cloud: Cloud) -> None:
    client = cloud.anthropic()
    client.messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    other = "eu.anthropic.claude-opus-5-5-20261201-v2:0"
    key_id, secret, text = aws_key()
    cloud.upstream.credentials[key_id] = secret
    old_key = cloud.cp.admin.GetProvider(admin_pb2.GetProviderRequest(ref=cloud.provider)).keys
    updated = cloud.cp.admin.UpdateProvider(admin_pb2.UpdateProviderRequest(
        ref=cloud.provider, add_keys=[text], remove_key_ids=[k.id for k in old_key],
        model_map=[admin_pb2.ModelMapping(model=MODEL, upstream_model=other)],
    ))  # fmt: skip
    cloud.cp.admin.wait_applied(updated.revision)
    client.messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    assert [(c.model_id, c.access_key_id, c.verified) for c in cloud.upstream.calls] == [
        (PROFILE, cloud.key_ids[0], True), (other, key_id, True),
    ]  # fmt: skip


def test_a_credential_bedrock_refuses_rests_and_the_next_key_serves(
    shared_controlplane: Controlplane, shared_bridged: Bridged, shared_token: str,
    bedrock: MockBedrock,
) -> None:  # fmt: skip
    """Bedrock answers a bad credential 403 (UnrecognizedClientException), not 401: the
    key rests like any key its provider refuses, and the next key serves."""
    name, key_ids = _provider(shared_controlplane, bedrock, keys=2)
    del bedrock.credentials[key_ids[0]]  # revoked at AWS
    cloud = Cloud(shared_controlplane, shared_bridged, shared_token, bedrock, name, key_ids)
    cloud.anthropic().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    cloud.anthropic().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    assert [(c.access_key_id, c.verified) for c in bedrock.calls] == [
        (key_ids[0], False), (key_ids[1], True), (key_ids[1], True),
    ]  # fmt: skip


@pytest.mark.parametrize("model", ["..", ".", "a/../b", "x y", "arn:aws:bedrock:x/"])
def test_a_model_id_that_would_leave_the_model_path_is_refused(cloud: Cloud, model: str) -> None:
    with pytest.raises(anthropic.BadRequestError):
        cloud.anthropic().messages.create(model=model, max_tokens=5, messages=MESSAGES)
    assert cloud.upstream.seen == []


def test_a_cloud_error_keeps_its_request_id(cloud: Cloud) -> None:
    cloud.upstream.key_status[cloud.key_ids[0]] = 400
    with pytest.raises(anthropic.BadRequestError) as refused:
        cloud.anthropic().messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    headers = refused.value.response.headers
    assert headers["x-amzn-requestid"] and headers["content-type"] == "application/json"
    assert refused.value.response.json()["error"]["type"] == "invalid_request_error"


def test_only_the_betas_bedrock_takes_go_in_its_body(cloud: Cloud) -> None:
    """Claude Code's first-party betas would make Bedrock refuse the call."""
    betas = "claude-code-20250219,interleaved-thinking-2025-05-14,per-turn-control-2026-07-01"
    client = anthropic.Anthropic(
        base_url=cloud.url, api_key=cloud.token, max_retries=0, timeout=15,
        default_headers={"anthropic-beta": betas},
    )  # fmt: skip
    client.messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
    (call,) = cloud.upstream.calls
    assert call.body is not None
    assert call.body["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
