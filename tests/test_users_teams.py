"""Users and teams through the admin API, on SQLite and PostgreSQL: every change bumps the
revision and leaves an audit entry, bad input is refused naming its field, a user's
tokens follow the user (disabled: out of both data planes' verifiers; deleted: revoked),
and the snapshot carries users and teams to bridged. Then end to end: a user's token
through bridged and proxyd while the user is disabled, enabled and deleted.

Most tests share the module's controlplane (per database), each with users, teams,
tokens and providers of its own names, counting only those."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa

from aibridge.v1 import admin_pb2, snapshot_pb2
from common.tokens import token_digest
from controlplane.store.models import LimitSetRow
from mockupstream import MockUpstream
from tests import proxy_client
from tests.conftest import UpstreamPKI, proxyd_before_bridged
from tests.harness import (
    Bridged,
    Controlplane,
    Proxyd,
    RecordingSubscriber,
    finish_stream,
    refused,
    stream_in_background,
    unique,
)

KEY = "sk-users-provider-key-0001"


def create_user(cp: Controlplane, name: str, **fields: Any) -> admin_pb2.UserResponse:
    return cp.admin.CreateUser(admin_pb2.CreateUserRequest(name=name, **fields))


def create_token(cp: Controlplane, name: str, user: str = "") -> admin_pb2.CreateTokenResponse:
    return cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name=name, user=user))


def set_enabled(cp: Controlplane, user: str, enabled: bool) -> admin_pb2.UserResponse:
    return cp.admin.UpdateUser(admin_pb2.UpdateUserRequest(ref=user, enabled=enabled))


def member(cp: Controlplane, team: str, user: str, add: bool = True) -> admin_pb2.TeamResponse:
    call = cp.admin.AddTeamMember if add else cp.admin.RemoveTeamMember
    return call(admin_pb2.TeamMemberRequest(team=team, user=user))


def last_audit(cp: Controlplane) -> admin_pb2.AuditEntry:
    return cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=1)).entries[0]


def users_by_name(cp: Controlplane) -> dict[str, admin_pb2.User]:
    return {u.name: u for u in cp.admin.ListUsers(admin_pb2.ListUsersRequest()).users}


def tokens_by_name(cp: Controlplane) -> dict[str, admin_pb2.Token]:
    request = admin_pb2.ListTokensRequest(include_revoked=True)
    return {t.name: t for t in cp.admin.ListTokens(request).tokens}


@contextlib.contextmanager
def engine_of(cp: Controlplane) -> Iterator[sa.Engine]:
    engine = sa.create_engine(cp.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def add_limit_set(cp: Controlplane, kind: str, scope_id: str) -> None:
    """A limit set row, as SetLimits would store it (the table is the contract's)."""
    with engine_of(cp) as engine, engine.begin() as conn:
        conn.execute(
            sa.insert(LimitSetRow).values(
                scope_kind=kind, scope_id=scope_id, per_member=False, requests_per_minute=5,
                providers="[]", models="[]", updated_at=datetime.now(UTC),
            )
        )  # fmt: skip


def limit_sets(cp: Controlplane) -> set[tuple[str, str]]:
    with engine_of(cp) as engine, engine.connect() as conn:
        rows = conn.execute(sa.select(LimitSetRow.scope_kind, LimitSetRow.scope_id))
        return {(kind, scope_id) for kind, scope_id in rows}


# CRUD


def test_a_user_is_created_read_changed_and_audited(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    admin = cp.admin
    alice, bob = unique("alice"), unique("bob")
    start = admin.revision()

    created = create_user(cp, alice, email="alice@example.com")
    user = created.user
    assert created.revision == start + 1
    assert user.id.startswith("usr_") and len(user.id) == len("usr_") + 16
    assert (user.name, user.email, user.enabled, list(user.teams), user.tokens) == (
        alice, "alice@example.com", True, [], 0,
    )  # fmt: skip
    assert user.HasField("created_at") and user.HasField("updated_at")
    entry = last_audit(cp)
    assert (entry.action, entry.target, entry.revision) == (
        "user.create", f"{alice} ({user.id})", created.revision,
    )  # fmt: skip
    assert entry.actor.startswith("tester ")
    assert json.loads(entry.details) == {
        "name": alice, "email": "alice@example.com", "enabled": True,
    }  # fmt: skip

    disabled_bob = create_user(cp, bob, disabled=True)
    assert not disabled_bob.user.enabled and disabled_bob.user.email == ""
    assert admin.GetUser(admin_pb2.GetUserRequest(ref=alice)) == user
    assert admin.GetUser(admin_pb2.GetUserRequest(ref=user.id)) == user
    listing = admin.ListUsers(admin_pb2.ListUsersRequest())
    assert listing.revision == disabled_bob.revision
    assert [u.name for u in listing.users if u.name in (alice, bob)] == [alice, bob]

    email = admin.UpdateUser(admin_pb2.UpdateUserRequest(ref=alice, email="a@corp.example"))
    assert email.revision == disabled_bob.revision + 1 and email.user.email == "a@corp.example"
    assert (last_audit(cp).action, json.loads(last_audit(cp).details)) == (
        "user.update", {"email": {"from": "alice@example.com", "to": "a@corp.example"}},
    )  # fmt: skip
    removed = admin.UpdateUser(admin_pb2.UpdateUserRequest(ref=user.id, email=""))
    assert removed.user.email == ""

    disabled = set_enabled(cp, alice, False)
    assert disabled.revision == removed.revision + 1 and not disabled.user.enabled
    assert last_audit(cp).action == "user.disable"
    assert json.loads(last_audit(cp).details) == {"enabled": {"from": True, "to": False}}
    enabled = set_enabled(cp, alice, True)
    assert enabled.user.enabled and last_audit(cp).action == "user.enable"
    assert users_by_name(cp)[alice].enabled


def test_teams_and_their_members(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    admin = cp.admin
    # Names that sort as the plain ones do: alice-…, bob-…, carol-…; infra-…, ml-….
    alice, bob, carol = unique("alice"), unique("bob"), unique("carol")
    for name in (carol, alice, bob):
        create_user(cp, name)
    ml_name, infra_name = unique("ml"), unique("infra")
    ml = admin.CreateTeam(admin_pb2.CreateTeamRequest(name=ml_name))
    assert ml.team.id.startswith("team_") and len(ml.team.id) == len("team_") + 16
    assert last_audit(cp).action == "team.create"
    infra = admin.CreateTeam(admin_pb2.CreateTeamRequest(name=infra_name))

    for user in (carol, alice):
        added = member(cp, ml_name, user)
        entry = last_audit(cp)
        assert (entry.action, entry.revision) == ("team.add_member", added.revision)
    by_id = member(cp, ml.team.id, users_by_name(cp)[bob].id)
    assert list(by_id.team.members) == [alice, bob, carol]  # sorted
    member(cp, infra_name, alice)

    assert list(users_by_name(cp)[alice].teams) == [infra_name, ml_name]
    got = admin.GetTeam(admin_pb2.GetTeamRequest(ref=ml_name))
    assert got == admin.GetTeam(admin_pb2.GetTeamRequest(ref=ml.team.id)) == by_id.team
    teams = admin.ListTeams(admin_pb2.ListTeamsRequest())
    assert [(t.name, list(t.members)) for t in teams.teams if t.name in (ml_name, infra_name)] == [
        (infra_name, [alice]), (ml_name, [alice, bob, carol]),
    ]  # fmt: skip

    removed = member(cp, ml_name, bob, add=False)
    assert list(removed.team.members) == [alice, carol]
    assert last_audit(cp).action == "team.remove_member"
    assert list(users_by_name(cp)[bob].teams) == []

    add_limit_set(cp, "team", infra.team.id)
    deleted = admin.DeleteTeam(admin_pb2.DeleteTeamRequest(ref=infra_name))
    assert (deleted.id, deleted.name) == (infra.team.id, infra_name)
    entry = last_audit(cp)
    assert (entry.action, entry.revision) == ("team.delete", deleted.revision)
    assert json.loads(entry.details) == {"members": [alice], "limit_set_deleted": True}
    assert list(users_by_name(cp)[alice].teams) == [ml_name]
    assert ("team", infra.team.id) not in limit_sets(cp)
    refused(
        cp, grpc.StatusCode.NOT_FOUND, admin.GetTeam, admin_pb2.GetTeamRequest(ref=infra.team.id)
    )
    # Its name is free again, for a team with no members.
    again = admin.CreateTeam(admin_pb2.CreateTeamRequest(name=infra_name))
    assert again.team.id != infra.team.id and list(again.team.members) == []


def test_deleting_a_user_revokes_their_tokens_and_removes_memberships_and_limits(
    controlplane: Controlplane,
) -> None:
    """(A controlplane of its own: it sets the default limit set, which applies to all.)"""
    cp = controlplane
    admin = cp.admin
    alice = create_user(cp, "alice").user
    create_user(cp, "bob")
    admin.CreateTeam(admin_pb2.CreateTeamRequest(name="ml"))
    member(cp, "ml", "alice")
    member(cp, "ml", "bob")
    laptop = create_token(cp, "laptop", "alice")
    ci = create_token(cp, "ci", alice.id)
    old = create_token(cp, "old", "alice")
    admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref="old"))
    create_token(cp, "bobs", "bob")
    create_token(cp, "shared")
    add_limit_set(cp, "user", alice.id)
    add_limit_set(cp, "token", ci.info.id)
    add_limit_set(cp, "default", "")

    assert laptop.info.user == "alice" and laptop.info.user_id == alice.id
    assert users_by_name(cp)["alice"].tokens == 2
    old_revoked_at = tokens_by_name(cp)["old"].revoked_at

    deleted = admin.DeleteUser(admin_pb2.DeleteUserRequest(ref="alice"))
    assert (deleted.id, deleted.name, deleted.revoked_tokens) == (alice.id, "alice", 2)
    entry = last_audit(cp)
    assert (entry.action, entry.revision) == ("user.delete", deleted.revision)
    details = json.loads(entry.details)
    assert details["revoked_tokens"] == 2 and details["teams"] == ["ml"]
    assert details["limit_sets_deleted"] == 2

    tokens = tokens_by_name(cp)
    assert tokens["laptop"].HasField("revoked_at") and tokens["ci"].HasField("revoked_at")
    # A token revoked before keeps its revocation time; all name the (deleted) user still.
    assert tokens["old"].revoked_at == old_revoked_at and old.info.user == "alice"
    assert (tokens["laptop"].user, tokens["laptop"].user_id) == ("alice", alice.id)
    assert not tokens["bobs"].HasField("revoked_at") and tokens["bobs"].user == "bob"
    assert not tokens["shared"].HasField("revoked_at") and tokens["shared"].user == ""
    assert list(admin.GetTeam(admin_pb2.GetTeamRequest(ref="ml")).members) == ["bob"]
    assert limit_sets(cp) == {("default", "")}
    assert set(users_by_name(cp)) == {"bob"}
    for call, request in (
        (admin.GetUser, admin_pb2.GetUserRequest(ref=alice.id)),
        (admin.DeleteUser, admin_pb2.DeleteUserRequest(ref="alice")),
        (admin.CreateToken, admin_pb2.CreateTokenRequest(name="late", user=alice.id)),
    ):
        refused(cp, grpc.StatusCode.NOT_FOUND, call, request)
    # The name is free again: a new user, with no tokens of the old one.
    again = create_user(cp, "alice").user
    assert again.id != alice.id and again.tokens == 0 and list(again.teams) == []


# Refusals


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "Alice"}, "name"),
        ({"name": "a_b"}, "name"),
        ({"name": "x" * 64}, "name"),
        ({"email": "no-at-sign"}, "email"),
        ({"email": "two@at@example.com"}, "email"),
        ({"email": "@example.com"}, "email"),
        ({"email": "alice@"}, "email"),
        ({"email": "al ice@example.com"}, "email"),
        ({"email": "alice@example.com\n"}, "email"),
        ({"email": "a\x07@example.com"}, "email"),
        ({"email": "a@" + "e" * 250 + ".com"}, "email"),
    ],
)
def test_create_user_validation(
    shared_controlplane: Controlplane, fields: dict[str, Any], field: str
) -> None:
    request = admin_pb2.CreateUserRequest(**({"name": "ok"} | fields))
    details = refused(
        shared_controlplane, grpc.StatusCode.INVALID_ARGUMENT,
        shared_controlplane.admin.CreateUser, request, field,
    )  # fmt: skip
    assert "\n" not in details and "\x07" not in details


