"""bridged's governance policy (bridged/governance.py), from snapshots made here: which
sets apply to a caller, how they merge, and what each check answers."""

from __future__ import annotations

import calendar

from aibridge.v1 import snapshot_pb2
from bridged.governance import CLOSED, NO_LIMITS, OPEN, Check, Governance
from bridged.routes import RouteBuilder
from common.tokens import Caller

ALICE = snapshot_pb2.SnapshotUser(id="usr_a", name="alice", team_ids=["tm_ml", "tm_web"])
BOB = snapshot_pb2.SnapshotUser(id="usr_b", name="bob", team_ids=["tm_ml"])
ALICE_LAPTOP = Caller("tok_1", "alice-laptop", 0, "usr_a")
BOB_CI = Caller("tok_2", "bob-ci", 0, "usr_b")
SHARED = Caller("tok_3", "shared", 0)  # a token of its own
DEC_2026 = calendar.timegm((2026, 12, 15, 12, 0, 0, 0, 0, 0))
JAN_2027 = calendar.timegm((2027, 1, 2, 0, 0, 0, 0, 0, 0))


def limit_set(scope: str, **fields: object) -> snapshot_pb2.LimitSet:
    kind, _, name = scope.partition(":")
    ids = {"alice": "usr_a", "bob": "usr_b", "ml": "tm_ml", "web": "tm_web", "shared": "tok_3"}
    return snapshot_pb2.LimitSet(
        scope_kind=kind,
        scope_id=ids.get(name, ""),
        scope=scope,
        **fields,  # type: ignore[arg-type]
    )


def governance(*sets: snapshot_pb2.LimitSet, spend: dict[str, float] | None = None,
               month: str = "2026-12") -> Governance:  # fmt: skip
    return Governance(
        snapshot_pb2.Governance(
            users=[ALICE, BOB],
            teams=[snapshot_pb2.SnapshotTeam(id="tm_ml", name="ml")],
            limit_sets=sets,
            spend=[
                snapshot_pb2.ScopeSpend(key=k, month=month, spent_usd=v)
                for k, v in (spend or {}).items()
            ],
        )
    )


def test_no_sets_means_nothing_to_check() -> None:
    g = governance()
    assert not g.active
    assert g.limits(ALICE_LAPTOP) is NO_LIMITS
    assert g.user_name("usr_a") == "alice" and g.user_name("") == ""


def test_a_team_token_is_held_to_its_users_budget_too_the_stricter_wins() -> None:
    g = governance(
        limit_set("team:ml", monthly_budget_usd=500.0),
        limit_set("user:alice", monthly_budget_usd=10.0),
        spend={"team:tm_ml": 40.0, "user:usr_a": 10.03},
    )
    alice = g.limits(ALICE_LAPTOP)
    assert [(b.scope, b.key, b.usd) for b in alice.budgets] == [
        ("team:ml", "team:tm_ml", 500.0), ("user:alice", "user:usr_a", 10.0),
    ]  # fmt: skip
    assert g.budget_refusal(alice, DEC_2026) == (
        "the monthly budget of user:alice ($10.00) is spent ($10.03 in 2026-12); "
        "it resets at 2027-01-01T00:00:00Z"
    )
    # Bob is in the same team, under its budget, with none of his own.
    assert g.budget_refusal(g.limits(BOB_CI), DEC_2026) is None


def test_spend_of_another_month_counts_as_nothing() -> None:
    g = governance(limit_set("user:alice", monthly_budget_usd=10.0), spend={"user:usr_a": 12.0})
    alice = g.limits(ALICE_LAPTOP)
    assert g.spent("user:usr_a", DEC_2026) == 12.0
    assert g.budget_refusal(alice, DEC_2026) is not None
    assert g.spent("user:usr_a", JAN_2027) == 0.0  # December's spend, read in January
    assert g.budget_refusal(alice, JAN_2027) is None
    # A budget of 0 allows nothing, spend or not.
    zero = governance(limit_set("user:alice", monthly_budget_usd=0.0))
    assert "($0.00 in 2027-01)" in (zero.budget_refusal(zero.limits(ALICE_LAPTOP), JAN_2027) or "")


def test_per_member_and_total_team_sets_count_under_their_own_keys() -> None:
    g = governance(
        limit_set("team:ml", requests_per_minute=100),
        limit_set("team:web", per_member=True, requests_per_minute=5),
    )
    assert g.limits(ALICE_LAPTOP).checks == (
        Check("team:tm_ml", rpm=100, rpm_scope="team:ml"),
        Check("member:tm_web:usr_a", rpm=5, rpm_scope="team:web"),
    )
    assert g.limits(BOB_CI).checks == (Check("team:tm_ml", rpm=100, rpm_scope="team:ml"),)
    assert g.limits(SHARED).checks == ()  # no user, no team


