"""mockupstream/clouds.py: the Bedrock and Vertex stand-ins check what arrives as the
clouds do. Given requests signed by botocore, tokens minted by google-auth and the
anthropic SDK's own cloud clients, then the stand-ins take what the real services take
and refuse, in the cloud's shape, what they refuse."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import anthropic
import botocore.auth
import google.auth.transport.requests
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import (
    ChecksumMismatch,
    EventStreamBuffer,
)
from google.oauth2 import service_account as google_service_account

from common import clouds
from mockupstream.clouds import (
    CLOUD_PLATFORM,
    MockBedrock,
    MockVertex,
    bedrock_model_name,
    event_stream_frame,
)

KEY_ID, SECRET = "AKIAEXAMPLE000000001", "secret/one+two"
MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
PROFILE_ARN = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{MODEL_ID}"
PROMPT: dict[str, Any] = {"max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
BEDROCK_BODY = PROMPT | {"anthropic_version": "bedrock-2023-05-31"}
VERTEX_BODY = PROMPT | {"anthropic_version": "vertex-2023-10-16"}
# The SDK's cloud clients write the first-party API version (anthropic 2.14: "2026-10-21")
# as the body's anthropic_version unless it is given; the clouds want theirs.
BEDROCK_VERSION = {"anthropic_version": "bedrock-2023-05-31"}
VERTEX_VERSION = {"anthropic_version": "vertex-2023-10-16"}


# --- Bedrock -----------------------------------------------------------------------------


@pytest.fixture
def bedrock() -> Iterator[MockBedrock]:
    mock = MockBedrock(credentials={KEY_ID: SECRET}).start()
    try:
        yield mock
    finally:
        mock.stop()


def path(model_id: str, operation: str) -> str:
    """As the SDK writes it: ":" kept, an ARN's "/" as %2F."""
    return f"/model/{urllib.parse.quote(model_id, safe=':')}/{operation}"


def signed_post(
    url: str, body: bytes, *, key: str = KEY_ID, secret: str = SECRET,
    region: str = "us-east-1", token: str | None = None, send: bytes | None = None,
) -> httpx.Response:  # fmt: skip
    """POST `body` (or `send` instead, after signing `body`) signed as botocore signs."""
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    botocore.auth.SigV4Auth(Credentials(key, secret, token), "bedrock", region).add_auth(request)
    return httpx.post(url, content=body if send is None else send, headers=dict(request.headers))


def frames(data: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def test_an_event_stream_frame_round_trips_through_botocore() -> None:
    headers = {":event-type": "chunk", ":message-type": "event", "name-é": "välue"}
    payloads = [b'{"a": 1}', b"", bytes(range(256)) * 3]
    data = b"".join(event_stream_frame(headers, p) for p in payloads)
    buffer = EventStreamBuffer()
    decoded = []
    for i in range(0, len(data), 7):  # in pieces, as a socket delivers it
        buffer.add_data(data[i : i + 7])
        decoded += list(buffer)
    assert [(m.headers, m.payload) for m in decoded] == [(headers, p) for p in payloads]


def test_a_botocore_signed_invoke_is_answered(bedrock: MockBedrock) -> None:
    body = json.dumps(BEDROCK_BODY).encode()
    response = signed_post(bedrock.url + path(MODEL_ID, "invoke"), body)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "claude-sonnet-4-5-20250929"
    assert response.json()["content"] == [{"type": "text", "text": "hello from Bedrock"}]
    [call] = bedrock.calls
    assert (call.operation, call.model_id, call.access_key_id, call.verified) == (
        "invoke", MODEL_ID, KEY_ID, True,
    )  # fmt: skip
    assert call.body == BEDROCK_BODY


def test_the_signature_covers_the_path_as_sent(bedrock: MockBedrock) -> None:
    """An inference profile's ARN travels with its "/" as %2F, and is signed so."""
    url = bedrock.url + path(PROFILE_ARN, "invoke")
    assert "%2F" in url
    response = signed_post(url, json.dumps(BEDROCK_BODY).encode())
    assert response.status_code == 200, response.text
    assert bedrock.calls[0].model_id == PROFILE_ARN
    assert (
        response.json()["model"] == bedrock_model_name(PROFILE_ARN) == "claude-sonnet-4-5-20250929"
    )


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        ({"send": b'{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 9}'},
         "InvalidSignatureException"),
        ({"secret": "another secret"}, "InvalidSignatureException"),
        ({"region": "us-west-2"}, "InvalidSignatureException"),
        ({"key": "AKIAUNKNOWN000000000"}, "UnrecognizedClientException"),
        ({"token": "a session token it never issued"}, "UnrecognizedClientException"),
    ],
    ids=["tampered-body", "other-secret", "wrong-region", "unknown-key", "stray-token"],
)  # fmt: skip
def test_a_bad_signature_is_refused_403(
    bedrock: MockBedrock, change: dict[str, Any], error_type: str
) -> None:
    response = signed_post(
        bedrock.url + path(MODEL_ID, "invoke"), json.dumps(BEDROCK_BODY).encode(), **change
    )
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == error_type
    assert set(response.json()) == {"message"}
    assert not bedrock.calls[0].verified


