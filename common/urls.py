"""A provider's base_url: the one rule for which are usable, and how they are read.

The controlplane refuses what this refuses, and the data planes skip (and report) a row
that breaks it, should one reach them from an older database: a URL is never accepted
by one process and refused, or read differently, by another.

A base_url is an absolute http(s) URL with a host, and no credentials (a key is added
instead), query, fragment, port 0, whitespace or control characters. It is read as yarl
writes it: scheme and host lowercased, an internationalised host in punycode, the
scheme's default port dropped, dot segments resolved, a trailing slash dropped.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from yarl import URL

DEFAULT_PORTS = {"http": 80, "https": 443}


class BadBaseURL(ValueError):
    """Why a base_url is unusable, worded to follow the field's name ("base_url: must
    have a host"); it never repeats the URL, whose userinfo may be a secret."""


class BaseURL(NamedTuple):
    """A usable base_url. A named tuple: 10,000 of them are quick to make."""

    origin: str  # scheme://host[:port], the port only when not the scheme's default
    path: str  # as sent (percent-encoded), without a trailing slash; "" for the root
    host: str  # as sent in a CONNECT or Host: lowercase, punycode, IPv6 without brackets
    port: int  # the scheme's default when none is written

    @property
    def url(self) -> str:
        return self.origin + self.path


def parse_base_url(text: str) -> BaseURL:
    """The base_url `text` names; raises BadBaseURL if it is not usable."""
    return _plain_url(text) or _parsed_url(text)


# The usual base_url, checked without a URL parser (at 10,000 providers, parsing was
# most of a fresh route table): http(s), a lowercase ASCII host, a port written plainly
# (no leading zero), a path of plain segments. yarl accepts all of these and writes them
# back unchanged but for a default port, which it drops (tests/test_bridged_routes.py
# holds the two to the same answer); any other base_url is parsed by yarl.
_PLAIN_URL = re.compile(
    r"(https?)://([a-z0-9-]+(?:\.[a-z0-9-]+)*)(?::([1-9][0-9]{0,4}))?"
    r"((?:/[A-Za-z0-9_~!$&'()*+,;=:@-][A-Za-z0-9._~!$&'()*+,;=:@-]*)*)/?"
)


def _plain_url(text: str) -> BaseURL | None:
    """The base_url of a plain `text`, as yarl would read it; None if it is not plain."""
    match = _PLAIN_URL.fullmatch(text)
    if match is None:
        return None
    scheme, host, written_port, path = match.groups()
    default = DEFAULT_PORTS[scheme]
    port = default if written_port is None else int(written_port)
    if not 0 < port < 65536:
        return None
    origin = f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"
    return BaseURL(origin, path, host, port)


def _parsed_url(text: str) -> BaseURL:
    """The base_url of any `text`, parsed by yarl; raises BadBaseURL."""
    if not text:
        raise BadBaseURL("is required")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise BadBaseURL("must not contain whitespace or control characters")
    # Even an empty one ("…/v1?"): what follows the base_url is the client's path.
    if "?" in text or "#" in text:
        raise BadBaseURL("must not have a query or fragment")
    try:
        url = URL(text)
        port = url.port
    except (ValueError, TypeError) as exc:
        raise BadBaseURL(f"is malformed ({exc})") from None
    if url.scheme not in DEFAULT_PORTS:
        raise BadBaseURL("must be an absolute http:// or https:// URL")
    # raw_host: punycode, as clients send it, and no IDNA decoding (costly, not needed).
    if not url.raw_host:
        raise BadBaseURL("must have a host")
    # Read from the text: yarl forgets an empty userinfo ("https://@host"), urlsplit did not.
    if "@" in text.partition("//")[2].partition("/")[0]:
        raise BadBaseURL("must not carry credentials; add a key instead")
    if not port:
        raise BadBaseURL("has port 0")
    origin = str(url.origin())
    return BaseURL(origin, url.raw_path.rstrip("/"), url.raw_host, port)
