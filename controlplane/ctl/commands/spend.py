"""`aibridgectl spend`: what was spent in a UTC calendar month, against each budget."""

from __future__ import annotations

import argparse
import re

from aibridge.v1 import admin_pb2
from common.money import usd
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.output import emit_json, table, unpriced_note

SPEND_BY = ("user", "team", "token", "model", "provider")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def month(value: str) -> str:
    if not _MONTH.fullmatch(value):
        raise argparse.ArgumentTypeError(f"invalid month {value!r}: use YYYY-MM (like 2025-11)")
    return value


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    spend = commands.add_parser(
        "spend", parents=[everywhere], help="what was spent in a month, against each budget"
    )
    spend.add_argument("--by", choices=SPEND_BY, default="user", help="one row per (default user)")
    spend.add_argument(
        "--month", type=month, metavar="YYYY-MM", help="a UTC calendar month (default: this one)"
    )
    spend.set_defaults(func=cmd_spend)


def cmd_spend(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.QuerySpendRequest(by=args.by, month=args.month or "")
    response = ctx.call(ctx.stub.QuerySpend, request)
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.rows:
        print(f"nothing spent in {response.month}")
    else:
        rows = [[r.key, usd(r.spent_usd), *_budget(r), str(r.requests)] for r in response.rows]
        print(table(["NAME", "SPENT", "BUDGET", "USED", "REQUESTS"], rows))
    if response.unpriced:
        print(f"\n{unpriced_note(response.unpriced, 'SPENT')}")
    return EXIT_OK


def _budget(row: admin_pb2.SpendRow) -> list[str]:
    """BUDGET and USED: the budget, and the share of it spent (`-` without one)."""
    if not row.HasField("budget_usd"):
        return ["-", "-"]
    if row.budget_usd == 0:  # allows nothing: no share of it to show
        return [usd(0), "-"]
    return [usd(row.budget_usd), f"{100 * row.spent_usd / row.budget_usd:.1f}%"]