def test_unsigned_and_malformed_authorizations_are_refused_403(bedrock: MockBedrock) -> None:
    url = bedrock.url + path(MODEL_ID, "invoke")
    body = json.dumps(BEDROCK_BODY).encode()
    assert httpx.post(url, content=body).status_code == 403
    scope = f"Credential={KEY_ID}/20250101/us-east-1/bedrock/aws4_request"
    for header in ["Bearer abc", scope, f"AWS4-HMAC-SHA256 {scope}, SignedHeaders=host"]:
        response = httpx.post(url, content=body, headers={"Authorization": header})
        assert response.status_code == 403, header
        assert "message" in response.json()


def test_a_session_token_must_come_with_its_key() -> None:
    mock = MockBedrock(credentials={KEY_ID: SECRET}, session_tokens={KEY_ID: "tok"}).start()
    try:
        url, body = mock.url + path(MODEL_ID, "invoke"), json.dumps(BEDROCK_BODY).encode()
        assert signed_post(url, body, token="tok").status_code == 200
        assert signed_post(url, body).status_code == 403
        refused = signed_post(url, body, token="another")
        assert refused.headers["x-amzn-ErrorType"] == "UnrecognizedClientException"
    finally:
        mock.stop()


def test_a_stale_signature_is_refused(
    bedrock: MockBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS takes a signature for 15 minutes either side of its clock."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: datetime(2020, 1, 1))
    response = signed_post(
        bedrock.url + path(MODEL_ID, "invoke"), json.dumps(BEDROCK_BODY).encode()
    )
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert "expired" in response.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        BEDROCK_BODY | {"model": MODEL_ID},
        BEDROCK_BODY | {"stream": True},
        PROMPT,
        PROMPT | {"anthropic_version": "2023-06-01"},
        "{not json",
    ],
    ids=["model", "stream", "no-version", "wrong-version", "not-json"],
)
def test_a_body_bedrock_does_not_take_is_refused_400(
    bedrock: MockBedrock, body: dict[str, Any] | str
) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    response = signed_post(bedrock.url + path(MODEL_ID, "invoke"), raw)
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"].split(":")[0] == "ValidationException"
    assert set(response.json()) == {"message"}


def test_an_unknown_operation_is_404(bedrock: MockBedrock) -> None:
    response = signed_post(bedrock.url + "/model/x/converse-something", b"{}")
    assert response.status_code == 404
    assert response.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert "message" in response.json()


