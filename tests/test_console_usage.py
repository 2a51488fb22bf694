"""The usage page: charts whose every point is QueryUsage's number for the same range and
bucket, a range picker and grouping kept in the URL, and the range's totals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from playwright.sync_api import Locator, Page, expect

from aibridge.v1 import admin_pb2
from console.formatting import usd
from tests.console import PHONE, ConsoleStack, sign_in, signed_in_client
from tests.harness import interception, report

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
# What each chart plots of a UsageRow, by its caption.
METRICS = {
    "Requests": lambda row: row.requests,
    "Tokens (input + output)": lambda row: row.input_tokens + row.output_tokens,
    "Cost (USD)": lambda row: row.cost_usd,
}


@pytest.fixture(scope="module")
def calls(console_stack: ConsoleStack) -> ConsoleStack:
    """Calls over the last 30 days through two providers, three models, two clients;
    several in the last hour, none within minutes of a range's edge."""
    now = datetime.now(UTC)
    ago = (
        ("u1", 5 * MINUTE, "openai", "gpt-4o", "claude-code", 200, (10, 20)),
        ("u2", 7 * MINUTE, "openai", "gpt-4o-mini", "curl", 500, (5, 0)),
        ("u3", 25 * MINUTE, "anthropic", "claude-sonnet-4-5", "claude-code", 200, (300, 40)),
        ("u4", 3 * HOUR, "openai", "gpt-4o", "curl", 200, (1000, 2000)),
        ("u5", 3 * HOUR + 2 * MINUTE, "anthropic", "claude-sonnet-4-5", "curl", 200, (7, 8)),
        ("u6", 10 * HOUR, "openai", "gpt-4o-mini", "claude-code", 429, (0, 0)),
        ("u7", 50 * HOUR, "anthropic", "claude-sonnet-4-5", "claude-code", 200, (40, 50)),
        ("u8", 20 * 24 * HOUR, "openai", "gpt-4o", "curl", 200, (60, 70)),
    )
    records = [
        interception(
            rid, when, now, provider, model, status=status, tokens=(*tokens, 0, 0), client=client
        )
        for rid, when, provider, model, client, status, tokens in ago
    ]
    cp = console_stack.controlplane
    assert report(cp, records, cp.secrets.bridged) == len(records)
    return console_stack


def timestamp(iso: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(iso))
    return stamp


def shown_range(page: Page) -> dict[str, str]:
    """The range, bucket and grouping the page charted, as it says in its data-* attributes."""
    found: dict[str, str] = page.locator("#usage-range").evaluate("e => ({...e.dataset})")
    return found


def api_rows(stack: ConsoleStack, shown: dict[str, str], buckets: bool) -> list[Any]:
    """QueryUsage for the range the page shows, per bucket or in total."""
    request = admin_pb2.QueryUsageRequest(
        since=timestamp(shown["since"]), until=timestamp(shown["until"]),
        group_by=shown["groupBy"],
        bucket_seconds=int(shown["bucketSeconds"]) if buckets else 0,
    )  # fmt: skip
    return list(stack.controlplane.admin.QueryUsage(request).rows)


def points_of(figure: Locator) -> dict[tuple[str, str], float]:
    points = figure.locator("rect[data-key]").evaluate_all(
        "els => els.map(e => [e.dataset.key, e.dataset.bucket, e.dataset.value])"
    )
    found = {(key, bucket): float(value) for key, bucket, value in points}
    assert len(found) == len(points), "two points for one key and bucket"
    return found


def expected_points(rows: list[Any], metric: str) -> dict[tuple[str, str], float]:
    value_of = METRICS[metric]
    return {
        (r.key, r.bucket_start.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")): float(
            value_of(r)
        )
        for r in rows
    }


def charts_match_the_api(page: Page, stack: ConsoleStack) -> dict[str, str]:
    """Every chart on the page has exactly QueryUsage's points for its range and bucket."""
    shown = shown_range(page)
    rows = api_rows(stack, shown, buckets=True)
    assert rows, "no calls in the range shown"
    figures = page.locator("figure.chart")
    captions = figures.locator("figcaption").all_inner_texts()
    assert captions and set(captions) <= set(METRICS)
    for index, caption in enumerate(captions):
        assert points_of(figures.nth(index)) == pytest.approx(expected_points(rows, caption))
    return shown


