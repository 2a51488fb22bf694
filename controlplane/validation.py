"""Input rules of the admin API. Each failure names the field it is about."""

from __future__ import annotations

import re
import unicodedata

from common import clouds
from common.urls import BadBaseURL, parse_base_url
from common.wire import PROVIDER_TYPES
from controlplane.errors import InvalidArgument

NAME_PATTERN = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")  # whole string: fullmatch
NAME_MAX = 63
DISPLAY_NAME_MAX = 200
EMAIL_MAX = 254  # RFC 5321's limit on a forward path
KEY_MAX = 4096
REF_MAX = 200  # far beyond any id or name: a longer reference cannot name anything
REGION_MAX = 64
HINT_MAX = 254  # provider_keys.hint: a vertex key's is its service account's email


def name(value: str, field: str = "name") -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > NAME_MAX:
        raise InvalidArgument(field, f"is longer than {NAME_MAX} characters")
    if not NAME_PATTERN.fullmatch(value):
        raise InvalidArgument(
            field,
            "must be lowercase letters and digits in groups joined by single hyphens "
            "(like 'openai-eu')",
        )
    return value


def provider_type(value: str) -> str:
    if value not in PROVIDER_TYPES:
        raise InvalidArgument("type", f"must be one of {', '.join(PROVIDER_TYPES)}")
    return value


def base_url(value: str) -> str:
    """The rule the data planes apply too (common.urls); stored as given, less a
    trailing slash."""
    try:
        parse_base_url(value)
    except BadBaseURL as bad:
        raise InvalidArgument("base_url", str(bad)) from None
    return value.rstrip("/")


def base_url_for_type(provider_type: str, url: str) -> str:
    """The conventions of each family's base_url (DESIGN.md, bridged): an Anthropic
    base_url is the host root, since clients and the gateway add /v1/messages; one that
    ends in /v1 would send /v1/v1/messages, which Claude Code reports as a model problem."""
    if provider_type in clouds.CLOUD_TYPES and parse_base_url(url).path:
        raise InvalidArgument(
            "base_url",
            f"a {provider_type} provider's base_url is the host root (like "
            "https://bedrock-runtime.us-east-1.amazonaws.com): the gateway adds the paths",
        )
    if provider_type == "anthropic" and parse_base_url(url).path.endswith("/v1"):
        raise InvalidArgument(
            "base_url",
            "an anthropic provider's base_url is the host root without /v1 (like "
            "https://api.anthropic.com): the client's paths already start with /v1",
        )
    return url


def display_name(value: str) -> str:
    if len(value) > DISPLAY_NAME_MAX:
        raise InvalidArgument("display_name", f"is longer than {DISPLAY_NAME_MAX} characters")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise InvalidArgument("display_name", "must not contain control characters")
    return value


def email(value: str, field: str = "email") -> str:
    """Empty (no email), or something that looks like one: the gateway sends no mail, so
    it only keeps out what is plainly not an address."""
    if not value:
        return value
    if len(value) > EMAIL_MAX:
        raise InvalidArgument(field, f"is longer than {EMAIL_MAX} characters")
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in value):
        raise InvalidArgument(field, "must not contain spaces or control characters")
    local, at, domain = value.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise InvalidArgument(field, "must be an email address like 'alice@example.com'")
    return value


def reference(value: str, what: str, field: str = "ref") -> str:
    """An id or name to look up. One that nothing could have (too long, or with control
    characters, which the database may not even accept) is refused before the query."""
    if not value:
        raise InvalidArgument(field, f"{what} is required")
    if not possible_id(value):
        raise InvalidArgument(field, f"is not {what}")
    return value


def possible_id(value: str) -> bool:
    return len(value) <= REF_MAX and not any(unicodedata.category(c) == "Cc" for c in value)


def provider_key(value: str, field: str = "keys") -> str:
    # The message never repeats the key: it is a secret even when it is wrong.
    if not value:
        raise InvalidArgument(field, "a key must not be empty")
    if value != value.strip():
        raise InvalidArgument(field, "a key must not have surrounding whitespace")
    if len(value) > KEY_MAX:
        raise InvalidArgument(field, f"a key must be at most {KEY_MAX} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in value):
        raise InvalidArgument(field, "a key must not contain whitespace or control characters")
    return value


def key_hint(secret: str) -> str:
    """Enough to tell keys apart, never enough to use one."""
    return f"…{secret[-4:]}" if len(secret) >= 16 else "…"


# --- bedrock and vertex (common/clouds.py) ---------------------------------------------------


def key_for_type(provider_type: str, value: str, field: str = "keys") -> tuple[str, str]:
    """A key as it is stored, and its hint. A cloud's key is a credential JSON, checked
    and made compact by common.clouds (whitespace and all: the API-key rule is not for
    it); any other type's is an API key."""
    if provider_type not in clouds.CLOUD_TYPES:
        provider_key(value, field)
        return value, key_hint(value)
    try:
        stored = clouds.stored_key(provider_type, value)
        hint = clouds.cloud_key_hint(provider_type, stored)
    except clouds.BadCredential as bad:
        raise InvalidArgument(field, str(bad)) from None
    if len(hint) > HINT_MAX:
        raise InvalidArgument(
            field, f'a key\'s "client_email" is longer than {HINT_MAX} characters'
        )
    return stored, hint


def region(value: str) -> str:
    """Empty (read from the base_url's host), or a cloud region's name."""
    if len(value) > REGION_MAX:
        raise InvalidArgument("region", f"is longer than {REGION_MAX} characters")
    if value and not clouds.REGION.fullmatch(value):
        raise InvalidArgument(
            "region", "must be a region's name, like us-east-1 or europe-west1 (or global)"
        )
    return value


def project(value: str) -> str:
    if not clouds.PROJECT.fullmatch(value):
        raise InvalidArgument(
            "project",
            "must be a Google Cloud project id: 2 to 100 lowercase letters, digits, "
            "hyphens, dots and colons",
        )
    return value


def model_map(entries: list[tuple[str, str]], *, removals: bool = False) -> list[tuple[str, str]]:
    """Client model name → the cloud's model id, each name once. With `removals`, an
    empty id means "remove this name's mapping" (an update)."""
    seen: set[str] = set()
    for model, upstream in entries:
        if not clouds.usable_model("", model):
            raise InvalidArgument("model_map", _MODEL_RULE.format(what="a model name"))
        if not (removals and not upstream) and not clouds.usable_model("", upstream):
            raise InvalidArgument("model_map", _MODEL_RULE.format(what=f"{model}'s model id"))
        if model in seen:
            raise InvalidArgument("model_map", f"maps {model} more than once")
        seen.add(model)
    return entries


def model_map_for_type(provider_type: str, mapping: dict[str, str]) -> dict[str, str]:
    """A provider's whole map: within bounds, each id one its cloud takes in a URL."""
    if len(mapping) > clouds.MODEL_MAP_MAX:
        raise InvalidArgument("model_map", f"has more than {clouds.MODEL_MAP_MAX} mappings")
    for model, upstream in mapping.items():
        if not clouds.usable_model(provider_type, upstream):
            raise InvalidArgument(
                "model_map", f"{model}'s model id is not one a {provider_type} provider can call"
            )
    return mapping


_MODEL_RULE = (
    "{what} must be 1 to 200 letters, digits and . _ : / @ - (like claude-sonnet-4-5 or "
    "an inference profile's ARN), with no empty, . or .. part between slashes"
)
