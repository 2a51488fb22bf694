"""The console's access log: one line per request, with its path but never its query,
which can hold what a person pasted into a filter (a gateway token's secret, say)."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

ACCESS = logging.getLogger("console.access")


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # raw_path: as it came, percent-encoded, so that no path can forge a line.
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.6fs',
            request.remote or "-",
            request.method,
            request.rel_url.raw_path,
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
        )
