"""The console's Limits and Prices pages, as an administrator and a viewer use them: limit
sets merged, removed and cleared as `aibridgectl limits set` does, refusals beside their
fields, and the price table set, edited and pruned."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from aibridge.v1 import admin_pb2
from tests.console import PHONE, ConsoleStack, flash, post_form, sign_in, signed_in_client
from tests.harness import unique


def limit_sets(stack: ConsoleStack) -> dict[str, admin_pb2.Limits]:
    listing = stack.controlplane.admin.ListLimits(admin_pb2.ListLimitsRequest())
    return {s.scope: s for s in listing.limits}


def new_user(stack: ConsoleStack) -> str:
    name = unique("lim")
    stack.controlplane.admin.CreateUser(admin_pb2.CreateUserRequest(name=name))
    return name


def test_limits_merge_a_field_given_none_removes_one_and_clear_deletes_the_set(
    console_stack: ConsoleStack, page: Page
) -> None:
    scope = f"user:{new_user(console_stack)}"
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + "/limits")
    page.get_by_label("Scope").fill(scope)
    page.get_by_label("RPM").fill("60")
    page.get_by_label("Monthly budget (USD)").fill("$5")
    page.get_by_label("Models", exact=True).fill("gpt-5*, claude-*")
    page.get_by_role("button", name="Set limits").click()
    flash(page, f"Set the limits of {scope}")
    row = page.locator(f'tr[data-scope="{scope}"]')
    expect(row.locator("td").nth(2)).to_have_text("60")
    expect(row.locator("td").nth(5)).to_have_text("$5.00")
    expect(row.locator("td").nth(7)).to_have_text("gpt-5*, claude-*")
    assert limit_sets(console_stack)[scope].requests_per_minute == 60

    # "Change" fills the scope in; an empty field keeps its limit, `none` removes one.
    row.get_by_role("link", name="Change").click()
    expect(page.get_by_label("Scope")).to_have_value(scope)
    page.get_by_label("RPM").fill("none")
    page.get_by_label("TPM").fill("1,000")
    page.get_by_role("button", name="Set limits").click()
    flash(page, f"Set the limits of {scope}")
    stored = limit_sets(console_stack)[scope]
    assert not stored.HasField("requests_per_minute")
    assert stored.tokens_per_minute == 1000
    assert stored.monthly_budget_usd == 5 and list(stored.models) == ["gpt-5*", "claude-*"]
    expect(row.locator("td").nth(2)).to_have_text("-")
    expect(row.locator("td").nth(3)).to_have_text("1,000")

    page.get_by_role("button", name=f"Clear the limits of {scope}").click()
    flash(page, f"Cleared the limits of {scope}")
    expect(row).to_have_count(0)
    assert scope not in limit_sets(console_stack)


def test_a_refused_limit_is_shown_beside_its_field(console_stack: ConsoleStack, page: Page) -> None:
    user = new_user(console_stack)
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + "/limits")

    page.get_by_label("Scope").fill(f"usr:{user}")
    page.get_by_label("RPM").fill("60")
    page.get_by_role("button", name="Set limits").click()
    scope = page.get_by_label("Scope")
    expect(scope).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-scope-error")).to_contain_text('must be "default", "user:NAME"')
    expect(scope).to_have_value(f"usr:{user}")  # what was typed is kept

    scope.fill(f"user:{user}")
    page.get_by_label("RPM").fill("-5")
    page.get_by_label("TPM").fill("lots")
    page.get_by_role("button", name="Set limits").click()
    # TPM is read by the console and refused before any call; fixed, RPM is the API's.
    expect(page.locator("#f-tokens_per_minute-error")).to_contain_text("must be a whole number")
    page.get_by_label("TPM").fill("")
    page.get_by_role("button", name="Set limits").click()
    expect(page.get_by_label("RPM")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-requests_per_minute-error")).to_have_text(
        "must be a whole number from 1 to 1,000,000,000"
    )

    page.get_by_label("RPM").fill("10")
    page.get_by_label("Per member").select_option("yes")
    page.get_by_role("button", name="Set limits").click()
    expect(page.locator("#f-per_member-error")).to_contain_text("applies only to a team's set")

    page.get_by_label("RPM").fill("")
    page.get_by_label("Per member").select_option("")
    page.get_by_role("button", name="Set limits").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing to set")
    assert f"user:{user}" not in limit_sets(console_stack)


def test_a_stale_limits_form_changes_nothing_and_shows_the_current_sets(
    console_stack: ConsoleStack,
) -> None:
    mine, theirs = f"user:{new_user(console_stack)}", f"user:{new_user(console_stack)}"
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    form = client.get("/limits").text
    revision = console_stack.controlplane.admin.revision()
    assert f'name="revision" value="{revision}"' in form
    # Someone else sets limits while the form is open.
    console_stack.controlplane.admin.SetLimits(
        admin_pb2.SetLimitsRequest(scope=theirs, max_concurrent=3)
    )
    fields = {"scope": mine, "requests_per_minute": "5", "revision": str(revision)}
    stale = post_form(client, "/limits", "/limits", fields)
    assert stale.status_code == 409
    assert "Someone else changed the configuration" in stale.text
    assert f'data-scope="{theirs}"' in stale.text  # the current state
    assert f'name="revision" value="{revision + 1}"' in stale.text
    assert f'value="{mine}"' in stale.text  # what was typed, to send again
    assert mine not in limit_sets(console_stack)


def test_prices_are_set_edited_and_deleted(console_stack: ConsoleStack, page: Page) -> None:
    model = unique("gov-price")
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + "/prices")
    page.get_by_label("Model", exact=True).fill(model)
    page.get_by_label("Input", exact=True).fill("0.075")
    page.get_by_label("Output", exact=True).fill("0.3")
    page.get_by_label("Cache write", exact=True).fill("0.1")
    page.get_by_role("button", name="Set price").click()
    flash(page, f"Set the price of {model}")
    row = page.locator(f'tr[data-model="{model}"]')
    # An empty cache-read price is the input price.
    expect(row.locator("td.num")).to_have_text(["$0.075", "$0.30", "$0.075", "$0.10"])

    page.get_by_role("link", name=f"Edit the price of {model}").click()
    expect(page.get_by_label("Input", exact=True)).to_have_value("0.075")
    page.get_by_label("Output", exact=True).fill("-1")
    page.get_by_role("button", name="Set price").click()
    expect(page.locator("#f-output-error")).to_contain_text("must be a number of USD from 0")
    expect(page.get_by_label("Model", exact=True)).to_have_value(model)
    page.get_by_label("Output", exact=True).fill("0.6")
    page.get_by_role("button", name="Set price").click()
    flash(page, f"Set the price of {model}")
    expect(row.locator("td.num").nth(1)).to_have_text("$0.60")

    page.get_by_role("button", name=f"Delete the price of {model}").click()
    flash(page, f"Deleted the price of {model}")
    expect(row).to_have_count(0)
    prices = console_stack.controlplane.admin.ListPrices(admin_pb2.ListPricesRequest()).prices
    assert model not in [p.model for p in prices]


def test_a_viewer_sees_limits_and_prices_but_no_form(console_stack: ConsoleStack) -> None:
    scope = f"user:{new_user(console_stack)}"
    console_stack.controlplane.admin.SetLimits(
        admin_pb2.SetLimitsRequest(scope=scope, monthly_budget_usd=7)
    )
    viewer = signed_in_client(console_stack.url, console_stack.secrets.viewer)
    for path, shown in (("/limits", scope), ("/prices", "claude-")):
        page = viewer.get(path)
        assert page.status_code == 200 and shown in page.text, path
        # Only the sign-out form and its button.
        assert page.text.count("<form") == 1 and page.text.count("<button") == 1, path


def test_the_limits_and_prices_pages_fit_a_phone(console_stack: ConsoleStack, page: Page) -> None:
    console_stack.controlplane.admin.SetLimits(
        admin_pb2.SetLimitsRequest(
            scope=f"user:{new_user(console_stack)}",
            models=admin_pb2.StringList(values=["gpt-5*", "claude-sonnet-4-5*", "o3-mini*"]),
        )
    )
    page.set_viewport_size(PHONE)
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    for path in ("/limits", "/prices"):
        page.goto(console_stack.url + path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
