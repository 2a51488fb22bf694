"""The overview: the fleet at the current revision, and the last 24 hours' calls, in
numbers and an hourly chart that are the API's."""

from __future__ import annotations

from datetime import timedelta

from playwright.sync_api import Page, expect

from aibridge.v1 import admin_pb2
from tests.console import ConsoleStack, sign_in
from tests.harness import interception, report


def test_the_last_day_in_numbers_and_in_an_hourly_chart(
    console_stack: ConsoleStack, page: Page
) -> None:
    # A call an hour for 30 hours: the last 24 are the day's.
    calls = [
        interception(f"overview-{hours}", timedelta(hours=hours, minutes=7),
                     provider=("openai", "anthropic")[hours % 2],
                     status=500 if hours % 5 == 0 else 200, tokens=(100 + hours, 10, 0, 0))
        for hours in range(30)
    ]  # fmt: skip
    report(console_stack.controlplane, calls, console_stack.secrets.bridged)
    day = calls[:24]
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    expect(page.locator("#stat-requests")).to_have_text(f"{len(day):,}")
    expect(page.locator("#stat-errors")).to_have_text(f"{sum(c.status == 500 for c in day):,}")
    tokens = sum(c.input_tokens + c.output_tokens for c in day)
    expect(page.locator("#stat-tokens")).to_have_text(f"{tokens:,}")
    points = page.locator("figure.chart rect[data-value]")
    charted = sum(float(v) for v in points.evaluate_all("els => els.map(e => e.dataset.value)"))
    assert charted == len(day)


def test_the_fleet_is_every_subscriber_at_its_revision(
    console_stack: ConsoleStack, page: Page
) -> None:
    admin = console_stack.controlplane.admin
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    admin.create_provider("overview-fleet")
    revision = admin.revision()
    expect(page.locator("#revision")).to_have_text(str(revision))
    rows = page.locator("#subscribers tbody tr")
    expect(rows).to_have_count(2)
    for role in ("bridged", "proxyd"):
        expect(page.locator(f'tr[data-role="{role}"]')).to_have_attribute(
            "data-applied", str(revision)
        )
    status = admin.GetStatus(admin_pb2.GetStatusRequest())
    assert {s.role for s in status.subscribers} == {"bridged", "proxyd"}
