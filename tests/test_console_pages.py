"""Every console page, as the admin and as a viewer, over a stack with a day of calls:
each answers, labels its fields, heads its tables, carries no inline script or style
(the CSP would block it), fits a phone's width, and shows a viewer no form that changes
anything."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from playwright.sync_api import Browser

from console.app import make_app
from console.config import parse
from mockupstream import MockUpstream
from tests.console import PHONE, ConsoleStack, sign_in, signed_in_client
from tests.console_screenshots import pages, seed


@pytest.fixture(scope="module")
def seeded(console_stack: ConsoleStack) -> Iterator[dict[str, str]]:
    upstream = MockUpstream().start()
    try:
        yield seed(console_stack, upstream)
    finally:
        upstream.stop()


class Page(HTMLParser):
    """What the checks need of a page's HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: set[str] = set()
        self.fields: list[tuple[str, str]] = []  # (tag, id) of every visible form field
        self.tables = 0
        self.headed_tables = 0
        self.post_forms: list[str] = []  # actions
        self.inline: list[str] = []  # what the CSP would block

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label" and a.get("for"):
            self.labels.add(a["for"] or "")
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            self.fields.append((tag, a.get("id") or ""))
        if tag == "table":
            self.tables += 1
        if tag == "thead":
            self.headed_tables += 1
        if tag == "form" and (a.get("method") or "").lower() == "post":
            self.post_forms.append(a.get("action") or "")
        if tag == "script" and not a.get("src"):
            self.inline.append("<script> without src")
        self.inline += [f"{tag} {k}=" for k in a if k == "style" or k.startswith("on")]

    def handle_data(self, data: str) -> None:
        pass


def parsed(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def test_every_page_served_is_checked_here(seeded: dict[str, str]) -> None:
    listed = [path.split("?")[0] for _, path in pages(seeded)]
    unlisted = []
    for route in make_app(parse([])).router.routes():
        if route.method != "GET" or route.resource is None:
            continue
        pattern = route.resource.canonical  # "/providers/{name}"
        if pattern.startswith(("/static", "/live/")) or pattern in UNCHECKED:
            continue
        matcher = re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(pattern)) + "$")
        if not any(matcher.match(path) for path in listed):
            unlisted.append(pattern)
    assert not unlisted


# Served without a session, or not a page.
UNCHECKED = {"/signin", "/healthz", "/favicon.ico"}


@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_every_page_is_well_formed(
    console_stack: ConsoleStack, seeded: dict[str, str], role: str
) -> None:
    client = signed_in_client(console_stack.url, getattr(console_stack.secrets, role))
    for _, path in pages(seeded):
        reply = client.get(path, follow_redirects=True)  # a viewer's delete: back to the thing
        assert reply.status_code == 200, f"{path}: {reply.status_code}\n{reply.text[:2000]}"
        page = parsed(reply.text)
        unlabelled = [f for f in page.fields if not f[1] or f[1] not in page.labels]
        assert not unlabelled, f"{path}: fields without a visible label: {unlabelled}"
        assert page.tables == page.headed_tables, f"{path}: a table without a header row"
        assert not page.inline, f"{path}: {page.inline}"
        if role == "viewer":
            assert page.post_forms == ["/signout"], f"{path}: a viewer is offered {page.post_forms}"


def test_every_page_fits_a_phone(
    console_stack: ConsoleStack, seeded: dict[str, str], browser: Browser
) -> None:
    context = browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        # What the browser refused (a CSP violation) or failed at is an error in its console.
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(page, console_stack.url, console_stack.secrets.admin)
        for _, path in pages(seeded):
            page.goto(console_stack.url + path)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
            assert not errors, f"{path}: {errors}"
    finally:
        context.close()
