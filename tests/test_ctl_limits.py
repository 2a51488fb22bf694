"""`aibridgectl limits` and `aibridgectl prices` as a user runs them: options onto the
API ('none' clears a limit), tables with headers and money in $, --json, --wait,
--expect-revision, errors in words with exit 1, and a price file refused whole when one
entry is bad. SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from aibridge.v1 import admin_pb2
from common.money import usd
from controlplane import ctl as ctl_package
from controlplane import pricing
from tests.governance_rows import add_team, add_user
from tests.harness import Controlplane, ctl, printed_revision


def parse(*argv: str) -> argparse.Namespace:
    return ctl_package.build_parser().parse_args(list(argv))


def test_money_has_a_dollar_cents_and_the_decimals_it_needs() -> None:
    assert [usd(v) for v in (0, 0.5, 12.5, 1250.5, 0.075, 0.0075, 1e9, 0.1234567)] == [
        "$0.00", "$0.50", "$12.50", "$1,250.50", "$0.075", "$0.0075", "$1,000,000,000.00",
        "$0.123457",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["limits", "set", "default"], "limits set: nothing to set"),
        (["limits", "set", "default", "--rpm", "0"], "argument --rpm: must be positive"),
        (["limits", "set", "default", "--tpm", "1.5"], "argument --tpm: invalid number"),
        (["limits", "set", "default", "--concurrent", str(2**63)], "too large"),
        (["limits", "set", "default", "--monthly-budget", "lots"], "invalid amount"),
        (["limits", "set", "team:ml", "--per-member", "--no-per-member"], "not allowed with"),
        (["limits", "list", "--wait"], "unrecognized arguments: --wait"),
        (["prices", "list", "--expect-revision", "1"], "unrecognized arguments"),
        (["prices", "set", "m", "--input", "1"], "required: --output"),
        (["prices", "set", "m", "--input", "nan", "--output", "1"], "invalid price 'nan'"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        ctl_package.run(["--token", "t", *argv])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err


def test_limits_set_options_become_the_request() -> None:
    args = parse(
        "limits", "set", "team:ml", "--rpm", "60", "--tpm", "NONE", "--monthly-budget", "$1,000",
        "--providers", "openai, anthropic", "--models", "none", "--per-member",
    )  # fmt: skip
    assert (args.requests_per_minute, args.tokens_per_minute) == (60, "none")
    assert (args.monthly_budget_usd, args.providers, args.models) == (
        1000.0, ["openai", "anthropic"], "none",
    )  # fmt: skip
    assert args.per_member is True and args.max_concurrent is None
    assert parse("limits", "set", "team:ml", "--no-per-member").per_member is False


def lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def test_limits_commands(controlplane: Controlplane) -> None:
    cp = controlplane
    add_user(cp, "alice")
    add_team(cp, "ml")
    for name in ("openai", "anthropic"):
        cp.admin.create_provider(name)

    made = ctl(
        cp, "limits", "set", "user:alice", "--rpm", "60", "--monthly-budget", "1250.5",
        "--providers", "openai,anthropic", "--models", "gpt-5*,claude-*", check=True,
    )  # fmt: skip
    revision = printed_revision(made.stdout)
    assert made.stdout.startswith(f"set limits of user:alice at revision {revision}\n")
    ctl(cp, "limits", "set", "team:ml", "--per-member", "--tpm", "100000", "--monthly-budget",
        "0.125", check=True)  # fmt: skip
    ctl(cp, "limits", "set", "default", "--concurrent", "4", "--wait", check=True)

    listing = ctl(cp, "limits", "list", check=True)
    assert lines(listing.stdout) == [
        ["SCOPE", "RPM", "TPM", "CONCURRENT", "BUDGET/MONTH", "PROVIDERS", "MODELS"],
        ["default", "-", "-", "4", "-", "all", "all"],
        ["team:ml", "(per", "member)", "-", "100,000", "-", "$0.125", "all", "all"],
        ["user:alice", "60", "-", "-", "$1,250.50", "anthropic,openai", "gpt-5*,claude-*"],
    ]

    # 'none' clears a field; the others stay.
    cleared = ctl(cp, "limits", "set", "user:alice", "--rpm", "none", "--providers", "none",
                  check=True)  # fmt: skip
    assert lines(cleared.stdout)[-1] == [
        "user:alice",
        "-",
        "-",
        "-",
        "$1,250.50",
        "all",
        "gpt-5*,claude-*",
    ]
    as_json = json.loads(ctl(cp, "--json", "limits", "list", check=True).stdout)
    alice = as_json["limits"][2]
    assert alice["scope"] == "user:alice" and "requests_per_minute" not in alice
    assert (alice["monthly_budget_usd"], alice["models"]) == (1250.5, ["gpt-5*", "claude-*"])
    current = as_json["revision"]

    stale = ctl(cp, "limits", "set", "user:alice", "--rpm", "5", "--expect-revision",
                str(current - 1))  # fmt: skip
    assert stale.returncode == 1 and "ABORTED" in stale.stderr
    for argv, says in [
        (["limits", "set", "user:bob", "--rpm", "1"], "NOT_FOUND: live user 'bob' not found"),
        (["limits", "set", "user:alice", "--rpm", "2000000000"],
         "INVALID_ARGUMENT: requests_per_minute: must be a whole number from 1 to"),
        (["limits", "set", "default", "--per-member"],
         "INVALID_ARGUMENT: per_member: applies only to a team's set"),
        (["limits", "set", "default", "--models", "a b"], "INVALID_ARGUMENT: models:"),
        (["limits", "clear", "token:ci"], "NOT_FOUND: live token 'ci' not found"),
    ]:  # fmt: skip
        refused = ctl(cp, *argv)
        assert (refused.returncode, refused.stdout) == (1, ""), argv
        assert says in refused.stderr, refused.stderr
    assert cp.admin.revision() == current

    gone = ctl(cp, "limits", "clear", "user:alice", "--wait", check=True)
    assert gone.stdout.splitlines() == [
        f"cleared the limits of user:alice at revision {current + 1}",
        f"revision {current + 1} applied by every subscriber",
    ]
    again = ctl(cp, "limits", "clear", "user:alice")
    assert again.returncode == 1 and "user:alice has no limit set" in again.stderr
    ctl(cp, "limits", "clear", "default", check=True)
    ctl(cp, "limits", "clear", "team:ml", check=True)
    assert ctl(cp, "limits", "list", check=True).stdout == "no limit sets\n"


def listed_prices(cp: Controlplane) -> dict[str, tuple[float, float, float, float]]:
    listing = cp.admin.ListPrices(admin_pb2.ListPricesRequest()).prices
    return {p.model: (p.input, p.output, p.cache_read, p.cache_write) for p in listing}


def test_prices_commands(controlplane: Controlplane, tmp_path: Path) -> None:
    cp = controlplane
    made = ctl(cp, "prices", "set", "my-model*", "--input", "0.075", "--output", "0.3",
               "--cache-read", "0.0075", check=True)  # fmt: skip
    assert made.stdout == (
        f"set the price of my-model* at revision {printed_revision(made.stdout)}: input $0.075, "
        "output $0.30, cache read $0.0075, cache write $0.075 per million tokens\n"
    )
    listing = ctl(cp, "prices", "list", check=True).stdout.splitlines()
    assert listing[0].split() == [
        "MODEL",
        "INPUT",
        "OUTPUT",
        "CACHE_READ",
        "CACHE_WRITE",
        "UPDATED",
    ]
    rows = {line.split()[0]: line.split()[1:5] for line in listing[1:-1]}
    assert rows["my-model*"] == ["$0.075", "$0.30", "$0.0075", "$0.075"]
    assert rows["gpt-5*"] == ["$1.25", "$10.00", "$0.125", "$1.25"]
    assert listing[-1] == (
        f"USD per million tokens; the prices the gateway ships are as of {pricing.shipped_as_of()}"
    )
    as_json = json.loads(ctl(cp, "--json", "prices", "list", check=True).stdout)
    assert {p["model"] for p in as_json["prices"]} == set(listed_prices(cp))

    assert "deleted the price of my-model*" in ctl(cp, "prices", "delete", "my-model*").stdout
    missing = ctl(cp, "prices", "delete", "my-model*")
    assert missing.returncode == 1 and "NOT_FOUND: no price for 'my-model*'" in missing.stderr

    # A bad file: the error names the entry, and nothing is written.
    before, revision = listed_prices(cp), cp.admin.revision()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"prices": [
        {"model": "a", "input": 1, "output": 2},
        {"model": "b", "input": 1, "output": 2},
        {"model": "c", "input": -1, "output": 2},
    ]}))  # fmt: skip
    refused = ctl(cp, "prices", "import", str(bad))
    assert refused.returncode == 1 and refused.stdout == ""
    assert f"error: {bad}: prices[3].input: must be a number of USD" in refused.stderr
    nowhere = ctl(cp, "prices", "import", str(tmp_path / "missing.json"))
    assert nowhere.returncode == 1 and "missing.json: No such file or directory" in nowhere.stderr
    assert (listed_prices(cp), cp.admin.revision()) == (before, revision)

    good = tmp_path / "prices.json"
    good.write_text(json.dumps([
        {"model": "a", "input": 1, "output": 2},
        {"model": "gpt-5*", "input": 2, "output": 20, "cache_read": 0.2, "cache_write": 2.5},
    ]))  # fmt: skip
    done = ctl(cp, "prices", "import", str(good), "--wait", check=True)
    assert done.stdout.splitlines()[0] == f"imported 2 prices at revision {revision + 1}"
    assert listed_prices(cp) == before | {"a": (1, 2, 1, 1), "gpt-5*": (2, 20, 0.2, 2.5)}

    replaced = ctl(cp, "prices", "import", "-", "--replace", check=True, stdin=good.read_text())
    assert replaced.stdout == (
        f"imported 2 prices, deleted {len(before) - 1} at revision {revision + 2}\n"
    )
    assert listed_prices(cp) == {"a": (1, 2, 1, 1), "gpt-5*": (2, 20, 0.2, 2.5)}
    # The shipped table comes back the same way.
    shipped = str(Path(pricing.__file__).with_name("prices.json"))
    ctl(cp, "prices", "import", shipped, "--replace", check=True)
    assert set(listed_prices(cp)) == {e.model for e in pricing.shipped()}