def test_a_throttled_key_gets_bedrocks_throttling(bedrock: MockBedrock) -> None:
    bedrock.key_status[KEY_ID] = 429
    response = signed_post(
        bedrock.url + path(MODEL_ID, "invoke"), json.dumps(BEDROCK_BODY).encode()
    )
    assert response.status_code == 429
    assert response.headers["x-amzn-ErrorType"] == (
        "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )
    assert response.json() == {"message": "Too many requests, please wait before trying again."}


def test_count_tokens(bedrock: MockBedrock) -> None:
    inner = base64.b64encode(json.dumps(BEDROCK_BODY).encode()).decode()
    body = json.dumps({"input": {"invokeModel": {"body": inner}}}).encode()
    response = signed_post(bedrock.url + path(MODEL_ID, "count-tokens"), body)
    assert response.status_code == 200, response.text
    assert response.json() == {"inputTokens": 10}
    assert bedrock.calls[0].body == BEDROCK_BODY
    assert signed_post(bedrock.url + path(MODEL_ID, "count-tokens"), b"{}").status_code == 400


def test_the_stream_is_anthropics_events_in_event_stream_frames(bedrock: MockBedrock) -> None:
    body = json.dumps(BEDROCK_BODY).encode()
    response = signed_post(bedrock.url + path(MODEL_ID, "invoke-with-response-stream"), body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    messages = frames(response.content)
    assert {m.headers[":message-type"] for m in messages} == {"event"}
    assert {m.headers[":event-type"] for m in messages} == {"chunk"}
    events = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in messages]
    metrics = events[-1].pop("amazon-bedrock-invocationMetrics")
    assert metrics["inputTokenCount"] == 13
    _, expected = bedrock.anthropic_reply(BEDROCK_BODY, "claude-sonnet-4-5-20250929")
    assert events == [event for _, event in expected]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "hello from Bedrock"
    assert bedrock.calls[0].operation == "invoke-with-response-stream"


def test_malformed_frames_fail_botocores_checksum(bedrock: MockBedrock) -> None:
    bedrock.malformed_frames = True
    body = json.dumps(BEDROCK_BODY).encode()
    response = signed_post(bedrock.url + path(MODEL_ID, "invoke-with-response-stream"), body)
    buffer = EventStreamBuffer()
    buffer.add_data(response.content)
    assert next(buffer).headers[":event-type"] == "chunk"
    with pytest.raises(ChecksumMismatch):
        next(buffer)


def test_a_stream_exception_follows_the_first_chunk(bedrock: MockBedrock) -> None:
    bedrock.stream_exception = "throttlingException"
    body = json.dumps(BEDROCK_BODY).encode()
    response = signed_post(bedrock.url + path(MODEL_ID, "invoke-with-response-stream"), body)
    first, error = frames(response.content)
    assert first.headers[":message-type"] == "event"
    assert error.headers[":message-type"] == "exception"
    assert error.headers[":exception-type"] == "throttlingException"
    assert "message" in json.loads(error.payload)


def bedrock_sdk(mock: MockBedrock) -> anthropic.AnthropicBedrock:
    return anthropic.AnthropicBedrock(
        aws_access_key=KEY_ID, aws_secret_key=SECRET, aws_region="us-east-1",
        base_url=mock.url, max_retries=0,
    )  # fmt: skip


def test_the_sdks_bedrock_client_gets_a_message_and_a_stream(bedrock: MockBedrock) -> None:
    client = bedrock_sdk(bedrock)
    message = client.messages.create(model=MODEL_ID, extra_body=BEDROCK_VERSION, **PROMPT)
    assert message.content[0].text == "hello from Bedrock"
    with client.messages.stream(model=PROFILE_ARN, extra_body=BEDROCK_VERSION, **PROMPT) as s:
        assert s.get_final_text() == "hello from Bedrock"
        assert s.get_final_message().usage.output_tokens == 5
    assert [(c.operation, c.model_id, c.verified) for c in bedrock.calls] == [
        ("invoke", MODEL_ID, True), ("invoke-with-response-stream", PROFILE_ARN, True),
    ]  # fmt: skip


def test_the_sdk_raises_a_stream_exception_and_a_refusal(bedrock: MockBedrock) -> None:
    bedrock.stream_exception = "throttlingException"
    client = bedrock_sdk(bedrock)
    with pytest.raises(anthropic.APIStatusError, match="Too many requests"):
        with client.messages.stream(model=MODEL_ID, extra_body=BEDROCK_VERSION, **PROMPT) as s:
            s.get_final_text()
    bedrock.key_status[KEY_ID] = 429
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=MODEL_ID, extra_body=BEDROCK_VERSION, **PROMPT)