def test_every_charts_points_are_the_apis_numbers(calls: ConsoleStack, page: Page) -> None:
    sign_in(page, calls.url, calls.secrets.admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", name="Usage", level=1)).to_be_visible()
    expect(page.locator("figure.chart figcaption")).to_have_text(list(METRICS))
    shown = charts_match_the_api(page, calls)
    assert shown["groupBy"] == "provider"
    since, until = (datetime.fromisoformat(shown[k]) for k in ("since", "until"))
    assert until - since == timedelta(hours=24)
    # Buckets of at most 200 bars, starting at multiples of their length.
    bucket = int(shown["bucketSeconds"])
    assert (until - since) / timedelta(seconds=bucket) <= 200
    starts = page.locator("rect[data-bucket]").evaluate_all("es => es.map(e => e.dataset.bucket)")
    assert all(datetime.fromisoformat(start).timestamp() % bucket == 0 for start in starts)
    # Each legend names the keys, most requested first.
    expect(page.locator("figure.chart").first.locator(".legend li")).to_have_text(
        ["openai", "anthropic"]
    )
    tooltip = page.locator("rect[data-key='anthropic'] title").first
    expect(tooltip).to_contain_text("anthropic")


def test_the_range_picker_changes_the_url_and_the_charts(calls: ConsoleStack, page: Page) -> None:
    sign_in(page, calls.url, calls.secrets.admin)
    page.goto(calls.url + "/usage")
    day = points_of(page.locator("figure.chart").first)
    page.get_by_label("Range").select_option(label="Last hour")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"[?&]range=1h&"))
    shown = charts_match_the_api(page, calls)
    assert shown["bucketSeconds"] == "60"
    hour = points_of(page.locator("figure.chart").first)
    assert sum(hour.values()) == 3 and sum(day.values()) == 6  # requests
    # Reloaded, the page shows the same view.
    page.reload()
    expect(page.get_by_label("Range")).to_have_value("1h")
    assert points_of(page.locator("figure.chart").first) == hour

    page.get_by_label("Range").select_option(label="Last 30 days")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"[?&]range=30d&"))
    charts_match_the_api(page, calls)
    assert sum(points_of(page.locator("figure.chart").first).values()) == 8


def test_grouped_by_model_one_chart(calls: ConsoleStack, page: Page) -> None:
    sign_in(page, calls.url, calls.secrets.admin)
    page.goto(calls.url + "/usage?range=7d")
    page.get_by_label("Group by").select_option(label="Model")
    page.get_by_label("Metric").select_option(label="Tokens (input + output)")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"[?&]by=model&metric=tokens$"))
    expect(page.locator("figure.chart figcaption")).to_have_text(["Tokens (input + output)"])
    shown = charts_match_the_api(page, calls)
    assert shown["groupBy"] == "model"
    keys = {key for key, _ in points_of(page.locator("figure.chart"))}
    assert keys == {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"}
    expect(page.locator("#usage-totals thead th").first).to_have_text("Model")


def test_the_totals_table_is_query_usages_totals(calls: ConsoleStack, page: Page) -> None:
    sign_in(page, calls.url, calls.secrets.admin)
    page.goto(calls.url + "/usage?range=7d&by=client")
    expect(page.locator("#usage-totals thead th").first).to_have_text("Client")
    shown = shown_range(page)
    rows = api_rows(calls, shown, buckets=False)
    assert {r.key for r in rows} == {"claude-code", "curl"}
    assert sum(r.requests for r in rows) == 7  # u8, 20 days ago, is not in the range
    cells = page.locator("#usage-totals tbody tr").evaluate_all(
        "trs => trs.map(tr => [tr.dataset.key, ...[...tr.cells].map(c => c.textContent)])"
    )
    assert {key: texts for key, *texts in cells} == {
        r.key: [r.key, f"{r.requests:,}", f"{r.errors:,}", f"{r.input_tokens:,}",
                f"{r.output_tokens:,}", "0", "0", usd(r.cost_usd)]
        for r in rows
    }  # fmt: skip
    total = page.locator("#usage-totals tfoot td").all_inner_texts()
    assert total[0] == "7" and total[-1] == usd(sum(r.cost_usd for r in rows))


def test_a_custom_range_in_utc(calls: ConsoleStack, page: Page) -> None:
    sign_in(page, calls.url, calls.secrets.admin)
    page.goto(calls.url + "/usage")
    expect(page.get_by_text("in UTC").first).to_be_visible()
    until = datetime.now(UTC).replace(second=0, microsecond=0) - HOUR
    since = until - 12 * HOUR
    page.get_by_label("Range").select_option("custom")
    page.get_by_label("Since (UTC)").fill(since.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Until (UTC)").fill(until.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"[?&]range=custom&"))
    shown = charts_match_the_api(page, calls)
    assert datetime.fromisoformat(shown["since"]) == since
    assert datetime.fromisoformat(shown["until"]) == until
    # u4, u5 (3 hours ago) and u6 (10 hours ago) only.
    assert sum(points_of(page.locator("figure.chart").first).values()) == 3


def test_a_custom_range_backwards_is_refused_beside_until(calls: ConsoleStack) -> None:
    client = signed_in_client(calls.url, calls.secrets.admin)
    params = {"range": "custom", "since": "2026-01-02T00:00", "until": "2026-01-01T00:00"}
    reply = client.get("/usage", params=params)
    assert reply.status_code == 400
    assert 'id="f-until-error"' in reply.text and "Must be after Since" in reply.text
    reply = client.get("/usage", params={"range": "custom", "since": "yesterday"})
    assert reply.status_code == 400
    assert 'id="f-since-error"' in reply.text and 'id="f-until-error"' in reply.text


def test_the_page_fits_a_phone(calls: ConsoleStack, page: Page) -> None:
    page.set_viewport_size(PHONE)
    sign_in(page, calls.url, calls.secrets.viewer)
    page.goto(calls.url + "/usage")
    expect(page.locator("figure.chart").first).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways"
