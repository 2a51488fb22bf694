"""The console's Providers pages: creating a provider in the form and watching every data
plane apply it, refusals beside their fields, stale forms, editing, keys shown only as
hints, deleting after a confirmation, viewers, and phone widths."""

from __future__ import annotations

import json
import re
import uuid

from playwright.sync_api import Page, expect

from aibridge.v1 import admin_pb2
from tests.cloud_keys import aws_credential, service_account
from tests.console import (
    PHONE,
    ConsoleStack,
    form_fields,
    get_provider,
    post_form,
    revision_in,
    sign_in,
    signed_in_client,
)
from tests.harness import unique


def a_key() -> str:
    """A key long enough to get a hint of its last four characters."""
    return f"sk-test-{uuid.uuid4().hex}"


def flashed_revision(page: Page, text: str) -> int:
    flash = page.locator(".flash", has_text=text)
    expect(flash).to_be_visible()
    found = re.search(r"at revision (\d+)", flash.inner_text())
    assert found, flash.inner_text()
    return int(found.group(1))


def provider_names(stack: ConsoleStack) -> list[str]:
    listing = stack.controlplane.admin.ListProviders(admin_pb2.ListProvidersRequest())
    return [p.name for p in listing.providers]


def test_a_provider_created_in_the_form_reaches_every_data_plane(
    console_stack: ConsoleStack, page: Page
) -> None:
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    # The overview stays open in one tab while the provider is created in another.
    overview = page
    overview.goto(console_stack.url + "/")
    subscribers = overview.locator("tr[data-subscriber]")
    expect(subscribers).to_have_count(2)
    form_tab = page.context.new_page()
    form_tab.goto(console_stack.url + "/providers")
    name, key = unique("p"), a_key()
    form_tab.get_by_label("Name", exact=True).fill(name)
    form_tab.get_by_label("Type").select_option("openai")
    form_tab.get_by_label("Base URL").fill("https://api.example.com/v1")
    form_tab.get_by_label("Display name").fill("Example")
    form_tab.get_by_label("Key", exact=True).fill(key)
    form_tab.get_by_role("button", name="Create provider").click()

    revision = flashed_revision(form_tab, f"Created provider {name}")
    row = form_tab.locator(f'tr[data-provider="{name}"]')
    expect(row).to_contain_text("Example")
    expect(row).to_contain_text("…" + key[-4:])
    assert key not in form_tab.content()

    assert sorted(subscribers.evaluate_all("rows => rows.map(r => r.dataset.role)")) == [
        "bridged",
        "proxyd",
    ]
    for n in range(2):
        expect(subscribers.nth(n)).to_have_attribute("data-applied", str(revision))
    expect(overview.locator("#revision")).to_have_text(str(revision))


def test_a_bad_base_url_is_shown_beside_its_field(console_stack: ConsoleStack, page: Page) -> None:
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + "/providers")
    name, key = unique("p"), a_key()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Type").select_option("anthropic")
    page.get_by_label("Base URL").fill("ftp://files.example.com")
    page.get_by_label("Display name").fill("Kept")
    page.get_by_label("Key", exact=True).fill(key)
    page.get_by_role("button", name="Create provider").click()

    base_url = page.get_by_label("Base URL")
    expect(base_url).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-base_url-error")).to_contain_text("http:// or https://")
    expect(page.locator(".field", has=base_url)).to_contain_text("http:// or https://")
    # What was typed is kept, but for the key, which never comes back into a page.
    expect(base_url).to_have_value("ftp://files.example.com")
    expect(page.get_by_label("Name", exact=True)).to_have_value(name)
    expect(page.get_by_label("Display name")).to_have_value("Kept")
    expect(page.get_by_label("Type")).to_have_value("anthropic")
    expect(page.get_by_label("Key", exact=True)).to_have_value("")
    assert key not in page.content()
    assert name not in provider_names(console_stack)


def test_a_taken_name_is_shown_beside_the_name_field(console_stack: ConsoleStack) -> None:
    name = unique("p")
    console_stack.controlplane.admin.create_provider(name)
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    key = a_key()
    fields = {"name": name, "type": "openai", "base_url": "https://b.example.com/v1", "key": key}
    reply = post_form(client, "/providers", "/providers", fields)
    assert reply.status_code == 409
    assert re.search(r'id="f-name"[^>]*aria-invalid="true"', reply.text)
    assert f"a provider named &#39;{name}&#39; already exists" in reply.text
    assert 'value="https://b.example.com/v1"' in reply.text
    assert key not in reply.text