# --- Vertex ------------------------------------------------------------------------------

VERTEX_MODEL = "claude-sonnet-4-5@20250929"


@pytest.fixture
def vertex() -> Iterator[MockVertex]:
    mock = MockVertex().start()
    try:
        yield mock
    finally:
        mock.stop()


def google_credentials(key_json: str) -> google_service_account.Credentials:
    return google_service_account.Credentials.from_service_account_info(
        json.loads(key_json), scopes=[CLOUD_PLATFORM]
    )


def mint(key_json: str) -> str:
    credentials = google_credentials(key_json)
    credentials.refresh(google.auth.transport.requests.Request())
    assert isinstance(credentials.token, str)
    return credentials.token


def vertex_url(mock: MockVertex, method: str, model: str = VERTEX_MODEL) -> str:
    return (
        f"{mock.url}/v1/projects/test-project/locations/us-east5/publishers/anthropic/models/"
        f"{model}:{method}"
    )


def test_a_service_account_key_is_taken_by_aibridge_and_google_auth(vertex: MockVertex) -> None:
    key_json = vertex.service_account("bridge@test-project.iam.gserviceaccount.com")
    info = clouds.service_account(key_json)
    assert info["token_uri"] == vertex.token_url
    assert info["client_email"] == "bridge@test-project.iam.gserviceaccount.com"
    credentials = google_credentials(key_json)
    credentials.refresh(google.auth.transport.requests.Request())
    assert isinstance(credentials.token, str) and credentials.token.startswith("ya29.")
    assert credentials.valid
    assert vertex.mints["bridge@test-project.iam.gserviceaccount.com"] == 1
    assert mint(key_json) != credentials.token
    assert vertex.mints["bridge@test-project.iam.gserviceaccount.com"] == 2


def test_the_token_endpoint_refuses_what_google_refuses(vertex: MockVertex) -> None:
    key_json, other = vertex.service_account(), vertex.service_account()
    email = json.loads(key_json)["client_email"]
    # Signed with another account's key, claiming to be this one.
    forged = json.loads(other) | {"client_email": email}
    request = google.auth.transport.requests.Request()
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        google_service_account.Credentials.from_service_account_info(
            forged, scopes=[CLOUD_PLATFORM]
        ).refresh(request)
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_scope"):
        google_service_account.Credentials.from_service_account_info(
            json.loads(key_json), scopes=["https://www.googleapis.com/auth/drive"]
        ).refresh(request)
    vertex.token_status[email] = 400
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        mint(key_json)
    for form in [{}, {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                      "assertion": "not.a.jwt"}]:  # fmt: skip
        response = httpx.post(vertex.token_url, data=form)
        assert response.status_code == 400
        assert "error" in response.json()
    assert vertex.mints[email] == 0
    assert mint(other)  # the other account is still served


def vertex_sdk(mock: MockVertex, token: str) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(
        region="us-east5", project_id="test-project", base_url=mock.url + "/v1",
        access_token=token, max_retries=0,
    )  # fmt: skip


