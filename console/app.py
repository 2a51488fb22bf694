"""Wiring: the aiohttp application, its middlewares and the pages' routes, and serving
it until a signal."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from common.lifecycle import wait_for_signal
from console.access import ACCESS, AccessLogger
from console.api import AdminAPI
from console.config import ConsoleConfig
from console.pages import (
    audit,
    interceptions,
    limits,
    overview,
    prices,
    providers,
    signin,
    teams,
    tokens,
    usage,
    users,
)
from console.security import FAILED_SIGNINS, SESSIONS, FailedSignins, errors, headers, signed_in
from console.session import Sessions
from console.views import API, TEMPLATES, templates

log = logging.getLogger("console")

STATIC = Path(__file__).parent / "static"
PAGES = (
    signin, overview, providers, tokens, usage, interceptions, users, teams, limits, prices,
    audit,
)  # fmt: skip


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def favicon(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


def make_app(config: ConsoleConfig) -> web.Application:
    app = web.Application(middlewares=[headers, errors, signed_in], client_max_size=2 * 1024**2)
    app[SESSIONS] = Sessions(config.session_hours * 3600, config.secure_cookies)
    app[FAILED_SIGNINS] = FailedSignins()
    app[TEMPLATES] = templates()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_static("/static/", STATIC)
    for page in PAGES:
        app.add_routes(page.routes)

    async def admin_api(app: web.Application) -> AsyncIterator[None]:
        # Made in the running loop, which its channel belongs to.
        app[API] = AdminAPI(config.controlplane, config.tls, config.call_timeout)
        yield
        await app[API].close()

    app.cleanup_ctx.append(admin_api)
    return app


async def serve(config: ConsoleConfig) -> None:
    runner = web.AppRunner(make_app(config), access_log_class=AccessLogger, access_log=ACCESS)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    log.info(
        "console serving on http://%s:%d/ (admin API at %s)",
        config.host,
        config.port,
        config.controlplane,
    )
    await wait_for_signal()
    log.info("shutting down")
    await runner.cleanup()
