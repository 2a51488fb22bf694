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
from common.clouds import BEDROCK, usable_model

BEDROCK_VERSION = "bedrock-2023-05-31"
VERTEX_VERSION = "vertex-2023-10-16"


class CloudCall(NamedTuple):
    url: URL
    body: bytes | bytearray
    frames_to_sse: bool = False  # Bedrock answers in event-stream frames; the client wants SSE
    anthropic_errors: bool = False  # way 1: the cloud's errors are given in Anthropic's shape
    count_tokens: bool = False  # Bedrock's CountTokens answer, in Anthropic's words


class BadCloudRequest(ValueError):
    """A request the cloud cannot be asked (400)."""


class CloudPath(NamedTuple):
    """What a way-2 path says: its model, and whether the answer streams."""

    model: str
    streams: bool


def cloud_path(endpoint: Endpoint, path: str) -> CloudPath:
    match = endpoint.pattern.match(path)
    groups = match.groupdict() if match else {}
    action = groups.get("action") or ""
    return CloudPath(groups.get("model") or "", action in _STREAMING)


_STREAMING = ("invoke-with-response-stream", "streamRawPredict")


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
    upstream_model = _mapped(route, model)
    counting = not endpoint.intercepted  # /v1/messages/count_tokens, the one pass-through
    if route.type == BEDROCK:
        del data["model"]
        data.pop("stream", None)
        data.setdefault("anthropic_version", BEDROCK_VERSION)
        betas = _bedrock_betas(headers.get("anthropic-beta", ""))
        if betas:  # Bedrock reads them from the body
            data.setdefault("anthropic_beta", betas)
        if counting:
            data.setdefault("max_tokens", 1)  # InvokeModel's body wants one; none is spent
            invoke = base64.b64encode(orjson.dumps(data)).decode()
            payload = orjson.dumps({"input": {"invokeModel": {"body": invoke}}})
            url = _bedrock_url(route, upstream_model, "count-tokens")
            return CloudCall(url, payload, anthropic_errors=True, count_tokens=True)
        action = "invoke-with-response-stream" if streaming else "invoke"
        url = _bedrock_url(route, upstream_model, action)
        return CloudCall(url, orjson.dumps(data), frames_to_sse=streaming, anthropic_errors=True)
    data.setdefault("anthropic_version", VERTEX_VERSION)
    if counting:
        data["model"] = upstream_model  # Vertex's count-tokens reads it from the body
        url = _vertex_url(route, "count-tokens", "rawPredict")
        return CloudCall(url, orjson.dumps(data), anthropic_errors=True)
    del data["model"]
    method = "streamRawPredict" if streaming else "rawPredict"
    url = _vertex_url(route, upstream_model, method)
    return CloudCall(url, orjson.dumps(data), anthropic_errors=True)


# The betas Bedrock takes in its body; it refuses the body with any other ("invalid beta
# flag"), and the Anthropic API's clients send first-party ones (Claude Code sends
# claude-code-20250219, per-turn-control-…, and more). Claude Code's own Bedrock mode
# filters them likewise. A beta Bedrock adds is added here.
BEDROCK_BETAS = frozenset({
    "computer-use-2024-10-22", "computer-use-2025-01-24", "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14", "output-128k-2025-02-19", "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07", "context-management-2025-06-27", "effort-2025-11-24",
    "tool-search-tool-2025-10-19", "tool-examples-2025-10-29",
    "thinking-token-count-2026-05-13",
})  # fmt: skip


def _bedrock_betas(header: str) -> list[str]:
    return [b for b in (b.strip() for b in header.split(",")) if b in BEDROCK_BETAS]


def _as_sent(route: Route, endpoint: Endpoint, path: str, body: bytearray) -> CloudCall:
    match = endpoint.pattern.match(path)
    assert match is not None  # the endpoint was chosen by this pattern
    groups = match.groupdict()
    if route.type == BEDROCK:
        return CloudCall(
            _bedrock_url(route, _mapped(route, groups["model"]), groups["action"]), body
        )
    if groups.get("model"):
        model = _mapped(route, groups["model"])
        return CloudCall(_vertex_url(route, model, groups["action"]), body)
    # Vertex's count-tokens names the model in its body.
    data = _json_object(body)
    if isinstance(data.get("model"), str):
        data["model"] = _mapped(route, data["model"])
    return CloudCall(_vertex_url(route, "count-tokens", "rawPredict"), orjson.dumps(data))


def _mapped(route: Route, model: str) -> str:
    upstream_model = route.model_map.get(model, model)
    if not usable_model(route.type, upstream_model):
        raise BadCloudRequest(f"model: {model!r} is not a model id this provider can call")
    return upstream_model


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