@pytest.mark.parametrize(
    ("method", "request_", "code", "field"),
    [
        ("UpdateUser", admin_pb2.UpdateUserRequest(ref="x"), "INVALID_ARGUMENT", "update"),
        ("UpdateUser", admin_pb2.UpdateUserRequest(ref="x", email="x"), "INVALID_ARGUMENT",
         "email"),
        ("UpdateUser", admin_pb2.UpdateUserRequest(ref="", enabled=True), "INVALID_ARGUMENT",
         "ref"),
        ("UpdateUser", admin_pb2.UpdateUserRequest(ref="nobody", enabled=False), "NOT_FOUND", ""),
        ("GetUser", admin_pb2.GetUserRequest(ref="usr_0000000000000000"), "NOT_FOUND", ""),
        ("GetUser", admin_pb2.GetUserRequest(ref="x" * 201), "INVALID_ARGUMENT", "ref"),
        ("DeleteUser", admin_pb2.DeleteUserRequest(ref="nobody"), "NOT_FOUND", ""),
        ("CreateTeam", admin_pb2.CreateTeamRequest(name="Bad Team"), "INVALID_ARGUMENT", "name"),
        ("GetTeam", admin_pb2.GetTeamRequest(ref="nobody"), "NOT_FOUND", ""),
        ("DeleteTeam", admin_pb2.DeleteTeamRequest(ref="team_0000000000000000"), "NOT_FOUND", ""),
        ("AddTeamMember", admin_pb2.TeamMemberRequest(team="", user="x"), "INVALID_ARGUMENT",
         "team"),
        ("AddTeamMember", admin_pb2.TeamMemberRequest(team="x", user=""), "INVALID_ARGUMENT",
         "user"),
        ("AddTeamMember", admin_pb2.TeamMemberRequest(team="nobody", user="x"), "NOT_FOUND", ""),
        ("RemoveTeamMember", admin_pb2.TeamMemberRequest(team="nobody", user="x"), "NOT_FOUND",
         ""),
        ("CreateToken", admin_pb2.CreateTokenRequest(name="t", user="nobody"), "NOT_FOUND", ""),
        ("CreateToken", admin_pb2.CreateTokenRequest(name="t", user="\x00"), "INVALID_ARGUMENT",
         "user"),
    ],
)  # fmt: skip
def test_refused_requests_change_nothing(
    shared_controlplane: Controlplane, method: str, request_: Any, code: str, field: str
) -> None:
    cp = shared_controlplane
    refused(cp, grpc.StatusCode[code], getattr(cp.admin, method), request_, field)


