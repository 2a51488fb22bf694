"""`aibridgectl spend`, and the cost and user in `usage`, `interceptions list|show`:
what an administrator reads. SQLite and PostgreSQL."""

from __future__ import annotations

import json

from common import scopes
from tests.harness import Controlplane, ctl, report
from tests.spend_data import add_token, add_user, call, database, set_budget

WIDE = {"COLUMNS": "250"}
MONTH = scopes.month()


def spent_by_alice_bob_and_ci(cp: Controlplane) -> None:
    """Alice spent 0.007 USD of her 0.01 budget (and made a call of a model with no
    price), Bob 0.0035 with no budget, the ci token (no user) 0.0035."""
    with database(cp) as session:
        add_user(session, "alice", teams=("ml",))
        add_user(session, "bob")
        add_token(session, "ci")
        set_budget(session, "user", "usr_alice", 0.01)
    calls = [
        call("a1", token="alice", user="alice", session_id="s-1"),
        call("a2", token="alice", user="alice"),
        call("a3", token="alice", user="alice", model="mystery-1"),
        call("b1", token="bob", user="bob"),
        call("c1", token="ci"),
    ]
    assert report(cp, calls, cp.secrets.bridged) == len(calls)


def test_spend_table_json_and_month(controlplane: Controlplane) -> None:
    cp = controlplane
    spent_by_alice_bob_and_ci(cp)

    table, footer = ctl(cp, "spend", check=True).stdout.split("\n\n")
    lines = [line.split() for line in table.splitlines()]
    assert lines == [
        ["NAME", "SPENT", "BUDGET", "USED", "REQUESTS"],
        ["alice", "$0.007", "$0.01", "70.0%", "3"],
        ["bob", "$0.0035", "-", "-", "1"],
    ]
    assert footer.strip() == (
        "1 call of models with no price, not in SPENT (see aibridgectl prices)"
    )

    teams = ctl(cp, "spend", "--by", "team", check=True).stdout.splitlines()
    assert teams[1].split() == ["ml", "$0.007", "-", "-", "3"]
    tokens = ctl(cp, "spend", "--by", "token", check=True).stdout.splitlines()
    assert [line.split()[0] for line in tokens[1:4]] == ["alice", "bob", "ci"]
    models = ctl(cp, "spend", "--by", "model", check=True).stdout.splitlines()
    assert [line.split()[:2] for line in models[1:3]] == [
        ["gpt-4o", "$0.014"],
        ["mystery-1", "$0.00"],
    ]

    document = json.loads(ctl(cp, "spend", "--json", check=True).stdout)
    assert (document["by"], document["month"], document["unpriced"]) == ("user", MONTH, 1)
    alice = document["rows"][0]
    assert alice == {
        "key": "alice", "id": "usr_alice", "spent_usd": 0.007, "requests": 3, "budget_usd": 0.01,
    }  # fmt: skip
    assert "budget_usd" not in document["rows"][1]  # Bob has none

    empty = ctl(cp, "spend", "--month", "2020-01", check=True).stdout
    assert empty.strip() == "nothing spent in 2020-01"


def test_spend_refuses_a_bad_month_or_grouping(controlplane: Controlplane) -> None:
    for args in (("--month", "2025-13"), ("--month", "11/2025"), ("--by", "day")):
        result = ctl(controlplane, "spend", *args)
        assert result.returncode == 2, result
        assert result.stdout == ""
        assert args[1] in result.stderr


def test_usage_has_cost_and_groups_by_user(controlplane: Controlplane) -> None:
    cp = controlplane
    spent_by_alice_bob_and_ci(cp)
    table, footer = ctl(cp, "usage", "--by", "user", check=True).stdout.split("\n\n")
    rows = {line.split()[0]: line.split() for line in table.splitlines()}
    assert rows["USER"][-1] == "COST"
    assert rows["alice"][1] == "3" and rows["alice"][-1] == "$0.007"
    assert rows["(no"][1:3] == ["user)", "1"]  # the ci token's call
    assert rows["TOTAL"][-1] == "$0.014"
    assert footer.startswith("1 call of models with no price, not in COST")


def test_interceptions_show_user_and_cost(controlplane: Controlplane) -> None:
    cp = controlplane
    spent_by_alice_bob_and_ci(cp)

    listing = ctl(cp, "interceptions", "list", "--user", "alice", env=WIDE, check=True).stdout
    lines = [line.split() for line in listing.splitlines()]
    assert lines[0][:11] == [
        "ID", "STARTED", "TOKEN", "USER", "CLIENT", "PROVIDER", "MODEL", "STATUS", "IN", "OUT",
        "COST",
    ]  # fmt: skip
    assert [(line[0], line[3], line[10]) for line in lines[1:]] == [
        ("a3", "alice", "-"),  # no price
        ("a2", "alice", "$0.0035"),
        ("a1", "alice", "$0.0035"),
    ]
    ci = ctl(cp, "interceptions", "list", "--token", "ci", env=WIDE, check=True).stdout
    assert ci.splitlines()[1].split()[3] == "-"  # no user
    sessions = ctl(cp, "sessions", "list", "--user", "usr_alice", "--json", check=True).stdout
    assert [s["session_id"] for s in json.loads(sessions)["sessions"]] == ["s-1"]

    shown = dict(
        line.split(": ", 1)
        for line in ctl(cp, "interceptions", "show", "a1", check=True).stdout.splitlines()
        if ": " in line
    )
    assert shown["user"].strip() == "alice (usr_alice)"
    assert shown["cost"].strip() == "$0.0035"
    unpriced = ctl(cp, "interceptions", "show", "a3", check=True).stdout
    assert "cost:" in unpriced and "- (no price)" in unpriced
    document = json.loads(ctl(cp, "interceptions", "show", "a1", "--json", check=True).stdout)
    assert (document["user_name"], document["cost_usd"]) == ("alice", 0.0035)
