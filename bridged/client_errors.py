"""aiohttp logs a request it could not parse with a traceback that quotes the raw bytes,
and those may hold a credential (a token with a stray CR from a .env file, say). This
filter keeps one line without the bytes, at INFO: a malformed request or a client that
left is the client's problem, not the gateway's."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError


class ClientErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError | ConnectionError):
            kind = "malformed request" if isinstance(exc, HttpProcessingError) else "client left"
            peer = record.args[:1] if isinstance(record.args, tuple) else ()
            record.msg = f"{kind}{' from %s' if peer else ''} ({type(exc).__name__})"
            record.args = peer
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install() -> None:
    logging.getLogger("aiohttp.server").addFilter(ClientErrorFilter())
