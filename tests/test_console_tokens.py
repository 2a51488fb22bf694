"""The console's Tokens page: a new token shown once with a copy button, refusals beside
their fields, revoking (and a stale revoke refused), and viewers."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from aibridge.v1 import admin_pb2
from tests.console import ConsoleStack, csrf_of, post_form, revision_in, sign_in, signed_in_client
from tests.harness import unique


def listed(stack: ConsoleStack, name: str) -> list[admin_pb2.Token]:
    reply = stack.controlplane.admin.ListTokens(admin_pb2.ListTokensRequest(include_revoked=True))
    return [t for t in reply.tokens if t.name == name]


def create_token(stack: ConsoleStack, name: str) -> admin_pb2.CreateTokenResponse:
    return stack.controlplane.admin.CreateToken(admin_pb2.CreateTokenRequest(name=name))


def test_a_new_token_is_shown_once(console_stack: ConsoleStack, page: Page) -> None:
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + "/tokens")
    name = unique("t")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Expires in").select_option(label="30 days")
    page.get_by_role("button", name="Create token").click()

    expect(page.locator(".flash")).to_contain_text(f"Created token {name} at revision")
    shown = page.locator("#new-token")
    expect(shown).to_have_text(re.compile(r"^abt_\S+$"))
    token = shown.inner_text()
    expect(page.locator(".secret")).to_contain_text("will not be shown again")
    copy = page.locator('button[type="button"][data-copy="new-token"]')
    expect(copy).to_have_text("Copy")
    copy.click()
    expect(copy).not_to_have_text("Copy")  # the script copied it, or selected it to copy

    # The token is the one the API issued: its hint is the token's first characters.
    (info,) = listed(console_stack, name)
    assert not info.HasField("revoked_at") and info.HasField("expires_at")
    assert token.startswith(info.hint.removesuffix("…"))
    expect(page.locator(f'tr[data-token="{info.id}"]')).to_contain_text(info.hint)

    page.reload()
    expect(page.locator(f'tr[data-token="{info.id}"]')).to_be_visible()
    expect(page.locator("#new-token")).to_have_count(0)
    assert token not in page.content()


def test_a_token_is_revoked(console_stack: ConsoleStack, page: Page) -> None:
    name = unique("t")
    created = create_token(console_stack, name)
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + "/tokens")
    row = page.locator(f'tr[data-token="{created.info.id}"]')
    expect(row).to_have_attribute("data-state", "live")
    row.get_by_role("button", name="Revoke").click()

    expect(page.locator(".flash")).to_contain_text(f"Revoked token {name} at revision")
    expect(row).to_have_attribute("data-state", "revoked")
    expect(row.get_by_role("button")).to_have_count(0)
    (info,) = listed(console_stack, name)
    assert info.HasField("revoked_at")


def test_refusals_are_shown_beside_their_fields(console_stack: ConsoleStack) -> None:
    name = unique("t")
    create_token(console_stack, name)
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)

    taken = post_form(client, "/tokens", "/tokens", {"name": name, "user": "", "expires_in": "0"})
    assert taken.status_code == 409
    assert re.search(r'id="f-name"[^>]*aria-invalid="true"', taken.text)
    assert f"a live token named &#39;{name}&#39; already exists" in taken.text

    other = unique("t")
    nobody = unique("nobody")
    fields = {"name": other, "user": nobody, "expires_in": "0"}
    unknown_user = post_form(client, "/tokens", "/tokens", fields)
    assert unknown_user.status_code == 404
    assert re.search(r'id="f-user"[^>]*aria-invalid="true"', unknown_user.text)
    assert f'value="{other}"' in unknown_user.text  # what was typed is kept
    assert not listed(console_stack, other)


def test_a_stale_revoke_is_refused(console_stack: ConsoleStack) -> None:
    name = unique("t")
    created = create_token(console_stack, name)
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    page = client.get("/tokens").text
    create_token(console_stack, unique("t"))  # someone else changes the configuration
    fields = {"csrf": csrf_of(page), "revision": str(revision_in(page))}
    reply = client.post(f"/tokens/{created.info.id}/revoke", data=fields)
    assert reply.status_code == 409
    assert "Someone else changed the configuration" in reply.text
    assert revision_in(reply.text) == console_stack.controlplane.admin.revision()
    (info,) = listed(console_stack, name)
    assert not info.HasField("revoked_at")


def test_a_viewer_sees_tokens_but_nothing_to_change_them(console_stack: ConsoleStack) -> None:
    name = unique("t")
    create_token(console_stack, name)
    client = signed_in_client(console_stack.url, console_stack.secrets.viewer)
    reply = client.get("/tokens")
    assert reply.status_code == 200
    assert name in reply.text
    assert reply.text.count("<form") == 1  # signing out
    assert re.findall(r"<button[^>]*>([^<]*)", reply.text) == ["Sign out"]


def test_a_token_can_belong_to_a_user(console_stack: ConsoleStack) -> None:
    user, name = unique("user"), unique("t")
    console_stack.controlplane.admin.CreateUser(admin_pb2.CreateUserRequest(name=user))
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    fields = {"name": name, "user": user, "expires_in": "0"}
    reply = post_form(client, "/tokens", "/tokens", fields)
    assert reply.status_code == 303 and reply.headers["location"] == "/tokens"
    (info,) = listed(console_stack, name)
    assert info.user == user
    row = re.search(rf'<tr data-token="{info.id}".*?</tr>', client.get("/tokens").text, re.S)
    assert row and f"<td>{user}</td>" in row.group(0)
