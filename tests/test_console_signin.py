"""Signing in to the console, and what every page sends: a session cookie only scripts
cannot read, security headers, CSRF checks, viewers that cannot change anything."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.console import Console, ConsoleStack, csrf_of, post_form, sign_in, signed_in_client


def test_signing_in_with_the_admin_token_shows_the_overview(
    console_stack: ConsoleStack, page: Page
) -> None:
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    names = ["Overview", "Providers", "Tokens", "Usage", "Interceptions", "Users", "Teams",
             "Limits", "Prices", "Audit"]  # fmt: skip
    expect(nav.get_by_role("link")).to_have_text(names)
    cookie = next(c for c in page.context.cookies() if c["name"] == "aibridge_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert console_stack.secrets.admin not in cookie["value"]


def test_a_wrong_token_is_refused_at_sign_in(console_stack: ConsoleStack, page: Page) -> None:
    page.goto(console_stack.url + "/signin")
    page.get_by_label("Token").fill("aba_not_the_token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not an admin or viewer credential")
    assert not [c for c in page.context.cookies() if c["name"] == "aibridge_console"]


def test_pages_need_a_session(console_stack: ConsoleStack) -> None:
    reply = httpx.get(console_stack.url + "/providers", follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/signin?next=")


def test_every_page_sends_the_security_headers(console_stack: ConsoleStack) -> None:
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    for path in ("/", "/signin"):
        headers = client.get(path).headers
        assert headers["x-frame-options"] == "DENY"
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp


def test_sign_out_ends_the_session_on_the_server(console_stack: ConsoleStack, page: Page) -> None:
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    cookie = next(c for c in page.context.cookies() if c["name"] == "aibridge_console")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    # The cookie copied before signing out opens nothing now.
    copied = httpx.get(
        console_stack.url + "/", cookies={"aibridge_console": cookie["value"]},
        follow_redirects=False,
    )  # fmt: skip
    assert copied.status_code == 303 and "/signin" in copied.headers["location"]


def test_a_post_without_the_csrf_token_is_refused(console_stack: ConsoleStack) -> None:
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    reply = client.post("/signout", data={"csrf": "forged"})
    assert reply.status_code == 403
    assert "CSRF" in reply.text
    assert client.get("/").status_code == 200  # still signed in: nothing happened


def test_the_viewer_signs_in_read_only(console_stack: ConsoleStack, page: Page) -> None:
    sign_in(page, console_stack.url, console_stack.secrets.viewer)
    expect(page.locator(".role")).to_have_text("viewer")


def test_a_forged_post_from_a_viewer_is_refused(console_stack: ConsoleStack) -> None:
    client = signed_in_client(console_stack.url, console_stack.secrets.viewer)
    reply = post_form(client, "/", "/providers", {"name": "sneaky", "type": "openai"})
    assert reply.status_code == 403
    assert "viewer" in reply.text
    assert csrf_of(client.get("/").text)  # the session is intact


def test_secure_cookies_behind_an_https_proxy(console_stack: ConsoleStack, tmp_path: Path) -> None:
    console = Console(
        console_stack.controlplane.address, tmp_path, extra_args=("--secure-cookies",)
    ).start()
    try:
        form = httpx.get(console.url + "/signin")
        nonce = form.headers["set-cookie"]
        assert "Secure" in nonce
        # A browser sends a Secure cookie over HTTPS only: here the test hands it back itself.
        reply = httpx.post(
            console.url + "/signin",
            data={"token": console_stack.secrets.admin, "csrf": csrf_of(form.text)},
            headers={"cookie": nonce.split(";")[0]},
        )
        assert reply.status_code == 303
        (session_cookie,) = [
            v
            for k, v in reply.headers.multi_items()
            if k == "set-cookie" and v.startswith("aibridge_console=")
        ]
        assert "Secure" in session_cookie and "HttpOnly" in session_cookie
    finally:
        console.stop()
