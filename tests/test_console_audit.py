"""The audit page: who changed what and when, newest first, with the details' secrets
masked, the console's own changes named as the console's, and a limit in the URL."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from aibridge.v1 import admin_pb2
from tests.console import ConsoleStack, sign_in

KEY = "sk-audit-secret-0123456789abcdef"


def rows(page: Page) -> list[dict[str, str]]:
    """The table's rows, newest first: each column's text by its header."""
    found: list[dict[str, str]] = page.locator("#audit").evaluate(
        """table => {
            const names = [...table.tHead.rows[0].cells].map(c => c.textContent.trim());
            return [...table.tBodies[0].rows].map(r => Object.fromEntries(
                [...r.cells].map((c, i) => [names[i], c.textContent.trim()])));
        }"""
    )
    return found


def test_a_change_through_the_api_appears_with_its_actor_and_action(
    console_stack: ConsoleStack, page: Page
) -> None:
    created = console_stack.controlplane.admin.create_provider("audited-api", keys=[KEY])
    sign_in(page, console_stack.url, console_stack.secrets.viewer)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    expect(page.get_by_role("heading", name="Audit", level=1)).to_be_visible()
    entry = next(r for r in rows(page) if r["Target"].startswith("audited-api"))
    assert entry["Action"] == "provider.create"
    assert entry["Actor"].startswith("tester (")  # what the test's admin client says it is
    assert entry["Target"] == f"audited-api ({created.provider.id})"
    assert entry["Revision"] == str(created.revision)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", entry["Time"])
    # The details unfold; the key is only a hint in them, never whole on the page.
    row = page.locator("#audit tbody tr", has_text="audited-api")
    pretty = row.locator("details pre")
    expect(pretty).to_be_hidden()
    row.locator("summary").click()
    expect(pretty).to_contain_text('"base_url": "https://api.example.com/v1"')
    assert KEY not in page.content()


def test_the_consoles_changes_are_the_consoles(console_stack: ConsoleStack, page: Page) -> None:
    """A change made in a console form is recorded as the console's, with the role and the
    browser's address."""
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + "/providers")
    page.get_by_label("Name", exact=True).fill("audited")
    page.get_by_label("Base URL").fill("https://api.example.com/v1")
    page.get_by_role("button", name="Create provider").click()
    expect(page.locator(".flash")).to_contain_text("Created provider audited")
    page.goto(console_stack.url + "/audit")
    entry = next(r for r in rows(page) if r["Target"].startswith("audited"))
    assert entry["Action"] == "provider.create"
    assert entry["Revision"] == str(console_stack.controlplane.admin.revision())
    assert re.fullmatch(r"console admin \(127\.0\.0\.1\) \(.+\)", entry["Actor"]), entry


def test_the_limit_is_in_the_url(console_stack: ConsoleStack, page: Page) -> None:
    admin = console_stack.controlplane.admin
    for i in range(55):  # more than the first page's 50
        admin.SetPrice(admin_pb2.SetPriceRequest(model=f"audit-limit-{i}", input=1, output=2))
    total = len(admin.ListAudit(admin_pb2.ListAuditRequest(limit=1000)).entries)
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + "/audit")
    expect(page.get_by_label("Limit")).to_have_value("50")
    expect(page.locator("#audit tbody tr")).to_have_count(50)
    assert rows(page)[0]["Target"] == "audit-limit-54"  # newest first
    page.get_by_label("Limit").select_option("200")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"/audit\?limit=200$"))
    expect(page.locator("#audit tbody tr")).to_have_count(min(total, 200))
    assert total > 50