def test_a_stale_form_is_refused_with_the_current_state(
    console_stack: ConsoleStack, page: Page
) -> None:
    admin = console_stack.controlplane.admin
    name = unique("p")
    admin.create_provider(name, base_url="https://old.example.com/v1", display_name="Before")
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(f"{console_stack.url}/providers/{name}")
    # Someone else changes the provider while the form is open.
    admin.UpdateProvider(
        admin_pb2.UpdateProviderRequest(ref=name, base_url="https://new.example.com/v1")
    )
    page.get_by_label("Display name").fill("Mine")
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("alert")).to_contain_text("Someone else changed the configuration")
    expect(page.get_by_label("Base URL")).to_have_value("https://new.example.com/v1")
    expect(page.get_by_label("Display name")).to_have_value("Before")
    assert revision_in(page.content()) == admin.revision()
    assert get_provider(console_stack, name).display_name == "Before"


def test_an_edit_form_sent_again_changes_nothing_more(console_stack: ConsoleStack) -> None:
    """The form sends what differs from the provider as it is: sent again after someone
    else's change, it differs otherwise, and its request id says it was sent already."""
    admin = console_stack.controlplane.admin
    name = unique("p")
    admin.create_provider(name, base_url="https://old.example.com/v1", display_name="Before")
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    sent = {
        **form_fields(client.get(f"/providers/{name}").text),
        "name": name, "base_url": "https://old.example.com/v1", "display_name": "Mine",
        "enabled": "1",
    }  # fmt: skip
    assert client.post(f"/providers/{name}", data=sent).status_code == 303
    admin.UpdateProvider(
        admin_pb2.UpdateProviderRequest(ref=name, base_url="https://new.example.com/v1")
    )
    again = client.post(f"/providers/{name}", data=sent)
    assert again.status_code == 409
    assert "This form was sent already, and its change made then" in again.text
    provider = get_provider(console_stack, name)
    assert (provider.base_url, provider.display_name) == ("https://new.example.com/v1", "Mine")


def test_editing_renames_and_disables_a_provider(console_stack: ConsoleStack, page: Page) -> None:
    name, renamed = unique("p"), unique("renamed")
    console_stack.controlplane.admin.create_provider(name)
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(f"{console_stack.url}/providers/{name}")
    page.get_by_label("Name", exact=True).fill(renamed)
    page.get_by_label("Enabled").uncheck()
    page.get_by_role("button", name="Save").click()

    revision = flashed_revision(page, f"Updated provider {renamed}")
    expect(page).to_have_url(f"{console_stack.url}/providers/{renamed}")
    expect(page.locator("#provider-enabled")).to_have_text("no")
    expect(page.get_by_label("Enabled")).not_to_be_checked()
    assert revision == console_stack.controlplane.admin.revision()
    provider = get_provider(console_stack, renamed)
    assert not provider.enabled
    assert name not in provider_names(console_stack)


def test_a_key_is_added_and_removed_and_only_its_hint_shown(
    console_stack: ConsoleStack, page: Page
) -> None:
    name, key = unique("p"), a_key()
    console_stack.controlplane.admin.create_provider(name)
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(f"{console_stack.url}/providers/{name}")
    expect(page.locator("tr[data-key]")).to_have_count(0)
    page.get_by_label("Key", exact=True).fill(key)
    page.get_by_role("button", name="Add key").click()

    flashed_revision(page, f"Added a key to provider {name}")
    hint = "…" + key[-4:]
    expect(page.locator("tr[data-key]")).to_have_text([re.compile(re.escape(hint))])
    assert key not in page.content()
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    for path in ("/providers", f"/providers/{name}", f"/providers/{name}/delete"):
        assert key not in client.get(path).text, path
    assert [k.hint for k in get_provider(console_stack, name).keys] == [hint]

    page.get_by_role("button", name=f"Remove key {hint}").click()
    flashed_revision(page, f"Removed a key from provider {name}")
    expect(page.locator("tr[data-key]")).to_have_count(0)
    assert not get_provider(console_stack, name).keys


def test_a_provider_is_deleted_after_a_confirmation(
    console_stack: ConsoleStack, page: Page
) -> None:
    name = unique("p")
    console_stack.controlplane.admin.create_provider(name)
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(f"{console_stack.url}/providers/{name}")
    page.get_by_role("link", name="Delete provider").click()

    expect(page.get_by_role("heading", name=f"Delete provider {name}?")).to_be_visible()
    assert name in provider_names(console_stack)  # asking deletes nothing
    page.get_by_role("button", name=f"Delete provider {name}").click()

    flashed_revision(page, f"Deleted provider {name}")
    expect(page).to_have_url(console_stack.url + "/providers")
    expect(page.locator(f'tr[data-provider="{name}"]')).to_have_count(0)
    assert name not in provider_names(console_stack)


