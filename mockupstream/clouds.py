"""Local stand-ins for Claude on the clouds: AWS Bedrock (SigV4-signed InvokeModel, its
binary event stream, CountTokens) and Google Vertex AI (rawPredict, streamRawPredict and
count-tokens, behind access tokens that a token endpoint on the same server mints for
service accounts it made). Both check what arrives as the real services do — the
signature recomputed with botocore, the JWT assertion verified with google-auth — and
refuse in the cloud's own error shape, so that a test sees what a gateway got wrong.
The answers are MockUpstream's Anthropic answers (`anthropic_reply`) in each cloud's
envelope."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import struct
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import exceptions as google_exceptions
from google.auth import jwt

from mockupstream.server import ANTHROPIC_USAGE, MockUpstream

# --- AWS Bedrock -------------------------------------------------------------------------

AMZ_DATE = "%Y%m%dT%H%M%SZ"
SIGNATURE_WINDOW = timedelta(minutes=15)  # AWS refuses a signature older (or newer) than this
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/\s]+)/"
    r"(?P<service>[^/\s]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;_.-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
# The operations, on the path as sent: a model id may hold an ARN's "/" as %2F.
_BEDROCK_PATH = re.compile(r"/model/([^/]+)/(invoke|invoke-with-response-stream|count-tokens)")
# Bedrock's own errors name the service after the type; the front door's (auth) do not.
_CORAL = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
THROTTLED = "Too many requests, please wait before trying again."
# key_status → what Bedrock answers with that status.
_BEDROCK_ERRORS = {
    400: ("ValidationException", "The provided request is not valid."),
    403: ("AccessDeniedException", "You don't have access to the model with this model ID."),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", THROTTLED),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}  # fmt: skip
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)
BAD_TOKEN = "The security token included in the request is invalid."


class BedrockError(Exception):
    """A refusal, as Bedrock words it: a status, x-amzn-ErrorType, and {"message"}."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message

    def response(self) -> web.Response:
        return web.json_response(
            {"message": self.message}, status=self.status,
            headers={"x-amzn-ErrorType": self.error_type, "x-amzn-RequestId": str(uuid.uuid4())},
        )  # fmt: skip


def _invalid_signature(message: str) -> BedrockError:
    return BedrockError(403, "InvalidSignatureException", message)


def _invalid_input(message: str) -> BedrockError:
    return BedrockError(400, "ValidationException" + _CORAL, message)


