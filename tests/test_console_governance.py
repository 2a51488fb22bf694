"""The console's Users and Teams pages, as an administrator and a viewer use them: people
and teams made, changed and deleted through the forms, with this month's spend against
their budgets once calls are recorded."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from playwright.sync_api import Page, expect

from aibridge.v1 import admin_pb2
from tests.console import PHONE, ConsoleStack, csrf_of, flash, post_form, sign_in, signed_in_client
from tests.harness import interception, report, unique


def charge(stack: ConsoleStack, token_id: str, model: str, input_tokens: int) -> None:
    """One call of the token, recorded as bridged reports it."""
    call = interception(uuid.uuid4().hex, timedelta(0), model=model, tokens=(input_tokens, 0, 0, 0))
    call.token_id = token_id
    assert report(stack.controlplane, [call], stack.secrets.bridged) == 1


def test_an_administrator_sets_up_a_user_with_a_budget_and_sees_their_spend(
    console_stack: ConsoleStack, page: Page
) -> None:
    user, team, model = unique("ada"), unique("ml"), unique("gov")
    sign_in(page, console_stack.url, console_stack.secrets.admin)

    page.goto(console_stack.url + "/users")
    page.get_by_label("Name").fill(user)
    page.get_by_label("Email").fill(f"{user}@example.com")
    page.get_by_role("button", name="Create user").click()
    flash(page, f"Created user {user} at revision")
    expect(page.get_by_role("heading", name=f"User {user}")).to_be_visible()

    page.goto(console_stack.url + "/teams")
    page.get_by_label("Name").fill(team)
    page.get_by_role("button", name="Create team").click()
    flash(page, f"Created team {team}")
    page.get_by_label("User").select_option(user)
    page.get_by_role("button", name="Add member").click()
    flash(page, f"Added {user} to team {team}")
    expect(page.locator(f'tr[data-member="{user}"]')).to_be_visible()

    page.goto(console_stack.url + "/limits")
    page.get_by_label("Scope").fill(f"user:{user}")
    page.get_by_label("Monthly budget (USD)").fill("2")
    page.get_by_label("RPM").fill("60")
    page.get_by_role("button", name="Set limits").click()
    flash(page, f"Set the limits of user:{user}")
    limits = page.locator(f'tr[data-scope="user:{user}"]')
    expect(limits).to_contain_text("$2.00")
    expect(limits.locator("td").nth(2)).to_have_text("60")

    page.goto(console_stack.url + "/prices")
    page.get_by_label("Model", exact=True).fill(model)
    page.get_by_label("Input", exact=True).fill("1000")
    page.get_by_label("Output", exact=True).fill("0")
    page.get_by_role("button", name="Set price").click()
    flash(page, f"Set the price of {model}")
    expect(page.locator(f'tr[data-model="{model}"]')).to_contain_text("$1,000.00")

    # Calls of the user's token, at $1,000 per million input tokens: $1, then $2.50.
    admin = console_stack.controlplane.admin
    token = admin.CreateToken(admin_pb2.CreateTokenRequest(name=unique("laptop"), user=user))
    charge(console_stack, token.info.id, model, 1000)
    page.goto(console_stack.url + "/users")
    row = page.locator(f'tr[data-user="{user}"]')
    expect(row).to_contain_text("$1.00")
    expect(row).to_contain_text("$2.00")
    expect(row).to_contain_text("50.0%")
    expect(row).not_to_have_class(re.compile("over"))

    charge(console_stack, token.info.id, model, 1500)
    page.reload()
    expect(row).to_contain_text("$2.50")
    expect(row).to_contain_text("125.0%")
    expect(row).to_have_class(re.compile(r"\bover\b"))
    expect(row.locator(".badge.bad")).to_have_text("over budget")
    # The team spent what its member did; it has no budget of its own.
    page.goto(console_stack.url + "/teams")
    team_row = page.locator(f'tr[data-team="{team}"]')
    expect(team_row).to_contain_text("$2.50")
    expect(team_row).to_contain_text("no budget")
    page.goto(console_stack.url + f"/users/{user}")
    expect(page.locator("#user-used")).to_contain_text("over budget")


def test_a_team_budget_and_a_member_removed(console_stack: ConsoleStack, page: Page) -> None:
    admin = console_stack.controlplane.admin
    user, team = unique("bo"), unique("ops")
    admin.CreateUser(admin_pb2.CreateUserRequest(name=user))
    admin.CreateTeam(admin_pb2.CreateTeamRequest(name=team))
    admin.AddTeamMember(admin_pb2.TeamMemberRequest(team=team, user=user))
    admin.SetLimits(admin_pb2.SetLimitsRequest(scope=f"team:{team}", monthly_budget_usd=10))
    sign_in(page, console_stack.url, console_stack.secrets.admin)

    page.goto(console_stack.url + "/teams")
    row = page.locator(f'tr[data-team="{team}"]')
    expect(row).to_contain_text("$10.00")
    expect(row).to_contain_text("0.0%")

    page.goto(console_stack.url + f"/teams/{team}")
    page.get_by_role("button", name=f"Remove {user}").click()
    flash(page, f"Removed {user} from team {team}")
    expect(page.locator(f'tr[data-member="{user}"]')).to_have_count(0)
    assert not admin.GetTeam(admin_pb2.GetTeamRequest(ref=team)).members


def test_a_stale_form_changes_nothing_and_shows_the_current_state(
    console_stack: ConsoleStack, page: Page
) -> None:
    admin = console_stack.controlplane.admin
    user = unique("cy")
    admin.CreateUser(admin_pb2.CreateUserRequest(name=user, email="first@example.com"))
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + f"/users/{user}")

    # Someone else changes the user while the form is open.
    update = admin_pb2.UpdateUserRequest(ref=user, email="other@example.com")
    admin.UpdateUser(update)
    page.get_by_label("Email").fill("mine@example.com")
    with page.expect_response(f"**/users/{user}") as answer:
        page.get_by_role("button", name="Save email").click()
    assert answer.value.status == 409
    expect(page.get_by_role("alert")).to_contain_text("Someone else changed the configuration")
    expect(page.get_by_label("Email")).to_have_value("other@example.com")
    expect(page.locator("#user-email")).to_have_text("other@example.com")
    assert admin.GetUser(admin_pb2.GetUserRequest(ref=user)).email == "other@example.com"

    # The page now carries the current revision: the same change goes through.
    page.get_by_label("Email").fill("mine@example.com")
    page.get_by_role("button", name="Save email").click()
    flash(page, f"Changed the email of {user}")
    assert admin.GetUser(admin_pb2.GetUserRequest(ref=user)).email == "mine@example.com"


def test_refusals_are_shown_beside_their_field(console_stack: ConsoleStack) -> None:
    client = signed_in_client(console_stack.url, console_stack.secrets.admin)
    revision = str(console_stack.controlplane.admin.revision())
    bad_name = post_form(client, "/users", "/users", {"name": "Not A Name", "revision": revision})
    assert bad_name.status_code == 400
    assert re.search(r'id="f-name"[^>]*aria-invalid="true"', bad_name.text)
    assert 'id="f-name-error"' in bad_name.text
    assert 'value="Not A Name"' in bad_name.text  # what was typed is kept

    user = unique("dee")
    console_stack.controlplane.admin.CreateUser(admin_pb2.CreateUserRequest(name=user))
    revision = str(console_stack.controlplane.admin.revision())
    taken = post_form(client, "/users", "/users", {"name": user, "revision": revision})
    assert taken.status_code == 409
    assert re.search(r'id="f-name-error"[^>]*>[^<]*already exists', taken.text)

    bad_email = post_form(
        client, f"/users/{user}", f"/users/{user}", {"email": "not an email", "revision": revision}
    )
    assert bad_email.status_code == 400
    assert re.search(r'id="f-email-error"[^>]*>must not contain spaces', bad_email.text)


def test_disabling_and_enabling_a_user(console_stack: ConsoleStack, page: Page) -> None:
    admin = console_stack.controlplane.admin
    user = unique("eve")
    admin.CreateUser(admin_pb2.CreateUserRequest(name=user))
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + f"/users/{user}")
    page.get_by_role("button", name="Disable").click()
    flash(page, f"Disabled user {user}")
    expect(page.locator("#user-enabled")).to_contain_text("disabled")
    assert not admin.GetUser(admin_pb2.GetUserRequest(ref=user)).enabled
    page.get_by_role("button", name="Enable").click()
    flash(page, f"Enabled user {user}")
    assert admin.GetUser(admin_pb2.GetUserRequest(ref=user)).enabled


def test_deleting_a_user_asks_first_and_revokes_their_tokens(
    console_stack: ConsoleStack, page: Page
) -> None:
    admin = console_stack.controlplane.admin
    user, token_name = unique("fay"), unique("phone")
    admin.CreateUser(admin_pb2.CreateUserRequest(name=user))
    token = admin.CreateToken(admin_pb2.CreateTokenRequest(name=token_name, user=user))
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + f"/users/{user}")
    page.get_by_role("link", name="Delete user…").click()

    expect(page.get_by_role("heading", name=f"Delete user {user}?")).to_be_visible()
    expect(page.locator("#revokes")).to_contain_text(f"Their 1 live token(s) ({token_name})")
    assert admin.GetUser(admin_pb2.GetUserRequest(ref=user)).enabled  # nothing done yet
    page.get_by_role("button", name=f"Delete user {user}").click()

    flash(page, f"Deleted user {user} and revoked 1 token(s)")
    expect(page.locator(f'tr[data-user="{user}"]')).to_have_count(0)
    tokens = admin.ListTokens(admin_pb2.ListTokensRequest(include_revoked=True)).tokens
    (revoked,) = [t for t in tokens if t.id == token.info.id]
    assert revoked.HasField("revoked_at")


def test_deleting_a_team_asks_first(console_stack: ConsoleStack, page: Page) -> None:
    admin = console_stack.controlplane.admin
    team = unique("qa")
    admin.CreateTeam(admin_pb2.CreateTeamRequest(name=team))
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    page.goto(console_stack.url + f"/teams/{team}")
    page.get_by_role("link", name="Delete team…").click()
    expect(page.get_by_role("heading", name=f"Delete team {team}?")).to_be_visible()
    page.get_by_role("button", name=f"Delete team {team}").click()
    flash(page, f"Deleted team {team}")
    expect(page.locator(f'tr[data-team="{team}"]')).to_have_count(0)
    teams = admin.ListTeams(admin_pb2.ListTeamsRequest()).teams
    assert team not in [t.name for t in teams]


def test_a_viewer_sees_users_and_teams_but_no_form(console_stack: ConsoleStack) -> None:
    admin = console_stack.controlplane.admin
    user, team = unique("gus"), unique("viewers")
    admin.CreateUser(admin_pb2.CreateUserRequest(name=user))
    admin.CreateTeam(admin_pb2.CreateTeamRequest(name=team))
    admin.AddTeamMember(admin_pb2.TeamMemberRequest(team=team, user=user))
    viewer = signed_in_client(console_stack.url, console_stack.secrets.viewer)
    for path in ("/users", f"/users/{user}", "/teams", f"/teams/{team}"):
        page = viewer.get(path)
        assert page.status_code == 200, path
        assert user in page.text, path
        # Only the sign-out form and its button.
        assert page.text.count("<form") == 1 and page.text.count("<button") == 1, path
        assert "/delete" not in page.text, path
    # The confirmation is no way in either.
    confirm = viewer.get(f"/users/{user}/delete")
    assert confirm.status_code == 303 and confirm.headers["location"] == f"/users/{user}"
    forged = viewer.post(f"/users/{user}/delete", data={"csrf": csrf_of(viewer.get("/users").text)})
    assert forged.status_code == 403
    assert admin.GetUser(admin_pb2.GetUserRequest(ref=user)).name == user


def test_the_users_page_fits_a_phone(console_stack: ConsoleStack, page: Page) -> None:
    console_stack.controlplane.admin.CreateUser(
        admin_pb2.CreateUserRequest(name=unique("hal"), email="a-long-address@example.com")
    )
    page.set_viewport_size(PHONE)
    sign_in(page, console_stack.url, console_stack.secrets.admin)
    for path in ("/users", "/teams"):
        page.goto(console_stack.url + path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