def test_the_sdks_vertex_client_gets_a_message_and_a_stream(vertex: MockVertex) -> None:
    key_json = vertex.service_account()
    token = mint(key_json)
    client = vertex_sdk(vertex, token)
    message = client.messages.create(model=VERTEX_MODEL, extra_body=VERTEX_VERSION, **PROMPT)
    assert message.content[0].text == "hello from Vertex"
    assert message.model == "claude-sonnet-4-5-20250929"
    with client.messages.stream(model=VERTEX_MODEL, extra_body=VERTEX_VERSION, **PROMPT) as s:
        assert s.get_final_text() == "hello from Vertex"
    counted = client.messages.count_tokens(model=VERTEX_MODEL, messages=PROMPT["messages"])
    assert counted.input_tokens == 10
    email = json.loads(key_json)["client_email"]
    assert [
        (c.operation, c.project, c.region, c.model, c.client_email, c.token)
        for c in vertex.calls
    ] == [
        ("rawPredict", "test-project", "us-east5", VERTEX_MODEL, email, token),
        ("streamRawPredict", "test-project", "us-east5", VERTEX_MODEL, email, token),
        ("count-tokens", "test-project", "us-east5", VERTEX_MODEL, email, token),
    ]  # fmt: skip


def test_a_bad_or_expired_bearer_gets_401(vertex: MockVertex) -> None:
    key_json = vertex.service_account()
    token = mint(key_json)
    url = vertex_url(vertex, "rawPredict")
    unauthenticated = {"error": {
        "code": 401, "message": "Request had invalid authentication credentials.",
        "status": "UNAUTHENTICATED"}}  # fmt: skip
    ok = httpx.post(url, json=VERTEX_BODY, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200, ok.text
    for headers in [{}, {"Authorization": "Bearer ya29.not-minted-here"}]:
        response = httpx.post(url, json=VERTEX_BODY, headers=headers)
        assert (response.status_code, response.json()) == (401, unauthenticated)
    vertex.expire(token)
    response = httpx.post(url, json=VERTEX_BODY, headers={"Authorization": f"Bearer {token}"})
    assert (response.status_code, response.json()) == (401, unauthenticated)
    with pytest.raises(anthropic.AuthenticationError):
        vertex_sdk(vertex, token).messages.create(
            model=VERTEX_MODEL, extra_body=VERTEX_VERSION, **PROMPT
        )


def test_revoked_tokens_are_refreshed_by_google_auth(vertex: MockVertex) -> None:
    key_json = vertex.service_account()
    credentials = google_credentials(key_json)
    request = google.auth.transport.requests.Request()
    credentials.refresh(request)
    first = credentials.token
    vertex.revoke_all()
    url = vertex_url(vertex, "rawPredict")
    stale = httpx.post(url, json=VERTEX_BODY, headers={"Authorization": f"Bearer {first}"})
    assert stale.status_code == 401
    credentials.refresh(request)
    assert credentials.token != first
    fresh = httpx.post(
        url, json=VERTEX_BODY, headers={"Authorization": f"Bearer {credentials.token}"}
    )
    assert fresh.status_code == 200, fresh.text


def test_a_token_lives_as_long_as_it_says(vertex: MockVertex) -> None:
    vertex.token_lifetime = 0
    token = mint(vertex.service_account())
    response = httpx.post(
        vertex_url(vertex, "rawPredict"), json=VERTEX_BODY,
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [VERTEX_BODY | {"model": VERTEX_MODEL}, PROMPT, PROMPT | BEDROCK_VERSION],
    ids=["model", "no-version", "wrong-version"],
)
def test_a_body_vertex_does_not_take_is_refused_400(
    vertex: MockVertex, body: dict[str, Any]
) -> None:
    token = mint(vertex.service_account())
    response = httpx.post(
        vertex_url(vertex, "rawPredict"), json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_an_exhausted_account_gets_resource_exhausted(vertex: MockVertex) -> None:
    key_json = vertex.service_account()
    vertex.key_status[json.loads(key_json)["client_email"]] = 429
    response = httpx.post(
        vertex_url(vertex, "streamRawPredict"), json=VERTEX_BODY | {"stream": True},
        headers={"Authorization": f"Bearer {mint(key_json)}"},
    )  # fmt: skip
    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["message"].startswith("Quota exceeded")
    assert mint(vertex.service_account())  # another account is not exhausted


def test_an_unknown_vertex_path_is_404(vertex: MockVertex) -> None:
    response = httpx.post(vertex.url + "/v1/projects/p/locations/r/endpoints/e:predict", json={})
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