def event_stream_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of AWS's event-stream encoding (application/vnd.amazon.eventstream),
    all headers strings: a prelude (total length, headers length, the prelude's CRC32),
    the headers, the payload, and the CRC32 of everything before it. botocore only
    decodes it, so the encoder is here."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        # name length (1 byte), name, type 7 = string, value length (2 bytes), value
        encoded += struct.pack(">B", len(raw_name)) + raw_name
        encoded += struct.pack(">BH", 7, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def bedrock_model_name(model_id: str) -> str:
    """The model a Bedrock answer names for a model id: us.anthropic.claude-x-v1:0, or an
    inference profile's ARN ending in it, answers as claude-x."""
    name = model_id.rsplit("/", 1)[-1]
    name = name.split("anthropic.", 1)[-1]
    return re.sub(r"-v\d+(:\d+)?$", "", name)


@dataclass
class BedrockCall:
    """One request as Bedrock understood it."""

    operation: str  # invoke, invoke-with-response-stream, count-tokens; "" off the routes
    model_id: str  # percent-decoded
    access_key_id: str = ""  # from the Authorization header, known or not
    verified: bool = False  # the signature checked out
    body: dict[str, Any] | None = None  # the InvokeModel body (count-tokens': the inner one)


@dataclass
class MockBedrock(MockUpstream):
    """Claude on Bedrock: every request SigV4-signed for service "bedrock" in `region`
    with one of `credentials` (access key id → secret access key)."""

    name: str = "Bedrock"
    credentials: dict[str, str] = field(default_factory=dict)
    # access key id → the session token a temporary credential must send with it
    session_tokens: dict[str, str] = field(default_factory=dict)
    region: str = "us-east-1"
    # What the body must say; None: any version (the SDKs' clients send their own API
    # version, not the cloud's).
    anthropic_version: str | None = "bedrock-2023-05-31"
    malformed_frames: bool = False  # the stream's second frame has a bad CRC
    # After the first chunk, an exception frame of this type ("throttlingException",
    # "modelStreamErrorException", …), and the stream ends.
    stream_exception: str | None = None
    calls: list[BedrockCall] = field(default_factory=list)
    # key_status is keyed by access key id

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        seen = await self._receive(request)
        route = _BEDROCK_PATH.fullmatch(request.rel_url.raw_path)
        operation, model_id = "", ""
        if route and request.method == "POST":
            model_id, operation = urllib.parse.unquote(route.group(1)), route.group(2)
        call = BedrockCall(operation, model_id)
        if self.record:
            self.calls.append(call)
        try:
            auth = _authorization(request)
            call.access_key_id = auth["key"]
            self._verify_signature(request, seen.body, auth)
            call.verified = True
            status = self.key_status.get(call.access_key_id)
            if status is not None:
                error_type, message = _BEDROCK_ERRORS.get(status, ("ServiceException", "refused"))
                raise BedrockError(status, error_type + _CORAL, message)
            if not operation:
                raise BedrockError(404, "UnknownOperationException", "Unknown operation")
            if operation == "count-tokens":
                call.body = self._model_body(_count_tokens_input(seen.body))
                return _aws_json({"inputTokens": 10})
            body = call.body = self._model_body(seen.body)
        except BedrockError as refusal:
            return refusal.response()
        whole, events = self.anthropic_reply(body, bedrock_model_name(model_id))
        if operation == "invoke":
            usage = whole["usage"]
            return _aws_json(whole, {
                "X-Amzn-Bedrock-Input-Token-Count": str(usage["input_tokens"]),
                "X-Amzn-Bedrock-Output-Token-Count": str(usage["output_tokens"]),
            })  # fmt: skip
        return await self._event_stream(request, events)

    def _verify_signature(self, request: web.Request, body: bytes, auth: re.Match[str]) -> None:
        """Recompute the request's SigV4 signature with botocore, from what arrived: the
        path as sent (percent-encoding and all), the body, and only the signed headers."""
        key_id = auth["key"]
        secret = self.credentials.get(key_id)
        if secret is None:
            raise BedrockError(403, "UnrecognizedClientException", BAD_TOKEN)
        token = self.session_tokens.get(key_id, "")
        sent_token = request.headers.get("X-Amz-Security-Token", "")
        if not hmac.compare_digest(sent_token.encode(), token.encode()):
            raise BedrockError(403, "UnrecognizedClientException", BAD_TOKEN)
        if auth["region"] != self.region:
            raise _invalid_signature("Credential should be scoped to a valid region.")
        if auth["service"] != "bedrock":
            raise _invalid_signature("Credential should be scoped to correct service: 'bedrock'.")
        amz_date = request.headers.get("X-Amz-Date", "")
        try:
            signed_at = datetime.strptime(amz_date, AMZ_DATE).replace(tzinfo=UTC)
        except ValueError:
            raise BedrockError(
                403, "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                "header.",
            ) from None  # fmt: skip
        if abs(datetime.now(UTC) - signed_at) > SIGNATURE_WINDOW:
            raise _invalid_signature(f"Signature expired: {amz_date} is not within 15 minutes.")
        # A signed X-Amz-Content-SHA256 stands for the body in the signature: it must be
        # the body's, or a changed body would pass.
        content_sha = request.headers.get("X-Amz-Content-SHA256")
        if content_sha is not None and content_sha != hashlib.sha256(body).hexdigest():
            raise _invalid_signature("The provided 'x-amz-content-sha256' header does not match.")
        signed = auth["signed"].split(";")
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        received = AWSRequest(method=request.method, url=url, data=body)
        for name, value in request.headers.items():
            if name.lower() in signed:
                received.headers[name] = value  # appends: a repeated header keeps each value
        received.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(key_id, secret, token or None), "bedrock", self.region)
        canonical = signer.canonical_request(received)
        expected = signer.signature(signer.string_to_sign(received, canonical), received)
        if not hmac.compare_digest(expected, auth["signature"]):
            raise _invalid_signature(BAD_SIGNATURE)

    def _model_body(self, raw: bytes) -> dict[str, Any]:
        """An InvokeModel body: Anthropic's Messages request with Bedrock's version and
        without "model" (the path says it) or "stream" (the operation says it)."""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _invalid_input(
                "Malformed input request, please reformat your input and try again."
            )
        for extraneous in ("model", "stream"):
            if extraneous in body:
                raise _invalid_input(
                    f"Malformed input request: #: extraneous key [{extraneous}] is not "
                    "permitted, please reformat your input and try again."
                )
        version = body.get("anthropic_version")
        if version is None:
            raise _invalid_input(
                "Malformed input request: #: required key [anthropic_version] not found, "
                "please reformat your input and try again."
            )
        if self.anthropic_version is not None and version != self.anthropic_version:
            raise _invalid_input(f"Invalid API version; use {self.anthropic_version}.")
        return body

    async def _event_stream(
        self, request: web.Request, events: list[tuple[str, dict[str, Any]]]
    ) -> web.StreamResponse:
        """The events as Bedrock streams them: each a "chunk" frame whose payload holds the
        event's JSON in base64; the last one carries Bedrock's invocation metrics."""
        name, last = events[-1]
        events = [*events[:-1], (name, last | {"amazon-bedrock-invocationMetrics": {
            "inputTokenCount": ANTHROPIC_USAGE["input_tokens"],
            "outputTokenCount": ANTHROPIC_USAGE["output_tokens"],
            "invocationLatency": 120, "firstByteLatency": 40}})]  # fmt: skip
        frames = [_chunk_frame(event) for _, event in events]
        if self.stream_exception:
            frames = [frames[0], _exception_frame(self.stream_exception)]
        if self.malformed_frames and len(frames) > 1:
            frames[1] = frames[1][:-4] + bytes(b ^ 0xFF for b in frames[1][-4:])
        headers = {
            "Content-Type": "application/vnd.amazon.eventstream",
            "x-amzn-bedrock-content-type": "application/json",
            "x-amzn-RequestId": str(uuid.uuid4()),
        }
        return await self._stream(request, headers, frames)


def _authorization(request: web.Request) -> re.Match[str]:
    """The parts of a SigV4 Authorization header; refused when it is missing or is not
    one."""
    header = request.headers.get("Authorization")
    if not header:
        raise BedrockError(
            403, "MissingAuthenticationTokenException", "Missing Authentication Token"
        )
    auth = _AUTHORIZATION.fullmatch(header.strip())
    if auth is None:
        raise BedrockError(
            403, "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
            "parameters (AWS4-HMAC-SHA256).",
        )  # fmt: skip
    return auth


def _count_tokens_input(raw: bytes) -> bytes:
    """CountTokens' body, {"input": {"invokeModel": {"body": base64}}}: the InvokeModel
    body it counts."""
    try:
        encoded = json.loads(raw)["input"]["invokeModel"]["body"]
        return base64.b64decode(encoded, validate=True)
    except (ValueError, TypeError, KeyError):
        raise _invalid_input(
            'Malformed input request: expected {"input": {"invokeModel": {"body": base64}}}.'
        ) from None


def _chunk_frame(event: dict[str, Any]) -> bytes:
    payload = {"bytes": base64.b64encode(json.dumps(event).encode()).decode(), "p": "abcdef"}
    return event_stream_frame(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload).encode(),
    )