def test_a_viewer_sees_providers_but_nothing_to_change_them(
    console_stack: ConsoleStack,
) -> None:
    name = unique("p")
    console_stack.controlplane.admin.create_provider(name, keys=[a_key()])
    client = signed_in_client(console_stack.url, console_stack.secrets.viewer)
    # A viewer has no deletion to confirm: as on the users' and teams' pages, back to it.
    confirm = client.get(f"/providers/{name}/delete")
    assert confirm.status_code == 303 and confirm.headers["location"] == f"/providers/{name}"
    for path in ("/providers", f"/providers/{name}"):
        reply = client.get(path)
        assert reply.status_code == 200, path
        assert name in reply.text
        # The only form, and the only button, is signing out.
        assert reply.text.count("<form") == 1, path
        assert re.findall(r"<button[^>]*>([^<]*)", reply.text) == ["Sign out"], path
        assert 'type="password"' not in reply.text


def test_the_providers_pages_fit_a_phone(console_stack: ConsoleStack, page: Page) -> None:
    name = unique("p")
    long_url = "https://a-rather-long-host-name.api.example.com/v1/some/deep/path/prefix"
    console_stack.controlplane.admin.create_provider(name, base_url=long_url, keys=[a_key()])
    page.set_viewport_size(PHONE)
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    for path in ("/providers", f"/providers/{name}", f"/providers/{name}/delete"):
        page.goto(console_stack.url + path)
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert fits, path


def test_a_cloud_provider_from_the_form_and_its_page(
    console_stack: ConsoleStack, page: Page
) -> None:
    """A bedrock or vertex key is a credential JSON over many lines, sent as one key; the
    provider's page shows its region, project and model map."""
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    account, aws = service_account("console-proj-1"), aws_credential()
    vertex, bedrock = unique("vertex"), unique("bedrock")
    fields = {"name": vertex, "type": "vertex",
              "base_url": "https://europe-west4-aiplatform.googleapis.com",
              "key": json.dumps(account, indent=2)}  # fmt: skip
    reply = post_form(client, "/providers", "/providers", fields)
    assert reply.status_code == 303, reply.text
    made = get_provider(console_stack, vertex)
    assert [k.hint for k in made.keys] == [account["client_email"]]
    assert made.project == "console-proj-1"  # the service account's

    # A host that names no region needs one, and the refusal is beside its field.
    fields = {"name": bedrock, "type": "bedrock", "base_url": "http://127.0.0.1:9",
              "key": json.dumps(aws, indent=2)}  # fmt: skip
    reply = post_form(client, "/providers", "/providers", fields)
    assert reply.status_code == 400
    assert re.search(r'id="f-region"[^>]*aria-invalid="true"', reply.text)
    assert "the base_url&#39;s host names no region" in reply.text
    assert aws["secret_access_key"] not in reply.text
    reply = post_form(client, "/providers", "/providers", fields | {"region": "us-east-2"})
    assert reply.status_code == 303, reply.text
    assert get_provider(console_stack, bedrock).effective_region == "us-east-2"

    console_stack.controlplane.admin.UpdateProvider(
        admin_pb2.UpdateProviderRequest(
            ref=vertex,
            model_map=[admin_pb2.ModelMapping(model="claude-opus-4-1",
                                              upstream_model="claude-opus-4-1@20250805")],
        )
    )  # fmt: skip
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(f"{console_stack.url}/providers/{vertex}")
    cloud = page.locator("#provider-cloud")
    expect(cloud).to_contain_text("europe-west4 (from base URL)")
    expect(cloud).to_contain_text("console-proj-1")
    mapping = page.locator("#provider-model-map tbody tr")
    expect(mapping).to_have_count(1)
    expect(mapping).to_contain_text("claude-opus-4-1@20250805")
    expect(page.locator("#provider-keys")).to_contain_text(account["client_email"])
    page.goto(f"{console_stack.url}/providers/{bedrock}")
    expect(page.locator("#provider-cloud")).to_contain_text("us-east-2")
    expect(page.locator("#provider-cloud")).not_to_contain_text("from base URL")
    for path in ("/providers", f"/providers/{vertex}", f"/providers/{bedrock}"):
        html = client.get(path).text
        assert account["private_key"].splitlines()[5] not in html, path
        assert aws["secret_access_key"] not in html, path
