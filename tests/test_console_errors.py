"""The console when the controlplane is away or its credential changes: every page and
every form answers with a clear banner (503), never a 500, and the overview's live region
says it is paused and resumes by itself."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from playwright.sync_api import Page, expect

from console.app import make_app
from console.config import parse
from tests.console import Console, csrf_of, sign_in, signed_in_client
from tests.harness import Controlplane, Secrets


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Controlplane, Console]]:
    cp = Controlplane(f"sqlite:///{tmp_path / 'aibridge.db'}", tmp_path, Secrets()).start()
    console = Console(cp.address, tmp_path).start()
    try:
        yield cp, console
    finally:
        console.stop()
        cp.stop()


def routes() -> list[tuple[str, str]]:
    """Every page's (method, path), path parameters filled with a made-up value (or the
    first one a parameter's pattern allows)."""
    app = make_app(parse([]))
    found = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or route.method not in ("GET", "POST") or path.startswith("/static"):
            continue
        value_of = functools.partial(_value_of, pattern=info.get("pattern"))
        found.append((route.method, re.sub(r"\{([^}]+)\}", value_of, path)))
    return found


def _value_of(parameter: re.Match[str], pattern: re.Pattern[str] | None) -> str:
    """A value for a path parameter: made up, or the first of those its pattern lists
    (`{switch:enable|disable}`)."""
    name = parameter.group(1)
    group = re.search(rf"\(\?P<{name}>([^)]*)\)", pattern.pattern) if pattern else None
    allowed = group.group(1) if group else ""
    return allowed.split("|")[0] if re.fullmatch(r"\w+(\|\w+)+", allowed) else "made-up"


PUBLIC = {"/signin", "/healthz", "/favicon.ico"}


def test_every_route_says_the_controlplane_is_away(stack: tuple[Controlplane, Console]) -> None:
    cp, console = stack
    client = signed_in_client(console.url, cp.secrets.admin)
    token = csrf_of(client.get("/").text)
    cp.stop()
    checked = 0
    for method, path in routes():
        if path in PUBLIC or path == "/signout":
            continue
        if method == "GET":
            reply = client.get(path)
        else:
            reply = client.post(path, data={"csrf": token, "revision": "1", "name": "x"})
        assert reply.status_code == 503, f"{method} {path}: {reply.status_code}\n{reply.text}"
        assert "The controlplane is not answering" in reply.text, f"{method} {path}"
        checked += 1
    assert checked >= 2
    # Signing in asks the controlplane too.
    fresh = httpx.Client(base_url=console.url)
    form = fresh.get("/signin")
    reply = fresh.post("/signin", data={"token": cp.secrets.admin, "csrf": csrf_of(form.text)})
    assert reply.status_code == 503 and "not answering" in reply.text


def test_a_credential_no_longer_accepted_signs_the_session_out(
    stack: tuple[Controlplane, Console], tmp_path: Path
) -> None:
    cp, console = stack
    client = signed_in_client(console.url, cp.secrets.admin)
    cp.stop()
    cp.secrets = Secrets()  # the controlplane comes back with other credentials
    cp.start()
    reply = client.get("/")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/signin?expired=1"
    assert "no longer accepted" in client.get(reply.headers["location"]).text
    assert client.get("/").status_code == 303  # the session is gone


def test_the_overview_pauses_and_resumes_its_live_updates(
    stack: tuple[Controlplane, Console], page: Page
) -> None:
    cp, console = stack
    sign_in(page, console.url, cp.secrets.admin)
    paused = page.locator(".live-paused")
    expect(paused).to_be_hidden()
    cp.stop()
    expect(paused).to_be_visible()
    cp.start()
    cp.admin.create_provider("after-outage")
    expect(page.locator("#revision")).to_have_text(str(cp.admin.revision()))
    expect(paused).to_be_hidden()


def test_the_overview_goes_to_sign_in_when_the_credential_is_no_longer_accepted(
    stack: tuple[Controlplane, Console], page: Page
) -> None:
    """Its live region is not filled with the sign-in page: the whole page goes there."""
    cp, console = stack
    sign_in(page, console.url, cp.secrets.admin)
    expect(page.locator("#revision")).to_be_visible()
    live: list[int] = []
    page.on("response", lambda r: live.append(r.status) if "/live/" in r.url else None)
    cp.stop()
    cp.secrets = Secrets()  # the controlplane comes back with other credentials
    cp.start()
    expect(page).to_have_url(re.compile(r"/signin\?next=%2F$"))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    # The live fragment answered 401, never a redirect the script's fetch would follow
    # (to put the sign-in page inside the overview).
    assert 401 in live and 303 not in live, live


def test_a_page_the_api_does_not_know_is_a_404(stack: tuple[Controlplane, Console]) -> None:
    cp, console = stack
    client = signed_in_client(console.url, cp.secrets.admin)
    assert client.get("/no-such-page").status_code == 404


def test_make_app_builds_without_a_controlplane() -> None:
    assert isinstance(make_app(parse([])), web.Application)