def test_the_default_set_applies_to_each_identity_and_shares_the_users_key() -> None:
    g = governance(
        limit_set("default", requests_per_minute=60, max_concurrent=4, tokens_per_minute=1000),
        limit_set("user:alice", requests_per_minute=10, tokens_per_minute=5000),
        limit_set("token:shared", max_concurrent=2),
    )
    # Alice: default and her own set share user:usr_a; each limit is the smaller one, with
    # the scope that gives it.
    assert g.limits(ALICE_LAPTOP).checks == (
        Check("user:usr_a", rpm=10, tpm=1000, concurrent=4, rpm_scope="user:alice",
              tpm_scope="default (user:alice)", concurrent_scope="default (user:alice)"),
    )  # fmt: skip
    assert g.limits(BOB_CI).checks == (
        Check("user:usr_b", rpm=60, tpm=1000, concurrent=4, rpm_scope="default (user:bob)",
              tpm_scope="default (user:bob)", concurrent_scope="default (user:bob)"),
    )  # fmt: skip
    # A token without a user is its own identity: its default key is the token's, which its
    # own set shares.
    assert g.limits(SHARED).checks == (
        Check("token:tok_3", rpm=60, tpm=1000, concurrent=2, rpm_scope="default (token:shared)",
              tpm_scope="default (token:shared)", concurrent_scope="token:shared"),
    )  # fmt: skip


def test_every_allowlist_must_admit_the_provider_and_the_model() -> None:
    g = governance(
        limit_set("team:ml", models=["gpt-5*", "claude-*"]),
        limit_set("user:alice", providers=["openai", "anthropic"], models=["gpt-5-mini*"]),
    )
    alice, bob = g.limits(ALICE_LAPTOP), g.limits(BOB_CI)
    assert g.provider_refusal(alice, "openai") is None
    assert g.provider_refusal(alice, "openai-eu") == (
        "provider 'openai-eu' is not allowed for user:alice (allowed: openai, anthropic)"
    )
    assert g.provider_refusal(bob, "openai-eu") is None
    assert g.model_refusal(bob, "gpt-4o") == (
        "model 'gpt-4o' is not allowed for team:ml (allowed: gpt-5*, claude-*)"
    )
    assert g.model_refusal(bob, "claude-sonnet-4-5") is None
    assert g.model_refusal(bob, "Claude-sonnet-4-5") is not None  # case-sensitive
    assert g.model_refusal(alice, "gpt-5-mini-2025-08-07") is None
    assert g.model_refusal(alice, "gpt-5") == (  # the team's list admits it, hers does not
        "model 'gpt-5' is not allowed for user:alice (allowed: gpt-5-mini*)"
    )
    assert g.model_refusal(alice, "") == (
        "a request without a model is not allowed for team:ml (allowed: gpt-5*, claude-*)"
    )
    assert g.model_refusal(g.limits(SHARED), "") is None  # no list applies to it


def test_limits_are_merged_once_per_token_and_snapshot() -> None:
    g = governance(limit_set("default", requests_per_minute=1))
    assert g.limits(ALICE_LAPTOP) is g.limits(ALICE_LAPTOP)
    assert g.limits(ALICE_LAPTOP) is not g.limits(BOB_CI)


def test_the_route_table_carries_the_policy_and_the_redis_setting() -> None:
    snapshot = snapshot_pb2.ProviderSnapshot(
        version=7,
        settings=snapshot_pb2.GatewaySettings(limits_redis_unavailable="closed"),
        governance=snapshot_pb2.Governance(
            users=[ALICE], limit_sets=[limit_set("default", max_concurrent=1)]
        ),
        tokens=[snapshot_pb2.TokenVerifier(id="tok_1", name="a", sha256="0" * 64, user_id="usr_a")],
    )
    table, _ = RouteBuilder().build(snapshot)
    assert table.governance.active and table.governance.redis_unavailable == CLOSED
    assert table.governance.user_name("usr_a") == "alice"
    # An older controlplane's snapshot: nothing set, Redis trouble admits.
    old, _ = RouteBuilder().build(snapshot_pb2.ProviderSnapshot(version=1))
    assert not old.governance.active and old.governance.redis_unavailable == OPEN
