"""Claude on the clouds: AWS Bedrock and Google Vertex AI as provider types.

The rules both sides apply: the controlplane checks a key's credential JSON and a
provider's region when they are given, and bridged reads them from each snapshot with
the same functions, so a key the controlplane accepts is one bridged can use. Error
messages never repeat a credential: it is a secret even when it is wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from common.urls import BadBaseURL, parse_base_url

BEDROCK = "bedrock"
VERTEX = "vertex"
CLOUD_TYPES = (BEDROCK, VERTEX)
# The provider types whose clients speak Anthropic's Messages API to the gateway.
ANTHROPIC_TYPES = ("anthropic", *CLOUD_TYPES)

REGION = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")  # us-east-1, europe-west1, global
PROJECT = re.compile(r"[a-z0-9][a-z0-9.:-]{0,98}[a-z0-9]")  # Google's ids, domain-scoped too
MODEL = re.compile(r"[A-Za-z0-9._:/@-]{1,200}")  # a model name, an inference-profile ARN
VERTEX_MODEL = re.compile(r"[A-Za-z0-9._@-]{1,200}")  # a Vertex model (claude-x@20250101)
MODEL_MAP_MAX = 200  # mappings per provider
CREDENTIAL_MAX = 16 * 1024  # characters of a credential JSON (a service account's is ~2.4k)

_BEDROCK_HOST = re.compile(r"bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")
_VERTEX_HOST = re.compile(r"(?:([a-z0-9-]+)-)?aiplatform\.googleapis\.com")
_VERTEX_MULTI_REGION_HOST = re.compile(r"aiplatform\.([a-z]+)\.rep\.googleapis\.com")

# What Vertex needs of a service-account JSON, and what is stored of it.
_SERVICE_ACCOUNT_FIELDS = (
    "type", "project_id", "private_key_id", "private_key", "client_email", "client_id",
    "token_uri",
)  # fmt: skip


class BadCredential(ValueError):
    """Why a credential is unusable, worded to follow "a key …"; never its content."""


@dataclass(frozen=True)
class AwsCredential:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


def region_from_host(provider_type: str, host: str) -> str:
    """The region a cloud endpoint's host names; "" when it names none (a local
    stand-in, a private endpoint)."""
    if provider_type == BEDROCK:
        match = _BEDROCK_HOST.fullmatch(host)
        return match.group(1) if match else ""
    if provider_type == VERTEX:
        match = _VERTEX_HOST.fullmatch(host)
        if match:
            return match.group(1) or "global"
        match = _VERTEX_MULTI_REGION_HOST.fullmatch(host)
        return match.group(1) if match else ""
    return ""


def usable_model(provider_type: str, name: str) -> bool:
    """A model id bridged may put in a cloud's URL path: no segment "", "." or ".."
    (the signer and the cloud resolve those, and the call would reach another path than
    the one checked)."""
    pattern = VERTEX_MODEL if provider_type == VERTEX else MODEL
    return bool(pattern.fullmatch(name)) and all(
        segment not in ("", ".", "..") for segment in name.split("/")
    )


def effective_region(provider_type: str, base_url: str, region: str) -> str:
    """The region calls go to: the one given, or else the base_url's host's; "" if
    neither says."""
    if region:
        return region
    try:
        host = parse_base_url(base_url).host
    except BadBaseURL:
        return ""
    return region_from_host(provider_type, host)


def aws_credential(text: str) -> AwsCredential:
    """A bedrock key: {"access_key_id", "secret_access_key", optional "session_token"}.
    The AWS CLI's spelling (`aws configure export-credentials`: AccessKeyId, …) is read
    too."""
    data = _json_object(text, "an AWS credential")
    return AwsCredential(
        _string(data, ("access_key_id", "AccessKeyId"), required=True),
        _string(data, ("secret_access_key", "SecretAccessKey"), required=True),
        _string(data, ("session_token", "SessionToken"), required=False),
    )


def service_account(text: str) -> dict[str, str]:
    """A vertex key: a service-account JSON as Google Cloud gives it, whose private key
    signs the assertions its token_uri exchanges for access tokens."""
    data = _json_object(text, "a service-account JSON")
    if data.get("type") != "service_account":
        raise BadCredential('a key must be a service-account JSON ("type": "service_account")')
    info = {"type": "service_account"}
    for name in ("client_email", "private_key", "token_uri"):
        info[name] = _string(data, (name,), required=True)
    for name in ("project_id", "private_key_id", "client_id"):
        info[name] = _string(data, (name,), required=False)
    if not info["token_uri"].startswith(("https://", "http://")):
        raise BadCredential('a key\'s "token_uri" must be an http(s) URL')
    from google.auth import crypt  # google-auth: only where vertex keys are read

    try:
        crypt.RSASigner.from_service_account_info(info)
    except (ValueError, TypeError, IndexError):
        raise BadCredential('a key\'s "private_key" is not a PEM RSA private key') from None
    return info


def stored_key(provider_type: str, text: str) -> str:
    """The key as it is stored and sent to bridged: a cloud credential checked and
    written as compact JSON of the fields that are used; any other key as it is."""
    if provider_type == BEDROCK:
        aws = aws_credential(text)
        stored = {"access_key_id": aws.access_key_id, "secret_access_key": aws.secret_access_key}
        if aws.session_token:
            stored["session_token"] = aws.session_token
        return json.dumps(stored, separators=(",", ":"))
    if provider_type == VERTEX:
        info = service_account(text)
        return json.dumps(
            {k: info[k] for k in _SERVICE_ACCOUNT_FIELDS if info.get(k)}, separators=(",", ":")
        )
    return text


def cloud_key_hint(provider_type: str, stored: str) -> str:
    """Enough to tell a cloud's keys apart, never enough to use one: the access key id's
    ends; the service account's email (an identity, not a secret)."""
    if provider_type == BEDROCK:
        key_id = aws_credential(stored).access_key_id
        return f"{key_id[:4]}…{key_id[-4:]}" if len(key_id) >= 12 else "…"
    return service_account(stored)["client_email"]


def _json_object(text: str, what: str) -> dict[str, Any]:
    if len(text) > CREDENTIAL_MAX:
        raise BadCredential(f"a key must be at most {CREDENTIAL_MAX} characters")
    try:
        data = json.loads(text)
    except ValueError:
        raise BadCredential(f"a key must be {what} as a JSON object") from None
    if not isinstance(data, dict):
        raise BadCredential(f"a key must be {what} as a JSON object")
    return data


def _string(data: dict[str, Any], names: tuple[str, ...], *, required: bool) -> str:
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or (required and not value):
            raise BadCredential(f'a key\'s "{name}" must be a non-empty string')
        if any(ord(c) < 32 and not (c == "\n" and name == "private_key") for c in value):
            raise BadCredential(f'a key\'s "{name}" must not contain control characters')
        return value
    if required:
        raise BadCredential(f'a key is missing "{names[0]}"')
    return ""
