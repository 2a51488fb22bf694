"""The access log of the data planes: one line per request, so that whoever watches a
gateway (`make run`'s terminal, a log pipeline) sees each call and why one failed.

A line holds the request id, the token's name (never the token), the provider, method,
route, status, the gateway's error code, the duration and the bytes each way. In text
it is `key=value` pairs; with `--log-format json` the same fields are keys of the entry.
`--access-log off` turns it off.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass

ACCESS = logging.getLogger("access")


@dataclass(slots=True)
class Call:
    """What a data plane learns of one request as it handles it."""

    method: str
    route: str  # the request's path (after /api/v2/aibridge/{provider} in bridged)
    started: float  # time.monotonic() when it arrived
    request_id: str = ""
    token: str = ""  # the token's name, once the token is known
    provider: str = ""
    bytes_in: int = 0
    status: int = 0
    error: str = ""  # the gateway's error code, when it refused or failed the call
    bytes_out: int = 0
    logged: bool = False  # its line is written (by the request path, not aiohttp)


def configure(enabled: bool) -> None:
    ACCESS.disabled = not enabled


def enabled() -> bool:
    return not ACCESS.disabled and ACCESS.isEnabledFor(logging.INFO)


def log_call(call: Call) -> None:
    seconds = time.monotonic() - call.started
    fields = {
        "id": call.request_id, "token": call.token, "provider": call.provider[:100],
        "method": call.method[:20], "route": call.route[:300], "status": call.status,
        "error": call.error, "ms": round(seconds * 1000, 1), "in": call.bytes_in,
        "out": call.bytes_out,
    }  # fmt: skip
    ACCESS.info(_Line(fields), extra={"access": fields})


class _Line:
    """The text of a line, made only if a text formatter asks (JSON takes the fields)."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, object]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(f"{k}={_text(v)}" for k, v in self.fields.items())


# Printable ASCII but for space, `"`, `=` and `\`: a token that needs no quotes.
_PLAIN = re.compile(r"[!#-<>-\[\]-~]+")


def _text(value: object) -> str:
    """One token of a line: "-" when empty, quoted (JSON escapes) when it has a space, a
    quote, an `=` or anything but printable ASCII, so that no client-chosen path can forge
    a line or hide in one."""
    text = str(value)
    if not text:
        return "-"
    return text if _PLAIN.fullmatch(text) else json.dumps(text)
