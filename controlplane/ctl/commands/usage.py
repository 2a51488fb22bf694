"""`aibridgectl usage`: usage totals and their cost, grouped by provider, model, token,
client or user, over the period or per time bucket in it."""

from __future__ import annotations

import argparse

from aibridge.v1 import admin_pb2
from common.flags import parse_duration
from common.money import usd
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.options import add_period_options, check_period, set_period
from controlplane.ctl.output import emit_json, fmt_time, table, unpriced_note

USAGE_GROUPS = ("provider", "model", "token", "client", "user")
NO_USER = "(no user)"  # the calls of tokens that belong to no user
_COUNTS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    usage = commands.add_parser("usage", parents=[everywhere], help="usage totals")
    add_period_options(usage)
    usage.add_argument(
        "--provider", metavar="NAME|ID", help="only this provider, under every name it has had"
    )
    usage.add_argument(
        "--by", choices=USAGE_GROUPS, default="provider", help="group rows by (default provider)"
    )
    usage.add_argument(
        "--bucket",
        type=parse_duration,
        metavar="DURATION",
        help="a row per key and time bucket of this length, like 1h (at least 1m; needs --since)",
    )
    usage.set_defaults(func=cmd_usage, check=check_usage)


def check_usage(args: argparse.Namespace) -> str | None:
    if args.bucket is not None and args.since is None:
        return "usage: --bucket needs --since"
    return check_period(args, "usage")


def cmd_usage(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.QueryUsageRequest(
        provider=args.provider or "", group_by=args.by, bucket_seconds=args.bucket or 0
    )
    set_period(request, args)
    response = ctx.call(ctx.stub.QueryUsage, request)
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.rows:
        print("no usage recorded in that period")
        return EXIT_OK
    group = (response.group_by or args.by).upper()
    bucketed = bool(args.bucket)
    rows = [
        [*([fmt_time(r, "bucket_start")] if bucketed else []), _name(r.key, group),
         *(str(getattr(r, f)) for f in _COUNTS), usd(r.cost_usd)]
        for r in response.rows
    ]  # fmt: skip
    totals = [sum(getattr(r, f) for r in response.rows) for f in _COUNTS]
    cost = sum(r.cost_usd for r in response.rows)
    rows.append([*([""] if bucketed else []), "TOTAL", *(str(t) for t in totals), usd(cost)])
    headers = [group, "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "CACHE_READ", "CACHE_WRITE"]
    print(table([*(["BUCKET"] if bucketed else []), *headers, "COST"], rows))
    unpriced = sum(r.unpriced for r in response.rows)
    if unpriced:
        print(f"\n{unpriced_note(unpriced, 'COST')}")
    return EXIT_OK


def _name(key: str, group: str) -> str:
    if group == "USER" and not key:
        return NO_USER
    return key
