"""Signing in to the console, and what every page sends: a session cookie only scripts
cannot read, security headers, CSRF checks, viewers that cannot change anything."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.console import Console, ConsoleStack, csrf_of, post_form, sign_in, signed_in_client
from tests.harness import wait_until


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


def sign_in_over_http(client: httpx.Client, token: str, next_: str = "/") -> httpx.Response:
    """The sign-in form, loaded (its CSRF token and nonce cookie) and posted."""
    form = client.get("/signin")
    return client.post("/signin", data={"token": token, "csrf": csrf_of(form.text), "next": next_})


EVIL_NEXTS = [
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "/\t/evil.example/",  # what "/%09/evil.example" is once decoded
    "/\n/evil.example/",
    "https://evil.example/",
    "javascript:alert(1)",
    "evil.example",
]


@pytest.mark.parametrize("evil", EVIL_NEXTS)
def test_signing_in_never_leads_to_another_site(console_stack: ConsoleStack, evil: str) -> None:
    client = httpx.Client(base_url=console_stack.url)
    form = client.get("/signin", params={"next": evil})
    assert 'name="next" value="/"' in form.text
    reply = sign_in_over_http(client, console_stack.secrets.admin, evil)
    assert reply.status_code == 303 and reply.headers["location"] == "/"


def test_signing_in_leads_back_to_the_page_asked_for(console_stack: ConsoleStack) -> None:
    client = httpx.Client(base_url=console_stack.url)
    reply = sign_in_over_http(client, console_stack.secrets.admin, "/usage?group_by=model")
    assert reply.status_code == 303 and reply.headers["location"] == "/usage?group_by=model"


def test_text_that_is_not_ascii_in_a_cookie_or_csrf_token_is_refused_not_a_500(
    console_stack: ConsoleStack,
) -> None:
    url = console_stack.url
    forged_session = httpx.get(url + "/", headers={b"cookie": "aibridge_console=x.é".encode()})
    assert forged_session.status_code == 303
    assert forged_session.headers["location"].startswith("/signin")

    client = signed_in_client(url, console_stack.secrets.admin)
    assert client.post("/signout", data={"csrf": "é"}).status_code == 403
    assert client.get("/").status_code == 200  # still signed in: nothing happened

    signin = httpx.Client(base_url=url)
    signin.get("/signin")  # the nonce cookie
    reply = signin.post("/signin", data={"token": console_stack.secrets.admin, "csrf": "é"})
    assert reply.status_code == 403
    nonce = httpx.post(
        url + "/signin",
        data={"token": console_stack.secrets.admin, "csrf": "x"},
        headers={b"cookie": "aibridge_console_signin=é".encode()},
    )
    assert nonce.status_code == 403
    assert "Traceback" not in console_stack.console.log()


def test_a_data_plane_credential_is_refused_like_a_wrong_one(console_stack: ConsoleStack) -> None:
    """Sign-in tells nobody which of their guesses is some credential."""
    answers = []
    for token in (console_stack.secrets.bridged, "aba_not_the_token"):
        reply = sign_in_over_http(httpx.Client(base_url=console_stack.url), token)
        answers.append(reply.status_code)
        assert "That token is not an admin or viewer credential." in reply.text
        assert "may not call" not in reply.text
    assert answers == [401, 401]
    # Each failed sign-in is logged with the address it came from, never the token.
    log = wait_until(
        lambda: (
            (text := console_stack.console.log()).count("failed sign-in from 127.0.0.1") >= 2
            and text
        ),
        what="the failed sign-ins in the log",
    )
    assert console_stack.secrets.bridged not in log


def test_failed_sign_ins_are_limited_per_address(
    console_stack: ConsoleStack, tmp_path: Path
) -> None:
    # A console of its own: the module's one would refuse the other tests' sign-ins.
    console = Console(console_stack.controlplane.address, tmp_path).start()
    try:
        client = httpx.Client(base_url=console.url)
        for _ in range(10):
            assert sign_in_over_http(client, "aba_a_guess").status_code == 401
        for token in ("aba_another_guess", console_stack.secrets.admin):
            reply = sign_in_over_http(client, token)
            assert reply.status_code == 429
            assert "Too many failed sign-ins from your address" in reply.text
        assert "aibridge_console=" not in reply.headers.get("set-cookie", "")
    finally:
        console.stop()


def test_signing_in_again_ends_the_browser_s_previous_session(
    console_stack: ConsoleStack,
) -> None:
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    first = client.cookies["aibridge_console"]
    assert sign_in_over_http(client, console_stack.secrets.viewer).status_code == 303
    assert client.cookies["aibridge_console"] != first
    copied = httpx.get(
        console_stack.url + "/", cookies={"aibridge_console": first}, follow_redirects=False
    )
    assert copied.status_code == 303 and copied.headers["location"].startswith("/signin")
    assert re.search(r'class="role[^"]*">viewer<', client.get("/").text)
