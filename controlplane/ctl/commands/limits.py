"""`aibridgectl limits set|list|clear`: limit sets on default, user:, team: and token:
scopes. Every set that applies to a request must pass."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable

from aibridge.v1 import admin_pb2
from common.money import usd
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.mutation import add_mutation_options, mutate
from controlplane.ctl.options import positive_int
from controlplane.ctl.output import emit_json, table

CLEAR = "none"  # an option's value that removes the limit
INT64_MAX = 2**63 - 1
SCOPES = "default, user:NAME, team:NAME or token:NAME"


def _or_none(parse: Callable[[str], object]) -> Callable[[str], object]:
    def parse_or_none(value: str) -> object:
        return CLEAR if value.strip().lower() == CLEAR else parse(value)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")
    return parse_or_none


def _count(value: str) -> int:
    number = positive_int(value)
    if number > INT64_MAX:
        raise argparse.ArgumentTypeError(f"too large: {value}")
    return number


def _usd(value: str) -> float:
    try:
        return float(value.strip().removeprefix("$").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid amount {value!r}") from None


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


# option → (SetLimitsRequest field, parser, metavar, help)
_OPTIONS: dict[str, tuple[str, Callable[[str], object], str, str]] = {
    "--rpm": ("requests_per_minute", _count, "N", "requests per minute"),
    "--tpm": ("tokens_per_minute", _count, "N", "input + output tokens per minute"),
    "--concurrent": ("max_concurrent", _count, "N", "requests in flight"),
    "--monthly-budget": ("monthly_budget_usd", _usd, "USD", "USD per UTC calendar month"),
    "--providers": ("providers", _names, "a,b", "provider names allowed ('none': all)"),
    "--models": ("models", _names, "'gpt-5*,claude-*'", "model patterns allowed ('none': all)"),
}


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    group = commands.add_parser(
        "limits", parents=[everywhere], help="rate, concurrency, budget and model limits"
    )
    sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    set_ = sub.add_parser(
        "set",
        parents=[everywhere],
        help="set limits of a scope (the others it has are kept)",
        description="Each option given replaces the scope's limit; a value of 'none' "
        "removes it. Every limit set that applies to a request must pass.",
    )
    set_.add_argument("scope", metavar="SCOPE", help=SCOPES)
    for option, (dest, parse, metavar, text) in _OPTIONS.items():
        set_.add_argument(
            option, dest=dest, type=_or_none(parse), metavar=metavar, help=f"{text}; none: no limit"
        )
    member = set_.add_mutually_exclusive_group()
    member.add_argument(
        "--per-member",
        dest="per_member",
        action="store_const",
        const=True,
        help="a team's limits apply to each member separately",
    )
    member.add_argument(
        "--no-per-member",
        dest="per_member",
        action="store_const",
        const=False,
        help="a team's limits apply to its members' total",
    )
    add_mutation_options(set_)
    set_.set_defaults(func=cmd_set, check=check_set)

    sub.add_parser("list", parents=[everywhere], help="every limit set").set_defaults(func=cmd_list)

    clear = sub.add_parser("clear", parents=[everywhere], help="delete a scope's limit set")
    clear.add_argument("scope", metavar="SCOPE", help=SCOPES)
    add_mutation_options(clear)
    clear.set_defaults(func=cmd_clear)


def check_set(args: argparse.Namespace) -> str | None:
    given = [getattr(args, dest) for dest, *_ in _OPTIONS.values()] + [args.per_member]
    if all(value is None for value in given):
        options = ", ".join(_OPTIONS)
        return f"limits set: nothing to set (give {options}, --per-member or --no-per-member)"
    return None


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.LimitsResponse) -> None:
        print(f"set limits of {response.limits.scope} at revision {response.revision}")
        print(limits_table([response.limits]))

    request = admin_pb2.SetLimitsRequest(scope=args.scope)
    if args.per_member is not None:
        request.per_member = args.per_member
    for dest, *_ in _OPTIONS.values():
        value = getattr(args, dest)
        if value == CLEAR:
            request.clear.append(dest)
        elif isinstance(value, list):
            getattr(request, dest).values.extend(value)
            getattr(request, dest).SetInParent()  # an empty list is given too: every one
        elif value is not None:
            setattr(request, dest, value)
    return mutate(ctx, args, ctx.stub.SetLimits, request, describe)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.call(ctx.stub.ListLimits, admin_pb2.ListLimitsRequest())
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.limits:
        print("no limit sets")
        return EXIT_OK
    print(limits_table(response.limits))
    return EXIT_OK


def cmd_clear(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.ClearLimitsResponse) -> None:
        print(f"cleared the limits of {response.scope} at revision {response.revision}")

    request = admin_pb2.ClearLimitsRequest(scope=args.scope)
    return mutate(ctx, args, ctx.stub.ClearLimits, request, describe)


def limits_table(sets: Iterable[admin_pb2.Limits]) -> str:
    def count(s: admin_pb2.Limits, field: str) -> str:
        return f"{getattr(s, field):,}" if s.HasField(field) else "-"

    rows = [
        [
            s.scope + (" (per member)" if s.per_member else ""),
            count(s, "requests_per_minute"),
            count(s, "tokens_per_minute"),
            count(s, "max_concurrent"),
            usd(s.monthly_budget_usd) if s.HasField("monthly_budget_usd") else "-",
            ",".join(s.providers) or "all",
            ",".join(s.models) or "all",
        ]
        for s in sets
    ]
    headers = ["SCOPE", "RPM", "TPM", "CONCURRENT", "BUDGET/MONTH", "PROVIDERS", "MODELS"]
    return table(headers, rows)
