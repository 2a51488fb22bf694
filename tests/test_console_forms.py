"""What every form's answer carries, and what the console does with one it cannot read:
a missing or unreadable revision, a number that is none, or a body that is no form is
refused with a 400 (never a 500, never a change made unchecked); the numbers people type,
read by one rule on every page; and a form's message reaching the page it leads to,
whatever else the browser fetched in between."""

from __future__ import annotations

import re

import jinja2
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from aibridge.v1 import admin_pb2
from console.formatting import parse_number
from console.session import Session
from console.views import SESSION, TEMPLATES, render
from tests.console import ConsoleStack, csrf_of, get_provider, post_form, signed_in_client
from tests.harness import unique

BAD_REVISIONS = ["²", "9" * 30, "-1", "1.0", " 1"]


def the_log_has_no_traceback(stack: ConsoleStack) -> bool:
    return "Traceback" not in stack.console.log()


def test_an_update_without_its_revision_changes_nothing(console_stack: ConsoleStack) -> None:
    """A form always sends the revision it was loaded at: without one, nothing would tell
    a change made since."""
    name = unique("f")
    console_stack.controlplane.admin.create_provider(name, display_name="Before")
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    csrf = csrf_of(client.get(f"/providers/{name}").text)
    fields = {"csrf": csrf, "name": name, "base_url": "https://api.example.com/v1"}
    for revision in (None, "", *BAD_REVISIONS):
        sent = {**fields, "display_name": "After"}
        if revision is not None:
            sent["revision"] = revision
        reply = client.post(f"/providers/{name}", data=sent)
        assert reply.status_code == 400, (revision, reply.status_code)
        assert "This form has no valid revision" in reply.text
    assert get_provider(console_stack, name).display_name == "Before"
    assert the_log_has_no_traceback(console_stack)


@pytest.mark.parametrize("revision", BAD_REVISIONS)
def test_a_new_provider_with_an_unreadable_revision_is_not_created(
    console_stack: ConsoleStack, revision: str
) -> None:
    name = unique("f")
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    fields = {"name": name, "type": "openai", "base_url": "https://api.example.com/v1"}
    reply = post_form(client, "/providers", "/providers", {**fields, "revision": revision})
    assert reply.status_code == 400
    listing = console_stack.controlplane.admin.ListProviders(admin_pb2.ListProvidersRequest())
    assert name not in [p.name for p in listing.providers]


def test_an_expiry_that_is_no_number_is_shown_beside_its_field(
    console_stack: ConsoleStack,
) -> None:
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    for expires_in in ("²", "9" * 30, "soon"):
        name = unique("f")
        reply = post_form(client, "/tokens", "/tokens", {"name": name, "expires_in": expires_in})
        assert reply.status_code == 400, (expires_in, reply.status_code)
        assert re.search(r'id="f-expires_in-error"[^>]*>must be a whole number', reply.text)
        listing = console_stack.controlplane.admin.ListTokens(admin_pb2.ListTokensRequest())
        assert name not in [t.name for t in listing.tokens]
    assert the_log_has_no_traceback(console_stack)


def test_a_body_that_is_no_form_is_a_400(console_stack: ConsoleStack) -> None:
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    no_boundary = {"content-type": "multipart/form-data; boundary=x"}
    for path in ("/providers", "/signin"):
        reply = client.post(path, content=b"not a multipart body", headers=no_boundary)
        assert reply.status_code == 400, (path, reply.status_code)
        assert "could not be read" in reply.text
    assert the_log_has_no_traceback(console_stack)


def test_numbers_are_read_by_one_rule() -> None:
    assert parse_number("1,000", whole=True) == 1000
    assert parse_number("1_000", whole=True) == 1000
    assert parse_number(" $1,250.50 ", whole=False) == 1250.5
    assert parse_number("-5", whole=True) == -5  # the API says what is wrong with it
    for text in ("0,5", "1,00", "²", "lots", "nan", "inf", "1e400", "9" * 30, ""):
        with pytest.raises(ValueError, match="must be"):
            parse_number(text, whole=text != "0,5")


def test_prices_and_limits_read_numbers_alike(console_stack: ConsoleStack) -> None:
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    model = unique("model")
    fields = {"model": model, "input": "1,000", "output": "$2,500.5"}
    assert post_form(client, "/prices", "/prices", fields).status_code == 303
    prices = console_stack.controlplane.admin.ListPrices(admin_pb2.ListPricesRequest()).prices
    price = next(p for p in prices if p.model == model)
    assert (price.input, price.output) == (1000, 2500.5)
    # A decimal comma is no number (not ten times the amount meant), on either page.
    decimal_comma = {"model": unique("model"), "input": "0,5", "output": "1"}
    reply = post_form(client, "/prices", "/prices", decimal_comma)
    assert reply.status_code == 400 and 'id="f-input-error"' in reply.text
    budget = {"scope": "default", "monthly_budget_usd": "0,5"}
    reply = post_form(client, "/limits", "/limits", budget)
    assert reply.status_code == 400 and 'id="f-monthly_budget_usd-error"' in reply.text


def test_a_form_s_message_waits_for_the_page_it_leads_to(console_stack: ConsoleStack) -> None:
    """Meanwhile the overview's live region (another tab) and an error page were fetched:
    neither takes the message."""
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    for meanwhile in ("/live/overview", "/providers/no-such-provider"):
        name = unique("f")
        fields = {"name": name, "type": "openai", "base_url": "https://api.example.com/v1"}
        reply = post_form(client, "/providers", "/providers", fields)
        assert reply.status_code == 303
        client.get(meanwhile)
        assert f"Created provider {name}" in client.get(reply.headers["location"]).text, meanwhile


@pytest.mark.parametrize("probe", ["{{ session.credential }}", "{{ request.cookies }}"])
def test_a_template_cannot_reach_the_session_s_credential(probe: str) -> None:
    """Templates get the role, the CSRF token and whether the session may change things:
    neither the session nor the request, through which a template could print it."""
    app = web.Application()
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.DictLoader({"probe.html": probe}), undefined=jinja2.StrictUndefined
    )
    request = make_mocked_request("GET", "/", app=app)
    request[SESSION] = Session(id="s", role="admin", credential="aba_x", csrf="c", expires=0)
    with pytest.raises(jinja2.UndefinedError):
        render(request, "probe.html")