def test_names_are_unique_and_memberships_single(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    admin = cp.admin
    alice_name, bob, ml = unique("alice"), unique("bob"), unique("ml")
    alice = create_user(cp, alice_name)
    create_user(cp, bob)
    admin.CreateTeam(admin_pb2.CreateTeamRequest(name=ml))
    details = refused(
        cp, grpc.StatusCode.ALREADY_EXISTS, admin.CreateUser,
        admin_pb2.CreateUserRequest(name=alice_name),
    )  # fmt: skip
    assert alice.user.id in details
    refused(
        cp, grpc.StatusCode.ALREADY_EXISTS, admin.CreateTeam,
        admin_pb2.CreateTeamRequest(name=ml),
    )  # fmt: skip
    member(cp, ml, alice_name)
    details = refused(
        cp, grpc.StatusCode.ALREADY_EXISTS, admin.AddTeamMember,
        admin_pb2.TeamMemberRequest(team=ml, user=alice.user.id),
    )  # fmt: skip
    assert details == f"user '{alice_name}' is already a member of team '{ml}'"
    details = refused(
        cp, grpc.StatusCode.NOT_FOUND, admin.RemoveTeamMember,
        admin_pb2.TeamMemberRequest(team=ml, user=bob),
    )  # fmt: skip
    assert details == f"user '{bob}' is not a member of team '{ml}'"
    refused(
        cp, grpc.StatusCode.NOT_FOUND, admin.AddTeamMember,
        admin_pb2.TeamMemberRequest(team=ml, user=unique("nobody")),
    )  # fmt: skip


def test_expected_revision_guards_every_change(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    admin = cp.admin
    alice, ml = unique("alice"), unique("ml")
    create_user(cp, alice)
    team = admin.CreateTeam(admin_pb2.CreateTeamRequest(name=ml))
    stale = team.revision - 1
    for call, request in (
        (admin.CreateUser, admin_pb2.CreateUserRequest(
            name=unique("bob"), expected_revision=stale)),
        (admin.UpdateUser, admin_pb2.UpdateUserRequest(
            ref=alice, enabled=False, expected_revision=stale)),
        (admin.DeleteUser, admin_pb2.DeleteUserRequest(ref=alice, expected_revision=stale)),
        (admin.CreateTeam, admin_pb2.CreateTeamRequest(name=unique("x"), expected_revision=stale)),
        (admin.DeleteTeam, admin_pb2.DeleteTeamRequest(ref=ml, expected_revision=stale)),
        (admin.AddTeamMember, admin_pb2.TeamMemberRequest(
            team=ml, user=alice, expected_revision=stale)),
        (admin.RemoveTeamMember, admin_pb2.TeamMemberRequest(
            team=ml, user=alice, expected_revision=stale)),
    ):  # fmt: skip
        refused(cp, grpc.StatusCode.ABORTED, call, request)
    current = admin.AddTeamMember(
        admin_pb2.TeamMemberRequest(team=ml, user=alice, expected_revision=team.revision)
    )
    assert current.revision == team.revision + 1


# The snapshot


def test_snapshots_leave_out_a_disabled_users_tokens_and_carry_users_and_teams(
    shared_controlplane: Controlplane,
) -> None:
    cp = shared_controlplane
    admin = cp.admin
    alice_name, bob_name = unique("alice"), unique("bob")
    ml_name, ai_name = unique("ml"), unique("ai")
    a, own_name, later_name = unique("a"), unique("own"), unique("later")

    async def scenario() -> None:
        bridged = RecordingSubscriber(
            [cp.address], "bridged", cp.secrets.bridged, subscriber_id="bridged-users"
        ).start()
        proxyd = RecordingSubscriber(
            [cp.address], "proxyd", cp.secrets.proxyd, subscriber_id="proxyd-users"
        ).start()

        async def applied(response: Any) -> None:
            await bridged.wait_version(response.revision)
            await proxyd.wait_version(response.revision)

        def verifiers(recording: RecordingSubscriber) -> dict[str, tuple[str, str]]:
            """The verifiers of this test's tokens."""
            mine = (a, own_name, later_name)
            return {
                t.sha256: (t.name, t.user_id) for t in recording.snapshot.tokens if t.name in mine
            }

        def users(recording: RecordingSubscriber) -> list[snapshot_pb2.SnapshotUser]:
            """This test's users, in the snapshot's order."""
            found = recording.snapshot.governance.users
            return [u for u in found if u.name in (alice_name, bob_name)]

        def teams(recording: RecordingSubscriber) -> dict[str, str]:
            """This test's teams: id → name."""
            found = recording.snapshot.governance.teams
            return {t.id: t.name for t in found if t.name in (ml_name, ai_name)}

        def call(method: Any, request: Any) -> Any:
            return asyncio.to_thread(method, request)

        try:
            alice = (
                await call(admin.CreateUser, admin_pb2.CreateUserRequest(name=alice_name))
            ).user
            bob = (await call(admin.CreateUser, admin_pb2.CreateUserRequest(name=bob_name))).user
            ml = (await call(admin.CreateTeam, admin_pb2.CreateTeamRequest(name=ml_name))).team
            ai = (await call(admin.CreateTeam, admin_pb2.CreateTeamRequest(name=ai_name))).team
            for team in (ml_name, ai_name):
                await call(
                    admin.AddTeamMember, admin_pb2.TeamMemberRequest(team=team, user=alice_name)
                )
            mine = await call(
                admin.CreateToken, admin_pb2.CreateTokenRequest(name=a, user=alice_name)
            )
            own = await call(admin.CreateToken, admin_pb2.CreateTokenRequest(name=own_name))
            await applied(own)
            everyone = {
                token_digest(mine.token): (a, alice.id),
                token_digest(own.token): (own_name, ""),
            }
            assert verifiers(bridged) == verifiers(proxyd) == everyone
            assert [(u.name, list(u.team_ids)) for u in users(bridged)] == sorted(
                [(alice_name, sorted([ml.id, ai.id])), (bob_name, [])],
                key=lambda u: {alice_name: alice.id, bob_name: bob.id}[u[0]],
            )
            assert teams(bridged) == {ml.id: ml_name, ai.id: ai_name}
            assert not proxyd.snapshot.HasField("governance")

            disabled = await call(
                admin.UpdateUser, admin_pb2.UpdateUserRequest(ref=alice_name, enabled=False)
            )
            await applied(disabled)
            only_own = {token_digest(own.token): (own_name, "")}
            assert verifiers(bridged) == verifiers(proxyd) == only_own
            assert [u.name for u in users(bridged)] == [bob_name]

            # A token made for a disabled user is allowed, and refused like the others.
            later = await call(admin.CreateToken, admin_pb2.CreateTokenRequest(
                name=later_name, user=alice.id))  # fmt: skip
            assert later.info.user_id == alice.id
            await applied(later)
            assert token_digest(later.token) not in verifiers(bridged)
            assert token_digest(later.token) not in verifiers(proxyd)

            enabled = await call(
                admin.UpdateUser, admin_pb2.UpdateUserRequest(ref=alice_name, enabled=True)
            )
            await applied(enabled)
            back = everyone | {token_digest(later.token): (later_name, alice.id)}
            assert verifiers(bridged) == verifiers(proxyd) == back

            gone = await call(admin.DeleteTeam, admin_pb2.DeleteTeamRequest(ref=ml_name))
            await applied(gone)
            assert teams(bridged) == {ai.id: ai_name}
            assert {u.name: list(u.team_ids) for u in users(bridged)}[alice_name] == [ai.id]

            deleted = await call(admin.DeleteUser, admin_pb2.DeleteUserRequest(ref=alice_name))
            await applied(deleted)
            assert verifiers(bridged) == verifiers(proxyd) == only_own
            assert [u.name for u in users(bridged)] == [bob_name]
        finally:
            await bridged.stop()
            await proxyd.stop()

    asyncio.run(scenario())


# End to end


def chat(bridged: Bridged, provider: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{bridged.provider_url(provider)}/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def served(response: httpx.Response) -> bool:
    assert response.status_code in (200, 401), response.text
    if response.status_code == 401:
        assert response.json()["error"]["code"] == "invalid_token", response.text
        return False
    assert response.json()["choices"][0]["message"]["content"] == "hello from A"
    return True


def through_proxyd(proxyd: Proxyd, upstream: MockUpstream, token: str) -> int:
    """A chat through proxyd as HTTPS_PROXY; the CONNECT's status when it refuses one."""
    target = f"localhost:{upstream.port}"
    status, sock = proxy_client.connect(proxyd.port, target, token)
    sock.close()
    if status != 200:
        return status
    trust = ssl.create_default_context(cafile=str(proxyd.ca_path))
    with httpx.Client(proxy=proxyd.proxy_url(token), verify=trust, timeout=30) as client:
        response = client.post(
            f"https://{target}/v1/chat/completions",
            json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.json()["choices"][0]["message"]["content"] == "hello from A"
    return response.status_code


def test_a_users_token_through_bridged_and_proxyd_follows_the_user(
    shared_controlplane: Controlplane, tmp_path: Path, pki: UpstreamPKI,
    tls_upstream_a: MockUpstream,
) -> None:  # fmt: skip
    cp = shared_controlplane
    with proxyd_before_bridged(cp, tmp_path, cp.secrets, pki) as (bridged, proxyd):
        follow_the_user(cp, bridged, proxyd, tls_upstream_a)


def follow_the_user(
    cp: Controlplane, bridged: Bridged, proxyd: Proxyd, upstream: MockUpstream
) -> None:
    admin = cp.admin
    llm, alice, laptop = unique("llm"), unique("alice"), unique("alice-laptop")
    admin.create_provider(llm, f"https://localhost:{upstream.port}/v1", keys=[KEY])
    create_user(cp, alice)
    token = create_token(cp, laptop, alice)
    other = create_token(cp, unique("service"))
    admin.wait_applied(other.revision)

    assert served(chat(bridged, llm, token.token)) and served(chat(bridged, llm, other.token))
    assert through_proxyd(proxyd, upstream, token.token) == 200

    admin.wait_applied(set_enabled(cp, alice, False).revision)
    assert not served(chat(bridged, llm, token.token))
    assert through_proxyd(proxyd, upstream, token.token) == 407
    assert served(chat(bridged, llm, other.token))  # nobody else's
    assert through_proxyd(proxyd, upstream, other.token) == 200

    admin.wait_applied(set_enabled(cp, alice, True).revision)
    assert served(chat(bridged, llm, token.token))
    assert through_proxyd(proxyd, upstream, token.token) == 200

    deleted = admin.DeleteUser(admin_pb2.DeleteUserRequest(ref=alice))
    assert deleted.revoked_tokens == 1
    admin.wait_applied(deleted.revision)
    assert not served(chat(bridged, llm, token.token))
    assert through_proxyd(proxyd, upstream, token.token) == 407
    assert tokens_by_name(cp)[laptop].HasField("revoked_at")
    # The upstream saw the provider's key, never a gateway token.
    for seen in upstream.seen:
        assert seen.key == KEY and token.token not in repr(seen.headers)


def test_a_user_disabled_mid_stream_finishes_it_and_is_refused_next(
    shared_controlplane: Controlplane, shared_bridged: Bridged, upstream_a: MockUpstream
) -> None:
    cp, bridged = shared_controlplane, shared_bridged
    admin = cp.admin
    llm, alice = unique("llm"), unique("alice")
    admin.create_provider(llm, upstream_a.url + "/v1", keys=[KEY])
    create_user(cp, alice)
    token = create_token(cp, unique("alice-laptop"), alice)
    admin.wait_applied(token.revision)

    upstream_a.hold = threading.Event()
    thread, result, first_chunk = stream_in_background(bridged, llm, token.token)
    try:
        assert first_chunk.wait(30), "the stream did not start"
        admin.wait_applied(set_enabled(cp, alice, False).revision)
        assert not served(chat(bridged, llm, token.token))
    finally:
        upstream_a.hold.set()
    finish_stream(thread, result)
    assert not served(chat(bridged, llm, token.token))
