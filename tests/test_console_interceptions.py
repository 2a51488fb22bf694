"""The console's Interceptions and Sessions pages: calls stored through the real Usage
service, as bridged reports them, then listed, filtered (in the URL), paged, opened whole,
and followed through their session's timeline in Chromium. Agents' texts are shown as
text, never run; viewers read these pages too."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Dialog, Page, expect

from aibridge.v1 import admin_pb2, usage_pb2
from console.formatting import usd
from tests.console import PHONE, ConsoleStack, sign_in, signed_in_client
from tests.harness import interception, report, unique, wait_until

MINUTE = timedelta(minutes=1)
A_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")


def store(stack: ConsoleStack, records: list[usage_pb2.Interception]) -> None:
    cp = stack.controlplane
    assert report(cp, records, stack.secrets.bridged) == len(records)


def users_token(stack: ConsoleStack, user: str) -> admin_pb2.Token:
    """A new user and a gateway token of theirs: the controlplane charges a call to the
    user its token belongs to, whatever the data plane reports."""
    admin = stack.controlplane.admin
    admin.CreateUser(admin_pb2.CreateUserRequest(name=user))
    token: admin_pb2.Token = admin.CreateToken(
        admin_pb2.CreateTokenRequest(name=f"{user}-laptop", user=user)
    ).info
    return token


def made_with(token: admin_pb2.Token, record: usage_pb2.Interception) -> usage_pb2.Interception:
    record.token_id, record.token_name = token.id, token.name
    return record


def tool_call(name: str, arguments: dict[str, Any], call_id: str = "") -> usage_pb2.ToolCall:
    return usage_pb2.ToolCall(
        id=call_id or unique("call"), name=name, arguments=json.dumps(arguments)
    )


def row_ids(page: Page) -> list[str]:
    return page.locator("#interceptions tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.id)"
    )


def test_the_list_shows_each_call_and_a_filter_narrows_it_in_the_url(
    console_stack: ConsoleStack, page: Page
) -> None:
    user, other = unique("ada"), unique("bob")
    first, second, bobs = unique("r"), unique("r"), unique("r")
    adas, bobs_token = users_token(console_stack, user), users_token(console_stack, other)
    store(console_stack, [
        made_with(adas, interception(first, 3 * MINUTE, model="gpt-4o", tokens=(1200, 340, 0, 0),
                                     client="claude-code", prompt="Fix the failing test")),
        made_with(adas, interception(second, 2 * MINUTE, model="gpt-4o", status=429,
                                     client="claude-code", prompt="And now the other one")),
        made_with(bobs_token, interception(bobs, MINUTE, model="gpt-4o", client="codex",
                                           prompt="Hello")),
    ])  # fmt: skip
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.get_by_role("link", name="Interceptions").click()
    expect(page.get_by_role("heading", name="Interceptions")).to_be_visible()
    expect(page.locator(f'tr[data-id="{first}"]')).to_be_visible()

    page.get_by_label("User").fill(user)
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{console_stack.url}/interceptions?user={user}")
    expect(page.locator("#interceptions tbody tr")).to_have_count(2)
    assert row_ids(page) == [second, first]  # newest first

    row = page.locator(f'tr[data-id="{first}"]')
    record = console_stack.controlplane.admin.GetInterception(
        admin_pb2.GetInterceptionRequest(id=first)
    )
    assert record.HasField("cost_usd")
    cells: list[str | re.Pattern[str]] = [
        A_TIME, "openai", "gpt-4o", user, adas.name, "claude-code", "200", "340 ms", "1,200",
        "340", usd(record.cost_usd), "Fix the failing test",
    ]  # fmt: skip
    expect(row.locator("td")).to_have_text(cells)
    expect(page.locator(f'tr[data-id="{second}"] td').nth(6)).to_have_text("429")

    # Reloading the URL shows the same view; the filter form shows what it holds.
    page.reload()
    expect(page.get_by_label("User")).to_have_value(user)
    expect(page.locator("#interceptions tbody tr")).to_have_count(2)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Interceptions")).to_have_attribute("aria-current", "page")


def test_a_model_and_status_filter_narrow_together(console_stack: ConsoleStack, page: Page) -> None:
    model = unique("gpt-4o-filter")
    ok, failed, elsewhere = unique("r"), unique("r"), unique("r")
    store(console_stack, [
        interception(ok, 3 * MINUTE, model=model),
        interception(failed, 2 * MINUTE, model=model, status=502),
        interception(elsewhere, MINUTE, model=unique("gpt-4o-other"), status=502),
    ])  # fmt: skip
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + "/interceptions")
    page.get_by_label("Model").fill(model)
    page.get_by_label("Status").select_option("5xx")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{console_stack.url}/interceptions?model={model}&status=5xx")
    expect(page.locator("#interceptions tbody tr")).to_have_count(1)
    assert row_ids(page) == [failed]

    page.get_by_role("link", name="Clear").click()
    expect(page).to_have_url(console_stack.url + "/interceptions")
    expect(page.locator(f'tr[data-id="{elsewhere}"]')).to_be_visible()


def test_pages_follow_one_another_to_the_last(console_stack: ConsoleStack, page: Page) -> None:
    model = unique("gpt-4o-paging")
    now = datetime.now(UTC)
    records = [interception(unique("p"), n * MINUTE, now, model=model) for n in range(1, 26)]
    store(console_stack, records)
    newest_first = [r.request_id for r in records]  # started 1, 2, … 25 minutes ago

    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(f"{console_stack.url}/interceptions?model={model}")
    page.get_by_label("Per page").select_option("20")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{console_stack.url}/interceptions?model={model}&limit=20")
    expect(page.locator("#interceptions tbody tr")).to_have_count(20)
    first_page = row_ids(page)

    page.get_by_role("link", name="Next page").click()
    expect(page.locator("#interceptions tbody tr")).to_have_count(5)
    assert "cursor=" in page.url and f"model={model}" in page.url
    assert first_page + row_ids(page) == newest_first
    expect(page.get_by_role("link", name="Next page")).to_have_count(0)

    page.get_by_role("link", name="First page").click()
    expect(page.locator("#interceptions tbody tr")).to_have_count(20)
    assert row_ids(page) == first_page


def test_the_detail_page_shows_the_whole_record(console_stack: ConsoleStack, page: Page) -> None:
    session, record_id = unique("sess"), unique("r")
    prompt = "Refactor the billing module.\n" + "Keep every public name. " * 40 + "THE END"
    arguments = {"path": "billing/invoice.py", "old": "total = 0", "new": "total = Decimal(0)"}
    store(console_stack, [
        interception(record_id, MINUTE, model="claude-sonnet-4-5", provider="anthropic",
                     token="ada-laptop", tokens=(5400, 210, 1000, 0), client="claude-code",
                     session_id=session, prompt=prompt, stop_reason="tool_use",
                     tool_calls=[tool_call("edit_file", arguments, "toolu_01")],
                     tool_results=[usage_pb2.ToolResult(tool_call_id="toolu_00")]),
    ])  # fmt: skip
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(f"{console_stack.url}/interceptions?session={session}")
    row = page.locator(f'tr[data-id="{record_id}"]')
    expect(row.locator("td.preview")).to_contain_text("Refactor the billing module.")
    row.get_by_role("link").click()

    expect(page).to_have_url(f"{console_stack.url}/interceptions/{record_id}")
    expect(page.get_by_role("heading", name=f"Interception {record_id}")).to_be_visible()
    expect(page.locator("#prompt")).to_have_text(prompt)  # whole, not a preview's 500 chars
    calls = page.locator("#tool-calls .tool-call")
    expect(calls).to_have_count(1)
    expect(calls.get_by_role("heading")).to_have_text("edit_file")
    expect(calls.locator("pre")).to_have_text(json.dumps(arguments, indent=2))
    expect(page.locator("#tool-results")).to_contain_text("toolu_00")
    expect(page.locator("#input-tokens")).to_have_text("5,400")
    expect(page.locator("#output-tokens")).to_have_text("210")
    about = page.locator("#about")
    for text in ("anthropic", "claude-sonnet-4-5", "ada-laptop", "claude-code", "tool_use"):
        expect(about).to_contain_text(text)

    page.get_by_role("link", name="Its session").click()
    expect(page.get_by_role("heading", name=f"Session {session}")).to_be_visible()


def test_the_session_page_is_a_timeline_in_order_with_its_totals(
    console_stack: ConsoleStack, page: Page
) -> None:
    session = unique("sess")
    steps = [unique("s") for _ in range(3)]
    now = datetime.now(UTC)
    store(console_stack, [
        # Stored out of order: the timeline puts them in the order they started.
        interception(steps[2], 1 * MINUTE, now, model="gpt-4o", tokens=(900, 40, 0, 0),
                     client="codex", session_id=session, prompt="Now run the tests"),
        interception(steps[0], 3 * MINUTE, now, model="gpt-4o-mini", tokens=(500, 20, 0, 0),
                     client="codex", session_id=session, prompt="Find the bug in cache.py",
                     tool_calls=[tool_call("read_file", {"path": "cache.py"})]),
        interception(steps[1], 2 * MINUTE, now, model="gpt-4o", tokens=(700, 30, 0, 0),
                     client="codex", session_id=session, status=500, prompt="",
                     tool_calls=[tool_call("shell", {"command": ["pytest", "-x"]}),
                                 tool_call("read_file", {"path": "test_cache.py"})]),
    ])  # fmt: skip
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + "/interceptions")
    page.get_by_role("link", name="Sessions").click()
    expect(page).to_have_url(console_stack.url + "/interceptions/sessions")
    row = page.locator(f'#sessions tr[data-session="{session}"]')
    expect(row.locator("td")).to_have_text(
        [session, "codex", "alice", A_TIME, A_TIME, "3", "2,100", "90", "3", "1"]
    )
    row.get_by_role("link", name=session).click()

    expect(page.get_by_role("heading", name=f"Session {session}")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Interceptions")).to_have_attribute("aria-current", "page")
    timeline = page.locator("#timeline > li")
    expect(timeline).to_have_count(3)
    assert timeline.evaluate_all("items => items.map(i => i.dataset.id)") == steps
    first, second, third = (timeline.nth(i) for i in range(3))
    expect(first.locator(".model")).to_have_text("gpt-4o-mini")
    expect(first.locator(".tokens")).to_have_text("in 500 · out 20")
    expect(first.locator("pre").first).to_have_text("Find the bug in cache.py")
    expect(first.locator(".tool-name")).to_have_text(["read_file"])
    expect(second.locator(".tool-name")).to_have_text(["shell", "read_file"])
    expect(second.locator(".badge")).to_have_text("500")
    expect(third.locator(".tokens")).to_have_text("in 900 · out 40")
    expect(third.locator("pre")).to_have_text("Now run the tests")
    expect(page.locator("#total-calls")).to_have_text("3")
    expect(page.locator("#total-input")).to_have_text("2,100")
    expect(page.locator("#total-output")).to_have_text("90")
    expect(page.locator("#total-tool-calls")).to_have_text("3")
    expect(page.locator("#total-errors")).to_have_text("1")

    first.get_by_role("link").first.click()
    expect(page).to_have_url(f"{console_stack.url}/interceptions/{steps[0]}")


def test_an_agents_markup_is_shown_as_text_and_never_run(
    console_stack: ConsoleStack, page: Page
) -> None:
    session, record_id = unique("sess"), unique("r")
    prompt = "<script>alert(1)</script> and <img src=x onerror=alert(2)>"
    store(console_stack, [
        interception(record_id, MINUTE, session_id=session, prompt=prompt,
                     tool_calls=[tool_call("<b>bold</b>", {"html": "<script>alert(3)</script>"})]),
    ])  # fmt: skip
    dialogs: list[str] = []

    def dismissed(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismissed)
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    made = "document.querySelectorAll('main script, main img, main b').length"
    for path, shown, tool in [
        (f"/interceptions?session={session}", page.locator("td.preview"), None),
        (f"/interceptions/{record_id}", page.locator("#prompt"), page.locator(".tool-call h3")),
        (f"/interceptions/sessions/{session}", page.locator("#timeline pre").first,
         page.locator(".tool-name")),
    ]:  # fmt: skip
        page.goto(console_stack.url + path)
        expect(shown).to_have_text(prompt)
        if tool is not None:
            expect(tool).to_have_text("<b>bold</b>")
        assert page.evaluate(made) == 0
    assert dialogs == []


def test_the_pages_fit_a_phone(console_stack: ConsoleStack, page: Page) -> None:
    session, record_id = unique("sess"), unique("r")
    unbroken = "x" * 600  # one long word must wrap too, not widen the page
    store(console_stack, [
        interception(record_id, MINUTE, session_id=session, prompt=unbroken,
                     tool_calls=[tool_call("write", {"text": unbroken})]),
    ])  # fmt: skip
    page.set_viewport_size(PHONE)
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    for path in (
        "/interceptions",
        "/interceptions/sessions",
        f"/interceptions/{record_id}",
        f"/interceptions/sessions/{session}",
    ):
        page.goto(console_stack.url + path)
        expect(page.locator("h1")).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} is {width} px wide"


def test_a_viewer_reads_every_page(console_stack: ConsoleStack) -> None:
    session, record_id, token = unique("sess"), unique("r"), unique("viewed")
    store(console_stack, [
        interception(record_id, MINUTE, token=token, session_id=session, prompt="hi"),
    ])  # fmt: skip
    client = signed_in_client(console_stack.url, console_stack.secrets.viewer)
    for path in (
        f"/interceptions?session={session}",
        f"/interceptions/{record_id}",
        f"/interceptions/sessions?token={token}",
        f"/interceptions/sessions/{session}",
    ):
        reply = client.get(path)
        assert reply.status_code == 200, (path, reply.text)
        assert record_id in reply.text or session in reply.text
        # Reads only: the one form that posts is signing out.
        assert reply.text.count('method="post"') == 1


def test_refused_filters_are_shown_beside_their_field(console_stack: ConsoleStack) -> None:
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)

    reply = client.get("/interceptions?since=yesterday")
    assert reply.status_code == 400
    assert 'id="f-since-error"' in reply.text and "must be a date and time" in reply.text

    # The API's own refusal, placed beside the field it names (status_class: Status).
    reply = client.get("/interceptions?status=7xx")
    assert reply.status_code == 400
    assert 'id="f-status-error"' in reply.text

    # The form's empty fields are left out of the URL, and so is a default.
    reply = client.get("/interceptions?since=&until=&model=gpt-4o&status=&limit=50")
    assert reply.status_code == 302
    assert reply.headers["location"] == "/interceptions?model=gpt-4o"

    assert client.get("/interceptions/no-such-call").status_code == 404
    assert client.get("/interceptions/sessions/no-such-session").status_code == 404


def test_a_secret_pasted_into_a_filter_is_kept_out_of_the_url_and_the_log(
    console_stack: ConsoleStack,
) -> None:
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    secret = f"abt_{uuid.uuid4().hex}"
    for name, label in (("token", "Token"), ("session", "Session")):
        # The filter form's answer: every field, most of them empty.
        answer = {"since": "", name: secret, "model": "gpt-4o", "limit": "50"}
        reply = client.get("/interceptions", params=answer)
        assert reply.status_code == 302
        assert reply.headers["location"] == "/interceptions?model=gpt-4o"
        shown = client.get(reply.headers["location"]).text
        assert f"The {label} filter was given what looks like a gateway token" in shown
        assert secret not in shown
    # Typed into the address bar alone, it is dropped all the same.
    reply = client.get("/interceptions", params={"token": secret})
    assert reply.status_code == 302 and reply.headers["location"] == "/interceptions"
    # The console's access log names each request's path, never its query.
    redirects = re.compile(r'"GET /interceptions\S* HTTP/1.1" 302')
    wait_until(
        lambda: len(redirects.findall(console_stack.console.log())) >= 3,
        what="the redirects in the access log",
    )
    assert secret not in console_stack.console.log()


def test_a_session_id_with_a_slash_has_its_page(console_stack: ConsoleStack) -> None:
    session, token = unique("team/sess"), unique("slashed")
    store(console_stack, [
        interception(unique("r"), MINUTE, token=token, session_id=session, prompt="hi"),
    ])  # fmt: skip
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    sessions = client.get(f"/interceptions/sessions?token={token}").text
    href = f"/interceptions/sessions/{quote(session, safe='')}"
    assert href in sessions
    reply = client.get(href)
    assert reply.status_code == 200 and f"Session <code>{session}</code>" in reply.text
