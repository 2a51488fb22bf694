"""The console's Tokens page: a new token shown once with a copy button, refusals beside
their fields, revoking (and a stale revoke refused), a form sent twice changing once, and
viewers."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from aibridge.v1 import admin_pb2
from tests.console import (
    ConsoleStack,
    csrf_of,
    form_fields,
    post_form,
    request_ids_in,
    revision_in,
    sign_in,
    signed_in_client,
)
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


def audited(stack: ConsoleStack, action: str, name: str) -> int:
    entries = stack.controlplane.admin.ListAudit(admin_pb2.ListAuditRequest(limit=1000)).entries
    return len([e for e in entries if e.action == action and e.target.startswith(f"{name} (")])


def test_a_create_form_sent_twice_makes_one_token(console_stack: ConsoleStack) -> None:
    """A double click, or a reload after an answer that never came: the second submission
    of one form is its first answer again, and says its secret went to the first."""
    name = unique("t")
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    fields = {**form_fields(client.get("/tokens").text), "name": name, "expires_in": "0"}

    first = client.post("/tokens", data=fields)
    assert first.status_code == 303
    shown = re.search(r'id="new-token"[^>]*>(abt_[^<]+)<', client.get("/tokens").text)
    assert shown, "the first answer shows the new token"

    # Even after another change, which would make the form stale.
    create_token(console_stack, unique("t"))
    second = client.post("/tokens", data=fields)
    assert second.status_code == 303
    page = client.get("/tokens").text
    assert f"This form was sent already: token {name} was created then" in page
    assert 'id="new-token"' not in page
    assert shown.group(1) not in page
    assert len(listed(console_stack, name)) == 1
    assert audited(console_stack, "token.create", name) == 1


def test_a_revoke_sent_twice_is_done_once(console_stack: ConsoleStack) -> None:
    name = unique("t")
    created = create_token(console_stack, name)
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    page = client.get("/tokens").text
    fields = {**form_fields(page)}
    replies = [client.post(f"/tokens/{created.info.id}/revoke", data=fields) for _ in range(2)]
    assert [r.status_code for r in replies] == [303, 303]  # not "someone else changed it"
    assert f"Revoked token {name} at revision" in client.get("/tokens").text
    assert audited(console_stack, "token.revoke", name) == 1


def test_every_form_has_a_request_id_of_its_own(console_stack: ConsoleStack) -> None:
    for _ in range(2):
        create_token(console_stack, unique("t"))
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    first = request_ids_in(client.get("/tokens").text)
    again = request_ids_in(client.get("/tokens").text)
    assert len(first) >= 3  # the create form and a revoke form per live token
    assert len(set(first + again)) == len(first) + len(again)  # a reload makes new ones
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", r) for r in first)


@pytest.mark.parametrize("request_id", ["a b", "x" * 65, "é", "id/2"])
def test_a_form_with_a_request_id_no_page_sends_changes_nothing(
    console_stack: ConsoleStack, request_id: str
) -> None:
    name = unique("t")
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    fields = {**form_fields(client.get("/tokens").text), "name": name, "expires_in": "0"}
    reply = client.post("/tokens", data={**fields, "request_id": request_id})
    assert reply.status_code == 400
    assert "request id is not one this console makes" in reply.text
    assert not listed(console_stack, name)


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
