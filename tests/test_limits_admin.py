"""Limit sets through the Admin API: a scope names a live user, team or token; setting
merges into the scope's set, `clear` removes fields, every change is a revision with an
audit entry, and every bad input is refused naming its field with nothing written. Then
the sets and the spend they budget in bridged's snapshot (never proxyd's). SQLite and
PostgreSQL.

Tests on the module's shared controlplane use names of their own and never set the
default limit set (it applies to every identity): those that do have their own."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from aibridge.v1 import admin_pb2, snapshot_pb2
from common import scopes
from tests.governance_rows import add_spend, add_team, add_user
from tests.harness import Controlplane, RecordingSubscriber, refused, unique


def set_limits(cp: Controlplane, scope: str, **fields: Any) -> admin_pb2.LimitsResponse:
    for name in ("providers", "models"):
        if name in fields:
            fields[name] = admin_pb2.StringList(values=fields[name])
    return cp.admin.SetLimits(admin_pb2.SetLimitsRequest(scope=scope, **fields))


def listed(cp: Controlplane) -> dict[str, admin_pb2.Limits]:
    return {s.scope: s for s in cp.admin.ListLimits(admin_pb2.ListLimitsRequest()).limits}


def limits(message: admin_pb2.Limits) -> dict[str, Any]:
    """What a set holds, unset fields left out (as the audit log has it)."""
    out: dict[str, Any] = {}
    if message.per_member:
        out["per_member"] = True
    for name in ("requests_per_minute", "tokens_per_minute", "max_concurrent",
                 "monthly_budget_usd"):  # fmt: skip
        if message.HasField(name):
            out[name] = getattr(message, name)
    for name in ("providers", "models"):
        if getattr(message, name):
            out[name] = list(getattr(message, name))
    return out


def audit(cp: Controlplane, n: int) -> list[tuple[str, str, dict[str, Any]]]:
    entries = cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=n)).entries
    return [(e.action, e.target, json.loads(e.details)) for e in reversed(entries)]


def test_set_merges_clear_removes_and_each_change_is_audited(controlplane: Controlplane) -> None:
    cp = controlplane
    alice = add_user(cp, "alice")
    add_team(cp, "ml", (alice,))
    token = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="ci")).info
    for name in ("openai-b", "anthropic"):
        cp.admin.create_provider(name)
    start = cp.admin.revision()

    first = set_limits(cp, "default", requests_per_minute=60)
    assert first.revision == start + 1
    assert first.limits.scope == "default" and first.limits.HasField("updated_at")
    assert limits(first.limits) == {"requests_per_minute": 60}

    # Lists are deduplicated; providers sorted, model patterns kept in their order.
    made = set_limits(
        cp, "user:alice", tokens_per_minute=1000, monthly_budget_usd=12.5,
        providers=["openai-b", "anthropic", "openai-b"], models=["gpt-5*", "claude-*", "gpt-5*"],
    )  # fmt: skip
    assert made.limits.scope == "user:alice"
    assert limits(made.limits) == {
        "tokens_per_minute": 1000, "monthly_budget_usd": 12.5,
        "providers": ["anthropic", "openai-b"], "models": ["gpt-5*", "claude-*"],
    }  # fmt: skip

    # A field given replaces; the others stay. The user may be named by id too.
    merged = set_limits(cp, f"user:{alice}", requests_per_minute=10, max_concurrent=2)
    assert merged.limits.scope == "user:alice"
    assert limits(merged.limits) == limits(made.limits) | {
        "requests_per_minute": 10, "max_concurrent": 2,
    }  # fmt: skip
    cleared = set_limits(
        cp, "user:alice", clear=["tokens_per_minute", "providers"], monthly_budget_usd=0
    )
    assert limits(cleared.limits) == {
        "requests_per_minute": 10, "max_concurrent": 2, "monthly_budget_usd": 0.0,
        "models": ["gpt-5*", "claude-*"],
    }  # fmt: skip

    team = set_limits(cp, "team:ml", per_member=True, monthly_budget_usd=100)
    assert limits(team.limits) == {"per_member": True, "monthly_budget_usd": 100.0}
    assert set_limits(cp, "team:ml", per_member=False).limits.per_member is False
    assert set_limits(cp, "team:ml", per_member=True).limits.per_member is True
    assert limits(set_limits(cp, "team:ml", clear=["per_member"]).limits) == {
        "monthly_budget_usd": 100.0
    }
    by_id = set_limits(cp, f"token:{token.id}", max_concurrent=1)
    assert by_id.limits.scope == "token:ci"
    # A set with nothing left in it is still a set, until cleared.
    emptied = set_limits(cp, "token:ci", clear=["max_concurrent"])
    assert limits(emptied.limits) == {}

    listing = cp.admin.ListLimits(admin_pb2.ListLimitsRequest())
    assert listing.revision == emptied.revision == start + 10
    assert [s.scope for s in listing.limits] == ["default", "team:ml", "token:ci", "user:alice"]
    assert limits(listing.limits[3]) == limits(cleared.limits)

    gone = cp.admin.ClearLimits(admin_pb2.ClearLimitsRequest(scope="user:alice"))
    assert (gone.revision, gone.scope) == (start + 11, "user:alice")
    assert list(listed(cp)) == ["default", "team:ml", "token:ci"]

    assert audit(cp, 11)[:2] == [
        ("limits.set", "default",
         {"scope": "default", "before": None, "after": {"requests_per_minute": 60}}),
        ("limits.set", "user:alice",
         {"scope": "user:alice", "before": None, "after": limits(made.limits)}),
    ]  # fmt: skip
    assert audit(cp, 11)[3] == (
        "limits.set", "user:alice",
        {"scope": "user:alice", "before": limits(merged.limits), "after": limits(cleared.limits)},
    )  # fmt: skip
    assert audit(cp, 1) == [
        ("limits.clear", "user:alice", {"scope": "user:alice", "before": limits(cleared.limits)})
    ]

    # Revoking a token deletes its set with it.
    cp.admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref="ci"))
    assert list(listed(cp)) == ["default", "team:ml"]


def test_expected_revision_and_clearing_a_scope_without_a_set(
    shared_controlplane: Controlplane,
) -> None:
    cp = shared_controlplane
    alice = f"user:{unique('alice')}"
    add_user(cp, alice.removeprefix("user:"))
    start = cp.admin.revision()
    request = admin_pb2.SetLimitsRequest(
        scope=alice, requests_per_minute=5, expected_revision=start - 1
    )
    refused(cp, grpc.StatusCode.ABORTED, cp.admin.SetLimits, request)
    request.expected_revision = start
    assert cp.admin.SetLimits(request).revision == start + 1

    stale = admin_pb2.ClearLimitsRequest(scope=alice, expected_revision=start)
    refused(cp, grpc.StatusCode.ABORTED, cp.admin.ClearLimits, stale)
    assert alice in listed(cp)
    cp.admin.ClearLimits(admin_pb2.ClearLimitsRequest(scope=alice))
    for scope in (alice, "default"):
        details = refused(
            cp, grpc.StatusCode.NOT_FOUND, cp.admin.ClearLimits,
            admin_pb2.ClearLimitsRequest(scope=scope),
        )  # fmt: skip
        assert details == f"{scope} has no limit set"


@dataclass(frozen=True)
class Scoped:
    cp: Controlplane


@pytest.fixture(scope="module")
def scoped(shared_controlplane: Controlplane) -> Scoped:
    """A controlplane with user alice, team ml, token ci, a deleted user gone and a
    revoked token old: names the refusals below can (and cannot) resolve."""
    cp = shared_controlplane
    add_user(cp, "alice")
    add_user(cp, "gone", deleted=True)
    add_team(cp, "ml")
    cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="ci"))
    cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="old"))
    cp.admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref="old"))
    cp.admin.create_provider("openai")
    cp.admin.create_provider("retired")
    cp.admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref="retired"))
    return Scoped(cp)


MANY = [f"p{n}" for n in range(101)]


@pytest.mark.parametrize(
    ("scope", "fields", "field", "says"),
    [
        ("", {}, "scope", '"default", "user:NAME"'),
        ("alice", {}, "scope", '"default", "user:NAME"'),
        ("user:", {}, "scope", '"default", "user:NAME"'),
        ("group:ml", {}, "scope", '"default", "user:NAME"'),
        ("default:x", {}, "scope", '"default", "user:NAME"'),
        ("user:" + "a" * 300, {}, "scope", "is not a user's name or id"),
        ("user:alice", {"requests_per_minute": 0}, "requests_per_minute", "from 1 to"),
        ("user:alice", {"requests_per_minute": -1}, "requests_per_minute", "from 1 to"),
        ("user:alice", {"tokens_per_minute": 1_000_000_001}, "tokens_per_minute", "from 1 to"),
        ("user:alice", {"max_concurrent": 0}, "max_concurrent", "from 1 to"),
        ("user:alice", {"monthly_budget_usd": -0.01}, "monthly_budget_usd", "from 0 to"),
        ("user:alice", {"monthly_budget_usd": 1e9 + 1}, "monthly_budget_usd", "from 0 to"),
        ("user:alice", {"monthly_budget_usd": math.nan}, "monthly_budget_usd", "from 0 to"),
        ("user:alice", {"monthly_budget_usd": math.inf}, "monthly_budget_usd", "from 0 to"),
        ("user:alice", {"providers": ["OpenAI"]}, "providers", "lowercase letters"),
        ("user:alice", {"providers": [""]}, "providers", "is required"),
        ("user:alice", {"providers": MANY}, "providers", "at most 100"),
        ("user:alice", {"models": [""]}, "models", "is required"),
        ("user:alice", {"models": ["gpt 5"]}, "models", "without spaces"),
        ("user:alice", {"models": ["m" * 201]}, "models", "longer than 200"),
        ("user:alice", {"models": MANY}, "models", "at most 100"),
        ("user:alice", {"clear": ["rpm"]}, "clear", "'rpm' is not a limit"),
        ("user:alice", {"clear": ["max_concurrent"], "max_concurrent": 3}, "clear", "both"),
        ("user:alice", {"per_member": True}, "per_member", "only to a team's set"),
        ("default", {"per_member": True}, "per_member", "only to a team's set"),
        ("token:ci", {"per_member": True}, "per_member", "only to a team's set"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(
    scoped: Scoped, scope: str, fields: dict[str, Any], field: str, says: str
) -> None:
    cp = scoped.cp
    before = listed(cp)

    def call(request: tuple[str, dict[str, Any]]) -> object:
        return set_limits(cp, request[0], **dict(request[1]))

    details = refused(cp, grpc.StatusCode.INVALID_ARGUMENT, call, (scope, fields), field)
    assert says in details, details
    assert listed(cp) == before


@pytest.mark.parametrize(
    ("scope", "says"),
    [
        ("user:bob", "live user 'bob' not found"),
        ("user:gone", "live user 'gone' not found"),
        ("team:ops", "live team 'ops' not found"),
        ("token:nope", "live token 'nope' not found"),
        ("token:old", "live token 'old' not found"),
    ],
)
def test_a_scope_names_a_live_user_team_or_token(scoped: Scoped, scope: str, says: str) -> None:
    cp = scoped.cp
    for call, request in (
        (cp.admin.SetLimits, admin_pb2.SetLimitsRequest(scope=scope, requests_per_minute=1)),
        (cp.admin.ClearLimits, admin_pb2.ClearLimitsRequest(scope=scope)),
    ):
        assert refused(cp, grpc.StatusCode.NOT_FOUND, call, request) == says


@pytest.mark.parametrize(
    ("providers", "says"),
    [
        (["opnai"], "no provider named 'opnai'"),
        (["openai", "retired"], "no provider named 'retired'"),  # deleted
    ],
)
def test_an_allowlist_names_live_providers(scoped: Scoped, providers: list[str], says: str) -> None:
    cp = scoped.cp
    before = listed(cp)

    def call(names: list[str]) -> object:
        return set_limits(cp, "user:alice", providers=names)

    assert refused(cp, grpc.StatusCode.NOT_FOUND, call, providers) == says
    assert listed(cp) == before


def test_revoking_a_token_says_which_limit_set_went_with_it(
    shared_controlplane: Controlplane,
) -> None:
    cp = shared_controlplane
    ci, bare = unique("ci"), unique("bare")
    for name in (ci, bare):
        cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name=name))
    set_limits(cp, f"token:{ci}", max_concurrent=2, monthly_budget_usd=5)
    cp.admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref=ci))
    ((action, target, details),) = audit(cp, 1)
    assert (action, target.split()[0]) == ("token.revoke", ci)
    assert details == {"limit_set_deleted": {"max_concurrent": 2, "monthly_budget_usd": 5.0}}
    assert f"token:{ci}" not in listed(cp)
    cp.admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref=bare))
    assert audit(cp, 1)[0][2] == {}  # no set, nothing to say


def test_renaming_a_provider_rewrites_the_allowlists_naming_it(controlplane: Controlplane) -> None:
    cp = controlplane
    add_user(cp, "alice")
    cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="ci"))
    openai = cp.admin.create_provider("openai").provider
    cp.admin.create_provider("anthropic")
    set_limits(cp, "user:alice", providers=["openai", "anthropic"])
    set_limits(cp, "token:ci", providers=["openai"], max_concurrent=2)
    set_limits(cp, "default", providers=["anthropic"])
    start = cp.admin.revision()

    renamed = cp.admin.UpdateProvider(
        admin_pb2.UpdateProviderRequest(ref=openai.id, name="zz-openai")
    )
    assert renamed.revision == start + 1  # one mutation
    sets = listed(cp)
    assert list(sets["user:alice"].providers) == ["anthropic", "zz-openai"]
    assert list(sets["token:ci"].providers) == ["zz-openai"]
    assert list(sets["default"].providers) == ["anthropic"]
    ((action, _, details),) = audit(cp, 1)
    assert action == "provider.update"
    assert details["name"] == {"from": "openai", "to": "zz-openai"}
    assert details["limit_sets"] == ["token:ci", "user:alice"]
    # The new name is live: an allowlist may name it; the old one is gone.
    set_limits(cp, "token:ci", providers=["zz-openai"])
    refusal = refused(
        cp, grpc.StatusCode.NOT_FOUND,
        lambda names: set_limits(cp, "token:ci", providers=names), ["openai"],
    )  # fmt: skip
    assert refusal == "no provider named 'openai'"


@pytest.mark.parametrize("role", ["bridged", "proxyd"])
def test_only_the_admin_credential_may_read_or_set_limits(scoped: Scoped, role: str) -> None:
    cp = scoped.cp
    metadata = (("authorization", f"Bearer {getattr(cp.secrets, role)}"),)
    calls = [
        (cp.admin.stub.SetLimits, admin_pb2.SetLimitsRequest(scope="default", max_concurrent=1)),
        (cp.admin.stub.ListLimits, admin_pb2.ListLimitsRequest()),
        (cp.admin.stub.ClearLimits, admin_pb2.ClearLimitsRequest(scope="default")),
    ]
    for call, request in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call(request, metadata=metadata, timeout=15)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


# --- the snapshot --------------------------------------------------------------------------


def spend_of(recording: RecordingSubscriber) -> dict[str, tuple[str, float]]:
    return {s.key: (s.month, s.spent_usd) for s in recording.snapshot.governance.spend}


def test_limit_sets_and_budgeted_spend_reach_bridged_never_proxyd(
    controlplane: Controlplane,
) -> None:
    cp = controlplane
    alice, bob = add_user(cp, "alice"), add_user(cp, "bob")
    # An id with LIKE's wildcard "_" in it: the decoy below must not match its prefix.
    ml = add_team(cp, "ml", (alice,), team_id="team_ml")
    ops = add_team(cp, "ops", (alice, bob), team_id="team_ops")
    ci = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="ci")).info.id
    laptop = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="laptop", user="alice"))
    cp.admin.create_provider("openai")
    now = scopes.month()
    add_spend(cp, now, {
        scopes.user_key(alice): 5.0, scopes.user_key(bob): 1.0, scopes.token_key(ci): 2.0,
        scopes.token_key(laptop.info.id): 4.0, scopes.token_key("tok_unknown"): 1.0,
        scopes.team_key(ml): 3.0, scopes.team_key(ops): 7.0,
        scopes.member_key(ops, alice): 0.5, scopes.member_key(ops, bob): 0.25,
        scopes.member_key(ml, alice): 0.75, "member:teamXops:usr_x": 4.0,
        scopes.model_key("gpt-5"): 9.0, scopes.provider_key("prv_1"): 9.0,
    })  # fmt: skip
    add_spend(cp, "2001-01", {scopes.user_key(alice): 99.0})

    async def scenario() -> None:
        bridged = RecordingSubscriber([cp.address], "bridged", cp.secrets.bridged).start()
        proxyd = RecordingSubscriber([cp.address], "proxyd", cp.secrets.proxyd).start()
        try:
            set_limits(cp, "user:alice", monthly_budget_usd=10, models=["gpt-5*"])
            set_limits(cp, "team:ml", monthly_budget_usd=20, requests_per_minute=100)
            set_limits(cp, "team:ops", monthly_budget_usd=1, per_member=True)
            last = set_limits(cp, "token:ci", max_concurrent=3, providers=["openai"]).revision
            await bridged.wait_version(last)
            await proxyd.wait_version(last)
            governance = bridged.snapshot.governance
            assert list(governance.limit_sets) == [
                snapshot_pb2.LimitSet(
                    scope_kind="team", scope_id=ml, scope="team:ml", requests_per_minute=100,
                    monthly_budget_usd=20,
                ),
                snapshot_pb2.LimitSet(
                    scope_kind="team", scope_id=ops, scope="team:ops", per_member=True,
                    monthly_budget_usd=1,
                ),
                snapshot_pb2.LimitSet(
                    scope_kind="token", scope_id=ci, scope="token:ci", max_concurrent=3,
                    providers=["openai"],
                ),
                snapshot_pb2.LimitSet(
                    scope_kind="user", scope_id=alice, scope="user:alice", monthly_budget_usd=10,
                    models=["gpt-5*"],
                ),
            ]  # fmt: skip
            assert not governance.limit_sets[2].HasField("monthly_budget_usd")
            # Only this month's spend of the keys a budget applies to: alice's own, ml's
            # total, each ops member's; not bob's, ci's (no budget), ops's total (its
            # budget is per member), ml's members, models or providers.
            assert spend_of(bridged) == {
                scopes.user_key(alice): (now, 5.0),
                scopes.team_key(ml): (now, 3.0),
                scopes.member_key(ops, alice): (now, 0.5),
                scopes.member_key(ops, bob): (now, 0.25),
            }
            assert not proxyd.snapshot.HasField("governance")

            # A default budget applies to every identity: each user and each token without
            # one (alice's laptop counts under her; a token the database lacks, nowhere).
            last = set_limits(cp, "default", monthly_budget_usd=50).revision
            await bridged.wait_version(last)
            assert bridged.snapshot.governance.limit_sets[0] == snapshot_pb2.LimitSet(
                scope_kind="default", scope="default", monthly_budget_usd=50
            )
            assert spend_of(bridged) == {
                scopes.user_key(alice): (now, 5.0),
                scopes.user_key(bob): (now, 1.0),
                scopes.token_key(ci): (now, 2.0),
                scopes.team_key(ml): (now, 3.0),
                scopes.member_key(ops, alice): (now, 0.5),
                scopes.member_key(ops, bob): (now, 0.25),
            }
            # Without budgets, no spend is sent at all.
            for scope in ("default", "user:alice", "team:ml", "team:ops"):
                last = cp.admin.ClearLimits(admin_pb2.ClearLimitsRequest(scope=scope)).revision
            await bridged.wait_version(last)
            assert [s.scope for s in bridged.snapshot.governance.limit_sets] == ["token:ci"]
            assert spend_of(bridged) == {}
            assert not proxyd.snapshot.HasField("governance")
        finally:
            await bridged.stop()
            await proxyd.stop()

    asyncio.run(scenario())
