"""A call to Bedrock or Vertex, as bridged makes it from what the client sent.

Way 1: a client of the Anthropic API (`/v1/messages`, `/v1/messages/count_tokens`).
The model leaves the body for the URL, as each cloud wants it: Bedrock's InvokeModel
(or InvokeModelWithResponseStream, whose frames bridged turns back into SSE) and
CountTokens; Vertex's rawPredict, streamRawPredict and count-tokens.
Way 2: a client of the cloud's own API (`/model/{id}/invoke…`, `/v1/projects/…`): its
body goes as it came, to the same path on the provider's host, with the provider's
project and region (never the client's: the credential is the provider's, and a caller
must not choose what it bills). Either way the model is mapped by the provider's model
map.
"""

from __future__ import annotations

import base64
from typing import Any, NamedTuple
from urllib.parse import quote

import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from bridged.routes import Endpoint, Route
from common.clouds import BEDROCK, MODEL

BEDROCK_VERSION = "bedrock-2023-05-31"
VERTEX_VERSION = "vertex-2023-10-16"


class CloudCall(NamedTuple):
    url: URL
    body: bytes | bytearray
    frames_to_sse: bool  # Bedrock answers in event-stream frames; the client wants SSE
    anthropic_errors: bool  # way 1: the cloud's errors are given in Anthropic's shape
    count_tokens: bool = False  # Bedrock's CountTokens answer, in Anthropic's words


class BadCloudRequest(ValueError):
    """A way-1 request the cloud cannot be asked (400, in Anthropic's shape)."""


def cloud_call(
    route: Route, endpoint: Endpoint, path: str, body: bytearray,
    headers: CIMultiDictProxy[str], streaming: bool,
) -> CloudCall:  # fmt: skip
    if endpoint.dialect:
        return _as_sent(route, endpoint, path, body)
    data = _json_object(body)
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise BadCloudRequest("model: is required")
    upstream_model = route.model_map.get(model, model)
    if not MODEL.fullmatch(upstream_model):
        raise BadCloudRequest(f"model: {model!r} is not a model id this provider can call")
    counting = endpoint.route == ""  # /v1/messages/count_tokens
    if route.type == BEDROCK:
        del data["model"]
        data.pop("stream", None)
        data.setdefault("anthropic_version", BEDROCK_VERSION)
        betas = headers.get("anthropic-beta")
        if betas:  # Bedrock reads them from the body
            data.setdefault("anthropic_beta", [b.strip() for b in betas.split(",") if b.strip()])
        if counting:
            data.setdefault("max_tokens", 1)  # InvokeModel's body wants one; none is spent
            invoke = base64.b64encode(orjson.dumps(data)).decode()
            payload = {"input": {"invokeModel": {"body": invoke}}}
            url = _bedrock_url(route, upstream_model, "count-tokens")
            return CloudCall(url, orjson.dumps(payload), False, True, count_tokens=True)
        action = "invoke-with-response-stream" if streaming else "invoke"
        url = _bedrock_url(route, upstream_model, action)
        return CloudCall(url, orjson.dumps(data), streaming, True)
    data.setdefault("anthropic_version", VERTEX_VERSION)
    if counting:
        data["model"] = upstream_model  # Vertex's count-tokens reads it from the body
        return CloudCall(_vertex_url(route, "count-tokens", "rawPredict"), orjson.dumps(data),
                         False, True)  # fmt: skip
    del data["model"]
    method = "streamRawPredict" if streaming else "rawPredict"
    return CloudCall(_vertex_url(route, upstream_model, method), orjson.dumps(data), False, True)


def path_model(endpoint: Endpoint, path: str) -> str:
    """The model a way-2 path names ("" for the others)."""
    match = endpoint.pattern.match(path)
    return match.group("model") if match and "model" in endpoint.pattern.groupindex else ""


def path_streams(endpoint: Endpoint, path: str) -> bool:
    match = endpoint.pattern.match(path)
    action = match.group("action") if match and "action" in endpoint.pattern.groupindex else ""
    return action in ("invoke-with-response-stream", "streamRawPredict")


def _as_sent(route: Route, endpoint: Endpoint, path: str, body: bytearray) -> CloudCall:
    match = endpoint.pattern.match(path)
    assert match is not None  # the endpoint was chosen by this pattern
    groups = match.groupdict()
    model = groups.get("model") or ""
    upstream_model = route.model_map.get(model, model)
    if route.type == BEDROCK:
        url = _bedrock_url(route, upstream_model, groups["action"])
    elif model:
        url = _vertex_url(route, upstream_model, groups["action"])
    else:
        url = _vertex_url(route, "count-tokens", "rawPredict")
    return CloudCall(url, body, False, False)


def _bedrock_url(route: Route, model: str, action: str) -> URL:
    # As the SDKs write it: an inference-profile ARN's "/" encoded, its ":" not.
    return URL(f"{route.base_url}/model/{quote(model, safe=':')}/{action}", encoded=True)


def _vertex_url(route: Route, model: str, method: str) -> URL:
    return URL(
        f"{route.base_url}/v1/projects/{quote(route.project, safe=':')}/locations/"
        f"{route.region}/publishers/anthropic/models/{quote(model, safe='@')}:{method}",
        encoded=True,
    )


def _json_object(body: bytearray) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except ValueError:
        raise BadCloudRequest("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise BadCloudRequest("the request body must be a JSON object")
    return data