def _exception_frame(exception_type: str) -> bytes:
    message = THROTTLED if exception_type == "throttlingException" else "The model stream failed."
    return event_stream_frame(
        {":exception-type": exception_type, ":content-type": "application/json",
         ":message-type": "exception"},
        json.dumps({"message": message}).encode(),
    )  # fmt: skip


def _aws_json(data: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        data, headers={"x-amzn-RequestId": str(uuid.uuid4()), **(headers or {})}
    )


# --- Google Vertex AI --------------------------------------------------------------------

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The audience google-auth writes in every assertion, whatever the key's token_uri: so
# Google's endpoint takes it, and so does this one (as well as its own URL).
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_VERTEX_PATH = re.compile(
    r"/v1/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/publishers/anthropic/"
    r"models/(?P<model>[^/]+):(?P<method>rawPredict|streamRawPredict)"
)
UNAUTHENTICATED = "Request had invalid authentication credentials."
# key_status → Google's status name for it.
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip
# token_status → the OAuth error the token endpoint answers with.
_OAUTH_ERRORS = {
    400: ("invalid_grant", "Invalid grant: account not found"),
    401: ("invalid_client", "The OAuth client was disabled."),
    429: ("rate_limit_exceeded", "Rate Limit Exceeded"),
}


def google_error(status: int, message: str) -> web.Response:
    name = _GOOGLE_STATUS.get(status, "UNKNOWN")
    return web.json_response(
        {"error": {"code": status, "message": message, "status": name}}, status=status
    )


def oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


@dataclass
class VertexCall:
    """One request to the publisher-model API as Vertex understood it."""

    operation: str  # rawPredict, streamRawPredict, count-tokens
    project: str
    region: str
    model: str  # the path's (count-tokens: the body's)
    client_email: str = ""  # whose access token it carried; "" when it had no valid one
    token: str = ""  # the bearer token sent, valid or not
    body: dict[str, Any] | None = None


@dataclass
class _Minted:
    client_email: str
    expires_at: float  # time.time()


@dataclass
class MockVertex(MockUpstream):
    """Claude on Vertex AI, with its own OAuth token endpoint (`token_url`): make a
    service account with `service_account()`, and its JWT assertions buy access tokens
    that the API takes."""

    name: str = "Vertex"
    anthropic_version: str | None = "vertex-2023-10-16"  # what the body must say; None: any
    token_lifetime: int = 3600  # expires_in of the tokens minted from now on
    token_status: dict[str, int] = field(default_factory=dict)  # client_email → refuse with
    mints: Counter[str] = field(default_factory=Counter)  # client_email → tokens minted
    calls: list[VertexCall] = field(default_factory=list)
    # key_status is keyed by client_email
    _public_keys: dict[str, str] = field(default_factory=dict, repr=False)  # email → PEM
    _tokens: dict[str, _Minted] = field(default_factory=dict, repr=False)

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def service_account(self, email: str | None = None, project_id: str = "test-project") -> str:
        """A new service account's JSON key, as the Cloud console downloads it, whose
        token_uri is this server's: its key pair is made here and its public half kept
        to verify the assertions it signs. Call it once the server has started."""
        if not self.port:
            raise RuntimeError("start the server first: the key names its token URL")
        email = email or f"sa-{secrets.token_hex(4)}@{project_id}.iam.gserviceaccount.com"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public_keys[email] = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()  # fmt: skip
        return json.dumps({
            "type": "service_account", "project_id": project_id,
            "private_key_id": secrets.token_hex(20), "private_key": private_pem,
            "client_email": email, "client_id": str(secrets.randbelow(10**21)).zfill(21),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": self.token_url,
        }, indent=2)  # fmt: skip

    def expire(self, token: str) -> None:
        """The token stops working, as if its hour were up."""
        if token in self._tokens:
            self._tokens[token].expires_at = 0.0

    def revoke_all(self) -> None:
        """Every token minted so far stops working; new ones can be minted."""
        self._tokens.clear()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        seen = await self._receive(request)
        if request.path == "/token" and request.method == "POST":
            form = dict(urllib.parse.parse_qsl(seen.body.decode(errors="replace")))
            return self._mint(form)
        route = _VERTEX_PATH.fullmatch(request.path)
        if route is None or request.method != "POST":
            return google_error(404, f"The requested URL {request.path} was not found.")
        counting = route["model"] == "count-tokens" and route["method"] == "rawPredict"
        call = VertexCall(
            "count-tokens" if counting else route["method"],
            route["project"], route["region"], route["model"],
        )  # fmt: skip
        if self.record:
            self.calls.append(call)
        call.token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        minted = self._tokens.get(call.token)
        if minted is None or minted.expires_at <= time.time():
            return google_error(401, UNAUTHENTICATED)
        call.client_email = minted.client_email
        status = self.key_status.get(minted.client_email)
        if status == 429:
            return google_error(429, _quota_exceeded(call.model))
        if status is not None:
            return google_error(status, f"refused with {status}")
        try:
            body = json.loads(seen.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return google_error(400, "Invalid JSON payload received.")
        call.body = body
        if counting:  # count-tokens names the model in its body, as the Messages API does
            if not isinstance(body.get("model"), str):
                return google_error(400, "model: Field required")
            call.model = body["model"]
            return web.json_response({"input_tokens": 10})
        problem = self._body_problem(body)
        if problem:
            return google_error(400, problem)
        whole, events = self.anthropic_reply(body, call.model.replace("@", "-"))
        if call.operation == "rawPredict":
            return web.json_response(whole)
        return await self._sse(request, events)

    def _body_problem(self, body: dict[str, Any]) -> str:
        """Why a rawPredict body is refused: the model is the path's, the version Vertex's."""
        if "model" in body:
            return "model: Extra inputs are not permitted"
        if "anthropic_version" not in body:
            return "anthropic_version: Field required"
        if (
            self.anthropic_version is not None
            and body["anthropic_version"] != self.anthropic_version
        ):
            return f"anthropic_version: Input should be '{self.anthropic_version}'"
        return ""

    def _mint(self, form: dict[str, str]) -> web.Response:
        """The token endpoint: a service account's RS256 assertion, signed with its key,
        for Google's token endpoint or this one (aud), in date, and for the cloud-platform
        scope, buys an access token."""
        if form.get("grant_type") != JWT_BEARER:
            return oauth_error(400, "unsupported_grant_type", "Invalid grant_type")
        assertion = form.get("assertion", "")
        try:
            claims = jwt.decode(assertion, verify=False)
        except (ValueError, TypeError, AttributeError, KeyError, google_exceptions.GoogleAuthError):
            return oauth_error(400, "invalid_grant", "Invalid JWT: not a signed JWT.")
        email = claims.get("iss")
        public_key = self._public_keys.get(email) if isinstance(email, str) else None
        if email is None or public_key is None:
            return oauth_error(400, "invalid_grant", "Invalid grant: account not found")
        status = self.token_status.get(email)
        if status is not None:
            error, description = _OAUTH_ERRORS.get(status, ("internal_failure", "Backend Error"))
            return oauth_error(status, error, description)
        try:
            jwt.decode(assertion, certs=public_key, audience=[GOOGLE_TOKEN_URL, self.token_url])
        except (ValueError, TypeError, google_exceptions.GoogleAuthError):
            return oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return oauth_error(
                400, "invalid_scope", "Invalid OAuth scope or ID token audience provided."
            )
        token = f"ya29.{secrets.token_urlsafe(32)}"
        self._tokens[token] = _Minted(email, time.time() + self.token_lifetime)
        self.mints[email] += 1
        return web.json_response(
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )


def _quota_exceeded(model: str) -> str:
    return (
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
        f"with base model: anthropic-{model}. Please submit a quota increase request."
    )
