"""Cost and spend: each interception is priced as it is stored, its cost added to the
month's spend of every scope it counts under, once; a batch that takes a scope to its
budget makes a new revision (and an audit entry) in its own transaction; QuerySpend,
QueryUsage and the interception listings read it back; the controlplane exports the
spend of its top users and teams. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from aibridge.v1 import admin_pb2, usage_pb2
from common import scopes
from controlplane.spend_metrics import SpendMetrics
from controlplane.store.db import Database
from controlplane.store.models import Spend
from controlplane.store.spend import Spending
from mockupstream import OPENAI_USAGE, MockUpstream
from tests.harness import Bridged, Controlplane, Secrets, report, wait_until
from tests.spend_data import (
    add_token,
    add_user,
    call,
    database,
    metrics,
    set_budget,
    spend_table,
)

CALL_USD = 0.0035  # spend_data.call(): 1000 input and 100 output tokens of gpt-4o
MONTH = scopes.month()


def usd(value: float) -> float:
    """Sums of costs compared to the nanodollar, whatever order they were added in."""
    return round(value, 9)


def cost_of(cp: Controlplane, request_id: str) -> float | None:
    record = cp.admin.GetInterception(admin_pb2.GetInterceptionRequest(id=request_id))
    return record.cost_usd if record.HasField("cost_usd") else None


def unpriced_total(cp: Controlplane) -> float:
    found = re.search(
        r"^aibridge_controlplane_unpriced_interceptions_total (\S+)$", metrics(cp), re.M
    )
    assert found, "no unpriced counter"
    return float(found.group(1))


def audit_entries(cp: Controlplane, action: str) -> list[admin_pb2.AuditEntry]:
    entries = cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=1000)).entries
    return [e for e in entries if e.action == action]


def test_each_interception_is_priced_as_it_is_stored(controlplane: Controlplane) -> None:
    cp = controlplane
    bridged = cp.secrets.bridged
    calls = [
        # OpenAI counts cached tokens inside the input: 800 uncached at 2.5, 100 output at
        # 10, 200 cache reads at 1.25 (USD per million).
        call("priced", tokens=(1000, 100, 200, 0)),
        # Anthropic counts them apart: 100 at 3, 10 at 15, 1000 reads at 0.3, 50 writes
        # at 3.75; the dated name takes the "claude-sonnet-4-5*" price.
        call("dated", model="claude-sonnet-4-5-20250929", tokens=(100, 10, 1000, 50),
             provider="anthropic"),
        call("unpriced", model="mystery-1", tokens=(10, 10, 0, 0)),
        call("unused", model="mystery-1", tokens=(0, 0, 0, 0), status=500),
    ]  # fmt: skip
    assert report(cp, calls, bridged) == 4
    assert report(cp, calls, bridged) == 0  # a retry is neither stored nor counted again

    assert cost_of(cp, "priced") == pytest.approx(0.00325)
    assert cost_of(cp, "dated") == pytest.approx(0.0009375)
    assert cost_of(cp, "unpriced") is None  # used tokens of a model with no price
    assert cost_of(cp, "unused") == 0.0  # no tokens, no cost: not unpriced
    assert unpriced_total(cp) == 1

    usage = cp.admin.QueryUsage(admin_pb2.QueryUsageRequest(group_by="model"))
    by_model = {r.key: (r.requests, round(r.cost_usd, 9), r.unpriced) for r in usage.rows}
    assert by_model == {
        "gpt-4o": (1, 0.00325, 0),
        "claude-sonnet-4-5-20250929": (1, 0.0009375, 0),
        "mystery-1": (2, 0.0, 1),
    }


def test_a_call_through_bridged_is_priced(
    controlplane: Controlplane, bridged: Bridged, upstream_a: MockUpstream, token: str
) -> None:
    cp = controlplane
    cp.admin.wait_applied(
        cp.admin.create_provider("oai", upstream_a.url + "/v1", keys=["sk-key-0001"]).revision
    )
    response = httpx.post(
        bridged.provider_url("oai") + "/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-aibridge-request-id"]

    def stored() -> admin_pb2.InterceptionRecord | None:
        try:
            return cp.admin.GetInterception(admin_pb2.GetInterceptionRequest(id=request_id))
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            return None

    record = wait_until(stored, what="the call's record")
    # The upstream answers as "gpt-4o-2026", priced by "gpt-4o*".
    assert record.model.startswith("gpt-4o")
    uncached = OPENAI_USAGE["prompt_tokens"] - OPENAI_USAGE["cached_tokens"]
    expected = (
        uncached * 2.5 + OPENAI_USAGE["cached_tokens"] * 1.25
        + OPENAI_USAGE["completion_tokens"] * 10
    ) / 1e6  # fmt: skip
    assert record.HasField("cost_usd") and record.cost_usd == pytest.approx(expected)
    spent = spend_table(cp)
    for key in (f"token:{record.token_id}", f"model:{record.model}"):
        cost, requests, _ = spent[MONTH, key]
        assert (usd(cost), requests) == (usd(expected), 1)


def test_spend_is_added_per_key_once(controlplane: Controlplane) -> None:
    """Alice (in teams ml and web) calls with her token, Bob (no team) with his, and the
    ci token belongs to no one: each call counts under its token, its user, each of the
    user's teams and memberships, its model and its provider; a retried batch adds
    nothing, a partly new one only the new calls."""
    cp = controlplane
    with database(cp) as session:
        add_user(session, "alice", teams=("ml", "web"))
        add_user(session, "bob")
    batch = [
        call("a1", token="alice", user="alice"),
        call("a2", token="alice", user="alice", model="mystery-1"),
        call("b1", token="bob", user="bob"),
        call("c1", token="ci"),
    ]
    assert report(cp, batch, cp.secrets.bridged) == 4
    expected = {
        "token:tok_alice": (CALL_USD, 2, 1),
        "user:usr_alice": (CALL_USD, 2, 1),
        "team:team_ml": (CALL_USD, 2, 1),
        "team:team_web": (CALL_USD, 2, 1),
        "member:team_ml:usr_alice": (CALL_USD, 2, 1),
        "member:team_web:usr_alice": (CALL_USD, 2, 1),
        "token:tok_bob": (CALL_USD, 1, 0),
        "user:usr_bob": (CALL_USD, 1, 0),
        "token:tok_ci": (CALL_USD, 1, 0),
        "model:gpt-4o": (3 * CALL_USD, 3, 0),
        "model:mystery-1": (0.0, 1, 1),
        "provider:prv_openai": (3 * CALL_USD, 4, 1),
    }

    def table() -> dict[str, tuple[float, int, int]]:
        found = spend_table(cp)
        assert {month for month, _ in found} == {MONTH}
        return {key: (round(cost, 9), n, u) for (_, key), (cost, n, u) in found.items()}

    assert table() == expected
    assert report(cp, batch, cp.secrets.bridged) == 0
    assert table() == expected
    assert report(cp, [*batch, call("c2", token="ci")], cp.secrets.bridged) == 1
    expected |= {
        "token:tok_ci": (2 * CALL_USD, 2, 0),
        "model:gpt-4o": (4 * CALL_USD, 4, 0),
        "provider:prv_openai": (4 * CALL_USD, 5, 1),
    }
    assert table() == expected


def test_a_call_is_charged_to_its_tokens_user_whatever_was_reported(
    controlplane: Controlplane,
) -> None:
    """The database, not the data plane's report, says whose a call is: a report that
    claims alice for bob's token, or for a token without a user (or one the database does
    not know), counts under the token's real user only."""
    cp = controlplane
    with database(cp) as session:
        add_user(session, "alice", teams=("ml",))
        add_user(session, "bob")
        add_token(session, "ci")
        set_budget(session, "user", "usr_alice", CALL_USD / 2)
    start = cp.admin.revision()
    batch = [
        call("b1", token="bob", user="alice"),
        call("c1", token="ci", user="alice"),
        call("g1", token="ghost", user="alice"),
    ]
    assert report(cp, batch, cp.secrets.bridged) == 3
    keys = {key for _, key in spend_table(cp)}
    assert keys == {
        "token:tok_bob", "user:usr_bob", "token:tok_ci", "token:tok_ghost",
        "model:gpt-4o", "provider:prv_openai",
    }  # fmt: skip
    assert cp.admin.revision() == start  # alice's budget was not crossed
    stored = {
        r.id: (r.user_id, r.user_name)
        for r in (
            cp.admin.GetInterception(admin_pb2.GetInterceptionRequest(id=i))
            for i in ("b1", "c1", "g1")
        )
    }
    assert stored == {"b1": ("usr_bob", "bob"), "c1": ("", ""), "g1": ("", "")}


