"""The console under test: its process, a stack for it to show (controlplane, bridged,
proxyd), a signed-in HTTP client, and Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from aibridge.v1 import admin_pb2
from tests.harness import (
    PYTHON,
    Bridged,
    Controlplane,
    ManagedProcess,
    Proxyd,
    Secrets,
    clean_env,
    free_port,
)

# Debian's chromium package (`make test` installs it): Playwright's own download cannot
# reach its host here.
CHROMIUM = "/usr/bin/chromium"
# Laptop and phone widths, for the pages' screenshots and layout checks.
LAPTOP = ViewportSize(width=1366, height=900)
PHONE = ViewportSize(width=390, height=844)


class Console(ManagedProcess):
    """One `aibridge-console` process, a client of the controlplane at `controlplane`."""

    def __init__(
        self,
        controlplane: str,
        workdir: Path,
        *,
        name: str = "console",
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, workdir)
        self.controlplane = controlplane
        self.port = port or free_port()
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Console:
        self.spawn(
            [
                PYTHON, "-m", "console",
                "--listen", f"127.0.0.1:{self.port}",
                "--controlplane", self.controlplane,
                "--call-timeout", "5",
                *self.extra_args,
            ],
            clean_env(),
        )  # fmt: skip
        self.wait_http("/healthz")
        return self


@dataclass
class ConsoleStack:
    """What a console shows: a controlplane with a bridged and a proxyd subscribed."""

    controlplane: Controlplane
    bridged: Bridged
    proxyd: Proxyd
    console: Console

    @property
    def secrets(self) -> Secrets:
        return self.controlplane.secrets

    @property
    def url(self) -> str:
        return self.console.url


@contextlib.contextmanager
def console_stack(database_url: str, workdir: Path) -> Iterator[ConsoleStack]:
    secrets = Secrets()
    processes: list[ManagedProcess] = []
    try:
        cp = Controlplane(database_url, workdir, secrets).start()
        processes.append(cp)
        bridged = Bridged([cp.address], workdir, secrets).start()
        processes.append(bridged)
        proxyd = Proxyd([cp.address], bridged.url, workdir, secrets).start()
        processes.append(proxyd)
        console = Console(cp.address, workdir).start()
        processes.append(console)
        yield ConsoleStack(cp, bridged, proxyd, console)
    finally:
        for process in reversed(processes):
            process.stop()


# --- over HTTP, as a browser would, for the server's answers ------------------------------

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    found = _CSRF.search(html)
    assert found, f"no CSRF token in the page:\n{html[:2000]}"
    return found.group(1)


_REVISION = re.compile(r'name="revision" value="(\d+)"')


def revision_in(html: str) -> int:
    """The revision a page's forms were rendered at (what their mutations expect)."""
    found = _REVISION.search(html)
    assert found, f"no revision in the page:\n{html[:2000]}"
    return int(found.group(1))


def signed_in_client(console_url: str, token: str) -> httpx.Client:
    """An HTTP client holding a session of `token`'s role."""
    client = httpx.Client(base_url=console_url, timeout=15, follow_redirects=False)
    form = client.get("/signin")
    reply = client.post("/signin", data={"token": token, "csrf": csrf_of(form.text), "next": "/"})
    assert reply.status_code == 303, reply.text
    return client


_REQUEST_ID = re.compile(r'name="request_id" value="([^"]+)"')


def request_ids_in(html: str) -> list[str]:
    """The request id of each form in a page that changes something, in order."""
    return _REQUEST_ID.findall(html)


def form_fields(html: str) -> dict[str, str]:
    """What a page's forms send besides their own fields: the CSRF token, and for a page
    with forms that change something the revision they were rendered at and the first
    such form's request id (any of them will do: each is used once)."""
    loaded = {"csrf": csrf_of(html)}
    if _REVISION.search(html):
        loaded["revision"] = str(revision_in(html))
        loaded["request_id"] = request_ids_in(html)[0]
    return loaded


def post_form(
    client: httpx.Client, page: str, action: str, fields: dict[str, Any]
) -> httpx.Response:
    """Loads `page` for what its forms send (form_fields), then posts `fields` to
    `action`, as its form would."""
    return client.post(action, data={**form_fields(client.get(page).text), **fields})


# --- in Chromium ------------------------------------------------------------------------


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, console_url: str, token: str) -> None:
    page.goto(console_url + "/signin")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def flash(page: Page, text: str) -> None:
    """A flash message holding `text` is on the page (waits for it)."""
    expect(page.locator(".flash").filter(has_text=text)).to_be_visible()


def get_provider(stack: ConsoleStack, name: str) -> admin_pb2.Provider:
    return stack.controlplane.admin.GetProvider(admin_pb2.GetProviderRequest(ref=name))
