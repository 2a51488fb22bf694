"""`aibridgectl users`, `teams` and `tokens create --user` as an administrator runs them:
a subprocess against a real controlplane (SQLite and PostgreSQL), its tables, its JSON,
its exit codes, `--expect-revision` and `--wait` against a real subscriber. Tests on the
module's shared controlplane use names of their own and count only those."""

from __future__ import annotations

import asyncio
import json
import re

from aibridge.v1 import admin_pb2
from tests.harness import (
    Controlplane,
    RecordingSubscriber,
    admin_state,
    ctl,
    printed_revision,
    unique,
)


def rows(output: str) -> dict[str, list[str]]:
    """A table's rows by their first column, its header row checked apart."""
    return {line.split()[0]: line.split() for line in output.splitlines()[1:]}


def test_users_through_the_command(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
    laptop_name, service, ml = unique("laptop"), unique("service"), unique("ml")
    created = ctl(cp, "users", "create", alice, "--email", "alice@example.com", check=True)
    assert re.fullmatch(
        rf"created user {alice} \(usr_[0-9a-f]{{16}}\) at revision \d+\n", created.stdout
    )
    disabled = ctl(cp, "users", "create", bob, "--disabled", check=True).stdout
    assert f"created user {bob} (usr_" in disabled and ", disabled at revision" in disabled
    made = json.loads(ctl(cp, "--json", "users", "create", carol, check=True).stdout)
    assert isinstance(made["revision"], int) and made["user"]["name"] == carol
    assert made["user"]["enabled"] is True and made["user"]["tokens"] == 0

    token = ctl(cp, "tokens", "create", laptop_name, "--user", alice, check=True).stdout
    assert f"created token {laptop_name} (tok_" in token
    assert f" for user {alice} at revision" in token
    (laptop,) = re.findall(r"^    (abt_\S+)$", token, re.M)
    ctl(cp, "tokens", "create", service, check=True)
    ctl(cp, "teams", "create", ml, check=True)
    ctl(cp, "teams", "add-member", ml, alice, check=True)

    def users_listed() -> dict[str, list[str]]:
        """The listing's rows of this test's users."""
        listing = ctl(cp, "users", "list", check=True).stdout
        return {name: row for name, row in rows(listing).items() if name in (alice, bob, carol)}

    listing = ctl(cp, "users", "list", check=True).stdout
    assert listing.splitlines()[0].split() == ["NAME", "ENABLED", "EMAIL", "TOKENS", "TEAMS", "ID"]
    users = users_listed()
    assert users[alice][:5] == [alice, "yes", "alice@example.com", "1", ml]
    assert users[bob][:5] == [bob, "no", "-", "0", "-"]
    assert set(users) == {alice, bob, carol}

    shown = ctl(cp, "users", "get", alice, check=True).stdout
    for line in ("email:    alice@example.com", "enabled:  yes", f"teams:    {ml}", "tokens:   1"):
        assert line in shown.splitlines(), shown
    as_json = json.loads(ctl(cp, "users", "get", users[alice][5], "--json", check=True).stdout)
    assert (as_json["name"], as_json["teams"], as_json["tokens"]) == (alice, [ml], 1)

    tokens = ctl(cp, "tokens", "list", check=True).stdout
    assert tokens.splitlines()[0].split()[-1] == "USER"
    by_token = rows(tokens)
    assert by_token[laptop_name][-1] == alice and by_token[service][-1] == "-"
    assert laptop not in tokens

    off = ctl(cp, "users", "disable", alice, check=True).stdout
    assert off.startswith(f"disabled user {alice} (usr_") and "their 1 token(s)" in off
    assert users_listed()[alice][1] == "no"
    on = ctl(cp, "users", "enable", alice, check=True).stdout
    assert on.startswith(f"enabled user {alice} (usr_")
    changed = ctl(cp, "users", "update", alice, "--email", "a@corp.example", check=True).stdout
    assert changed.startswith(f"updated user {alice} (usr_")
    assert cp.admin.GetUser(admin_pb2.GetUserRequest(ref=alice)).email == "a@corp.example"

    deleted = ctl(cp, "users", "delete", alice, check=True).stdout
    assert re.fullmatch(
        rf"deleted user {alice} \(usr_[0-9a-f]{{16}}\) and revoked 1 token\(s\) at revision \d+\n",
        deleted,
    )
    everything = rows(ctl(cp, "tokens", "list", "--all", check=True).stdout)
    assert everything[laptop_name][5] != "-" and everything[laptop_name][-1] == alice
    assert set(users_listed()) == {bob, carol}
    assert ctl(cp, "teams", "get", ml, check=True).stdout.count("members:  -") == 1


def test_teams_through_the_command(controlplane: Controlplane) -> None:
    """(A controlplane of its own: it ends with no teams at all.)"""
    cp = controlplane
    for name in ("bob", "alice"):
        ctl(cp, "users", "create", name, check=True)
    created = ctl(cp, "teams", "create", "ml", check=True).stdout
    assert re.fullmatch(r"created team ml \(team_[0-9a-f]{16}\) at revision \d+\n", created)
    assert ctl(cp, "teams", "list", check=True).stdout.splitlines()[0].split() == [
        "NAME", "MEMBERS", "ID", "USERS",
    ]  # fmt: skip
    for user in ("bob", "alice"):
        added = ctl(cp, "teams", "add-member", "ml", user, check=True).stdout
        assert added.startswith(f"added {user} to team ml at revision ")
    team = rows(ctl(cp, "teams", "list", check=True).stdout)["ml"]
    assert (team[1], team[3]) == ("2", "alice,bob")
    assert "members:  alice, bob" in ctl(cp, "teams", "get", "ml", check=True).stdout

    twice = ctl(cp, "teams", "add-member", "ml", "bob")
    assert twice.returncode == 1 and twice.stdout == ""
    assert twice.stderr == "error: ALREADY_EXISTS: user 'bob' is already a member of team 'ml'\n"

    removed = ctl(cp, "teams", "remove-member", "ml", "bob", check=True).stdout
    assert removed.startswith("removed bob from team ml at revision ")
    again = ctl(cp, "teams", "remove-member", "ml", "bob")
    assert again.returncode == 1
    assert again.stderr == "error: NOT_FOUND: user 'bob' is not a member of team 'ml'\n"

    as_json = json.loads(ctl(cp, "--json", "teams", "get", "ml", check=True).stdout)
    assert as_json["members"] == ["alice"]
    deleted = ctl(cp, "teams", "delete", "ml", check=True).stdout
    assert deleted.startswith(f"deleted team ml ({as_json['id']}) at revision ")
    assert ctl(cp, "teams", "list", check=True).stdout.startswith("no teams (revision ")
    assert json.loads(ctl(cp, "users", "get", "alice", "--json", check=True).stdout)["teams"] == []


def test_refusals_exit_1_and_change_nothing(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    before = admin_state(cp)
    for command, message in (
        (("users", "create", "alice", "--email", "not-an-email"),
         "error: INVALID_ARGUMENT: email: must be an email address"),
        (("users", "create", "Alice"), "error: INVALID_ARGUMENT: name: "),
        (("users", "get", "nobody"), "error: NOT_FOUND: user 'nobody' not found"),
        (("users", "disable", "nobody"), "error: NOT_FOUND: user 'nobody' not found"),
        (("users", "delete", "nobody"), "error: NOT_FOUND: user 'nobody' not found"),
        (("teams", "get", "nobody"), "error: NOT_FOUND: team 'nobody' not found"),
        (("teams", "add-member", "nobody", "alice"), "error: NOT_FOUND: team 'nobody' not found"),
        (("tokens", "create", "t", "--user", "nobody"), "error: NOT_FOUND: user 'nobody'"),
    ):  # fmt: skip
        result = ctl(cp, *command)
        assert result.returncode == 1, (command, result.stdout)
        assert result.stdout == "" and result.stderr.startswith(message), (command, result.stderr)
    assert admin_state(cp) == before
    usage = ctl(cp, "users", "update", "alice")  # --email is required
    assert usage.returncode == 2 and "--email" in usage.stderr


def mutations(alice: str, bob: str, laptop: str, ml: str) -> list[tuple[str, ...]]:
    """Each mutation command, in an order where each finds what it changes."""
    return [
        ("users", "create", alice, "--email", "alice@example.com"),
        ("users", "create", bob, "--disabled"),
        ("tokens", "create", laptop, "--user", alice),
        ("users", "disable", alice),
        ("users", "enable", alice),
        ("users", "update", bob, "--email", "bob@example.com"),
        ("teams", "create", ml),
        ("teams", "add-member", ml, alice),
        ("teams", "remove-member", ml, alice),
        ("teams", "delete", ml),
        ("users", "delete", alice),
    ]


def test_every_change_expects_a_revision_and_waits(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    alice, bob = unique("alice"), unique("bob")
    commands = mutations(alice, bob, unique("laptop"), unique("ml"))

    async def scenario() -> None:
        recording = RecordingSubscriber(
            [cp.address], "bridged", cp.secrets.bridged, subscriber_id="bridged-users-ctl"
        ).start()
        try:
            await recording.subscriber.wait_ready(15)
            for i, command in enumerate(commands):
                as_json = i % 2 == 0
                before = await asyncio.to_thread(admin_state, cp)
                current = before[0]
                stale = await asyncio.to_thread(
                    ctl, cp, *command, "--expect-revision", str(current - 1), "--wait"
                )
                assert stale.returncode == 1, (command, stale.stdout, stale.stderr)
                assert stale.stdout == "" and stale.stderr.startswith("error: ABORTED: "), command
                assert await asyncio.to_thread(admin_state, cp) == before, command

                flags = ["--expect-revision", str(current), "--wait", "--wait-timeout", "15"]
                made = await asyncio.to_thread(
                    ctl, cp, *command, *flags, *(["--json"] if as_json else [])
                )
                assert made.returncode == 0, (command, made.stderr)
                if as_json:
                    revision = json.loads(made.stdout)["revision"]
                else:
                    revision = printed_revision(made.stdout)
                    last = made.stdout.splitlines()[-1]
                    assert last == f"revision {revision} applied by every subscriber", command
                assert revision == current + 1, command
                assert recording.version >= revision, command
        finally:
            await recording.stop()

    asyncio.run(scenario())
    # What the changes left: bob, disabled, with his email; alice gone with her token.
    users = cp.admin.ListUsers(admin_pb2.ListUsersRequest()).users
    (left,) = [u for u in users if u.name in (alice, bob)]
    assert (left.name, left.enabled, left.email) == (bob, False, "bob@example.com")