@pytest.mark.postgres
def test_concurrent_reports_of_one_batch_count_it_once(postgres_url: str, tmp_path: Path) -> None:
    """Two bridged retrying the same batch at once (PostgreSQL lets their transactions
    overlap): stored once, counted once."""
    cp = Controlplane(postgres_url, tmp_path, Secrets()).start()
    try:
        batch = [call(f"r{n}", token=f"t{n % 7}") for n in range(300)]
        stored: list[int] = []
        threads = [
            threading.Thread(target=lambda: stored.append(report(cp, batch, cp.secrets.bridged)))
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(stored) == [0, 0, 0, 300]
        assert spend_table(cp)[MONTH, "model:gpt-4o"][1] == 300
    finally:
        cp.stop()


@pytest.mark.postgres
def test_an_ingest_waits_for_a_budget_change_in_progress(postgres_url: str, tmp_path: Path) -> None:
    """A mutation lowers alice's budget below one call while her call is ingested
    (PostgreSQL runs them at once): the ingest waits for the mutation's revision lock
    before it reads the budgets, so it sees the new budget and makes the crossing's
    revision; it never reads the old budget while the admin's snapshot misses its spend."""
    cp = Controlplane(postgres_url, tmp_path, Secrets()).start()
    engine = sa.create_engine(postgres_url)
    try:
        with database(cp) as session:
            add_user(session, "alice")
            set_budget(session, "user", "usr_alice", 100.0)
        start = cp.admin.revision()
        with engine.connect() as mutation, engine.connect() as observer:
            mutation.execute(sa.text("SELECT value FROM revision WHERE id = 1 FOR UPDATE"))
            mutation.execute(
                sa.text(
                    "UPDATE limit_sets SET monthly_budget_usd = :usd WHERE scope_id = 'usr_alice'"
                ),
                {"usd": CALL_USD / 2},
            )
            mutation.execute(sa.text("UPDATE revision SET value = value + 1 WHERE id = 1"))
            stored: list[int] = []
            ingest = threading.Thread(
                target=lambda: stored.append(
                    report(cp, [call("a1", token="alice")], cp.secrets.bridged)
                )
            )
            ingest.start()

            def waiting() -> bool:
                query = "SELECT count(*) FROM pg_locks WHERE NOT granted"
                return bool(observer.execute(sa.text(query)).scalar_one())

            wait_until(lambda: not ingest.is_alive() or waiting(), what="the ingest or a lock wait")
            assert ingest.is_alive(), "the ingest did not wait for the mutation in progress"
            mutation.commit()
            ingest.join(30)
        assert stored == [1]
        assert cp.admin.revision() == start + 2  # the mutation, then the crossing
        (entry,) = audit_entries(cp, "budget.crossed")
        assert (entry.target, entry.revision) == ("user:alice", start + 2)
    finally:
        engine.dispose()
        cp.stop()


def test_a_call_counts_in_the_month_it_started(controlplane: Controlplane) -> None:
    cp = controlplane
    last_second = datetime(2025, 10, 31, 23, 59, 59, tzinfo=UTC)
    calls = [
        call("october", now=last_second),
        call("november", now=last_second + timedelta(seconds=1)),
        call("old", now=datetime.now(UTC) - timedelta(days=62)),
    ]
    assert report(cp, calls, cp.secrets.bridged) == 3
    old_month = scopes.month((datetime.now(UTC) - timedelta(days=62)).timestamp())
    tokens = {m: n for (m, key), (_, n, _) in spend_table(cp).items() if key == "token:tok_alice"}
    assert tokens == {"2025-10": 1, "2025-11": 1, old_month: 1}

    def spent(month: str) -> list[tuple[str, float]]:
        response = cp.admin.QuerySpend(admin_pb2.QuerySpendRequest(by="token", month=month))
        assert response.month == month
        return [(r.key, round(r.spent_usd, 9)) for r in response.rows]

    assert spent("2025-10") == spent("2025-11") == [("tok_alice", CALL_USD)]
    assert spent(old_month) == [("tok_alice", CALL_USD)]
    assert spent(MONTH) == []
    assert cp.admin.QuerySpend(admin_pb2.QuerySpendRequest()).month == MONTH


def test_a_crossing_makes_one_revision_and_an_audit_entry(
    controlplane: Controlplane, bridged: Bridged
) -> None:
    """Alice's budget is two calls' worth (a little less), her team's per-member budget
    three: the batch that reaches a budget bumps the revision once, whatever it crossed,
    and every data plane applies it; batches below or already above do not."""
    cp = controlplane
    with database(cp) as session:
        add_user(session, "alice", teams=("ml",))
        set_budget(session, "user", "usr_alice", 2 * CALL_USD - 0.0001)
        set_budget(session, "team", "team_ml", 3 * CALL_USD, per_member=True)
        set_budget(session, "default", "", 100.0)
    bridged_token = cp.secrets.bridged

    def alice(request_id: str, **kw: object) -> usage_pb2.Interception:
        return call(request_id, token="alice", user="alice", **kw)  # type: ignore[arg-type]

    start = cp.admin.revision()
    assert report(cp, [alice("1")], bridged_token) == 1
    assert cp.admin.revision() == start  # below every budget
    assert audit_entries(cp, "budget.crossed") == []

    assert report(cp, [alice("2")], bridged_token) == 1  # crosses alice's budget
    crossed = cp.admin.revision()
    assert crossed == start + 1
    cp.admin.wait_applied(crossed, timeout=5)  # every data plane has it
    (entry,) = audit_entries(cp, "budget.crossed")
    assert (entry.actor, entry.target, entry.revision) == ("controlplane", "user:alice", crossed)
    assert '"key": "user:usr_alice"' in entry.details and f'"month": "{MONTH}"' in entry.details

    assert report(cp, [alice("2"), alice("1")], bridged_token) == 0  # a retry
    assert cp.admin.revision() == crossed
    # Calls of another month never cross this month's budgets.
    assert report(cp, [alice(f"old{n}", ago=timedelta(days=40)) for n in range(5)],
                  bridged_token) == 5  # fmt: skip
    assert cp.admin.revision() == crossed

    # One batch that reaches the member budget (and stays above alice's): one revision.
    assert report(cp, [alice("3"), alice("4")], bridged_token) == 2
    assert cp.admin.revision() == crossed + 1
    entries = audit_entries(cp, "budget.crossed")
    assert [(e.target, e.revision) for e in entries] == [
        ("team:ml", crossed + 1), ("user:alice", crossed),
    ]  # fmt: skip
    assert '"key": "member:team_ml:usr_alice"' in entries[0].details

    assert report(cp, [alice("5")], bridged_token) == 1  # already above both
    assert cp.admin.revision() == crossed + 1


def test_a_batch_crossing_several_budgets_makes_one_revision(controlplane: Controlplane) -> None:
    cp = controlplane
    with database(cp) as session:
        add_user(session, "alice", teams=("ml",))
        add_user(session, "bob", teams=("ml",))
        set_budget(session, "default", "", CALL_USD)  # each user on their own
        set_budget(session, "team", "team_ml", 2 * CALL_USD)  # the team's total
        add_token(session, "ci")
        set_budget(session, "token", "tok_ci", CALL_USD / 2)
    start = cp.admin.revision()
    calls = [
        call("a", token="alice", user="alice"),
        call("b", token="bob", user="bob"),
        call("c", token="ci"),
    ]
    assert report(cp, calls, cp.secrets.bridged) == 3
    assert cp.admin.revision() == start + 1
    entries = audit_entries(cp, "budget.crossed")
    assert {e.revision for e in entries} == {start + 1}
    crossed = sorted((e.target, json.loads(e.details)["key"]) for e in entries)
    assert crossed == [
        ("default", "token:tok_ci"),  # a token without a user is its own identity
        ("default", "user:usr_alice"),  # the default applies to each user separately
        ("default", "user:usr_bob"),
        ("team:ml", "team:team_ml"),  # the team's total
        ("token:ci", "token:tok_ci"),
    ]


def test_query_spend_by_scope_with_budgets(controlplane: Controlplane) -> None:
    cp = controlplane
    oai = cp.admin.create_provider("oai").provider
    with database(cp) as session:
        add_user(session, "alice", teams=("ml", "web"))
        add_user(session, "bob")
        add_user(session, "carol", deleted=True)
        add_token(session, "ci")
        add_token(session, "old", revoked=True)
        set_budget(session, "default", "", 100.0)
        set_budget(session, "user", "usr_alice", 10.0)
        set_budget(session, "team", "team_ml", 50.0)
        set_budget(session, "team", "team_web", 5.0, per_member=True)
        set_budget(session, "token", "tok_ci", 200.0)
        set_budget(session, "token", "tok_alice", 1.0)
    calls = [
        call("a1", token="alice", user="alice"),
        call("a2", token="alice", user="alice"),
        call("a3", token="alice", user="alice", model="mystery-1"),
        call("b1", token="bob", user="bob"),
        call("c1", token="carol", user="carol", tokens=(10_000, 0, 0, 0)),
        call("ci", token="ci"),
        call("o1", token="old"),
        call("g1", token="ghost"),
    ]
    for c in calls:
        c.provider_id = oai.id
    assert report(cp, calls, cp.secrets.bridged) == len(calls)

    def rows(by: str) -> list[tuple[str, str, float, int, float | None]]:
        response = cp.admin.QuerySpend(admin_pb2.QuerySpendRequest(by=by))
        assert (response.by, response.month, response.unpriced) == (by, MONTH, 1)
        return [
            (r.key, r.id, usd(r.spent_usd), r.requests,
             r.budget_usd if r.HasField("budget_usd") else None)
            for r in response.rows
        ]  # fmt: skip

    alice_spent = usd(2 * CALL_USD)  # a3 has no price
    # Highest spend first; a user's budget is the smaller of its own and the default.
    assert rows("user") == [
        ("carol (deleted)", "usr_carol", 0.025, 1, 100.0),
        ("alice", "usr_alice", alice_spent, 3, 10.0),
        ("bob", "usr_bob", CALL_USD, 1, 100.0),
    ]
    # A per-member budget is no team's budget as a whole.
    assert rows("team") == [
        ("ml", "team_ml", alice_spent, 3, 50.0),
        ("web", "team_web", alice_spent, 3, None),
    ]
    # A token of a user has its own budget only (the default counts its user); one
    # without a user is held to the default too. Tokens the database does not know are
    # shown by id.
    assert rows("token") == [
        ("carol", "tok_carol", 0.025, 1, None),
        ("alice", "tok_alice", alice_spent, 3, 1.0),
        ("bob", "tok_bob", CALL_USD, 1, None),
        ("ci", "tok_ci", CALL_USD, 1, 100.0),
        ("old (revoked)", "tok_old", CALL_USD, 1, 100.0),
        ("tok_ghost", "tok_ghost", CALL_USD, 1, 100.0),
    ]
    total = usd(0.025 + 6 * CALL_USD)
    assert rows("model") == [
        ("gpt-4o", "gpt-4o", total, 7, None),
        ("mystery-1", "mystery-1", 0.0, 1, None),
    ]
    cp.admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref=oai.id, name="renamed"))
    assert rows("provider") == [("renamed", oai.id, total, 8, None)]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (admin_pb2.QuerySpendRequest(by="day"), "by"),
        (admin_pb2.QuerySpendRequest(by="member"), "by"),
        (admin_pb2.QuerySpendRequest(month="2025-13"), "month"),
        (admin_pb2.QuerySpendRequest(month="2025-1"), "month"),
        (admin_pb2.QuerySpendRequest(month="november"), "month"),
        (admin_pb2.QuerySpendRequest(month="2025-11\x00"), "month"),
    ],
)
def test_query_spend_refuses_bad_input(
    shared_controlplane: Controlplane, request_: admin_pb2.QuerySpendRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        shared_controlplane.admin.QuerySpend(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(f"{field}:"), caught.value.details()


def test_usage_by_user_and_interceptions_of_a_user(controlplane: Controlplane) -> None:
    cp = controlplane
    with database(cp) as session:
        add_user(session, "alice")
    calls = [
        call("a1", token="alice", user="alice", session_id="s-1"),
        call("a2", token="alice", user="alice", model="mystery-1", session_id="s-1"),
        call("n1", token="ci"),
    ]
    assert report(cp, calls, cp.secrets.bridged) == 3

    usage = cp.admin.QueryUsage(admin_pb2.QueryUsageRequest(group_by="user"))
    assert usage.group_by == "user"
    assert {r.key: (r.requests, round(r.cost_usd, 9), r.unpriced) for r in usage.rows} == {
        "alice": (2, CALL_USD, 1),
        "": (1, CALL_USD, 0),  # calls of tokens that belong to no user
    }

    def listed(user: str) -> list[str]:
        f = admin_pb2.InterceptionFilter(user=user)
        found = cp.admin.ListInterceptions(admin_pb2.ListInterceptionsRequest(filter=f))
        return [i.id for i in found.interceptions]

    assert listed("alice") == listed("usr_alice") == ["a2", "a1"]
    assert listed("nobody") == []
    sessions = cp.admin.ListSessions(
        admin_pb2.ListSessionsRequest(filter=admin_pb2.InterceptionFilter(user="alice"))
    )
    assert [s.session_id for s in sessions.sessions] == ["s-1"]

    record = cp.admin.GetInterception(admin_pb2.GetInterceptionRequest(id="a1"))
    assert (record.user_id, record.user_name) == ("usr_alice", "alice")
    assert record.cost_usd == pytest.approx(CALL_USD)
    listed_a2 = cp.admin.ListInterceptions(admin_pb2.ListInterceptionsRequest()).interceptions
    (a2,) = [i for i in listed_a2 if i.id == "a2"]
    assert not a2.HasField("cost_usd")


def test_metrics_export_the_top_users_and_teams(database_url: str, tmp_path: Path) -> None:
    """105 users and 2 teams spent this month: the 100 users that spent most, each team,
    and the ratio to the budget of those with one. (The spend is there before the
    controlplane starts: it reads the table at most every 15 s, from its start on.)"""
    db = Database(database_url)
    db.migrate()
    db.dispose()
    cp = Controlplane(database_url, tmp_path, Secrets())
    with database(cp) as session:
        for n in range(105):
            add_user(session, f"u{n}")
            session.add(Spend(month=MONTH, key=f"user:usr_u{n}", cost_usd=float(n),
                              requests=1, unpriced=0))  # fmt: skip
        session.add(Spend(month=MONTH, key="user:usr_gone", cost_usd=0.5, requests=1,
                          unpriced=0))  # fmt: skip
        session.add(Spend(month="2025-01", key="user:usr_u0", cost_usd=1e6, requests=1,
                          unpriced=0))  # fmt: skip
        add_user(session, "lead", teams=("ml", "web"))
        session.add(Spend(month=MONTH, key="team:team_ml", cost_usd=25.0, requests=1,
                          unpriced=0))  # fmt: skip
        session.add(Spend(month=MONTH, key="team:team_web", cost_usd=1.0, requests=1,
                          unpriced=0))  # fmt: skip
        set_budget(session, "default", "", 200.0)
        set_budget(session, "team", "team_ml", 100.0)
    cp.start()
    try:
        found = wait_until(lambda: (s := spend_series(cp))["spend_usd"] and s, what="spend metrics")
    finally:
        cp.stop()
    users = {name: v for (scope, name), v in found["spend_usd"].items() if scope == "user"}
    assert set(users) == {f"u{n}" for n in range(5, 105)}  # the top 100
    assert users["u104"] == 104.0
    teams = {name: v for (scope, name), v in found["spend_usd"].items() if scope == "team"}
    assert teams == {"ml": 25.0, "web": 1.0}
    assert found["budget_ratio"]["user", "u100"] == pytest.approx(0.5)
    assert found["budget_ratio"]["team", "ml"] == pytest.approx(0.25)
    assert ("team", "web") not in found["budget_ratio"]  # no budget


def spend_series(cp: Controlplane) -> dict[str, dict[tuple[str, str], float]]:
    """The spend and budget-ratio gauges the controlplane exports, by (scope, name)."""
    found: dict[str, dict[tuple[str, str], float]] = {"spend_usd": {}, "budget_ratio": {}}
    for family in text_string_to_metric_families(metrics(cp)):
        name = family.name.removeprefix("aibridge_controlplane_")
        for sample in family.samples if name in found else ():
            found[name][sample.labels["scope"], sample.labels["name"]] = sample.value
    return found


def test_spend_metrics_read_at_most_every_interval_and_survive_errors(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'spend.db'}")
    db.migrate()
    with db.write() as session:
        session.add(Spend(month=MONTH, key="user:usr_x", cost_usd=3.0, requests=1, unpriced=0))
    now = [1000.0]
    collector = SpendMetrics(Spending(db), interval=15.0, clock=lambda: now[0])

    def values() -> dict[str, float]:
        return {
            f"{m.name}/{s.labels['name']}": s.value for m in collector.collect() for s in m.samples
        }

    wait_until(lambda: values() == {"aibridge_controlplane_spend_usd/usr_x": 3.0})
    assert collector.reads == 1
    now[0] += 14.9
    values()
    assert collector.reads == 1  # cached
    with db.write() as session:
        session.execute(sa.text("DROP TABLE spend"))
    now[0] += 0.2
    assert values() == {"aibridge_controlplane_spend_usd/usr_x": 3.0}  # never fails
    wait_until(lambda: collector.reads == 2 and not collector.reading)
    assert values() == {"aibridge_controlplane_spend_usd/usr_x": 3.0}  # the last values
    db.dispose()
