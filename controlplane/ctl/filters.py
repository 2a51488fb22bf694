"""The options that pick interceptions (`interceptions list`, `sessions list|show`) and
the InterceptionFilter they make.

There `--token` names the gateway token whose calls to show; the admin token, the
global `--token`, goes before the command group or in AIBRIDGE_ADMIN_TOKEN."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

from aibridge.v1 import admin_pb2
from common.tokens import could_be_plaintext
from controlplane.ctl.api import Context
from controlplane.ctl.options import (
    add_global_options,
    add_period_options,
    check_period,
    positive_int,
    set_period,
)

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")
DEFAULT_LIMIT = 50


Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_filtering_group(
    commands: Subcommands, name: str, help: str
) -> tuple[Subcommands, argparse.ArgumentParser]:
    """The command group `name`, its subcommands, and the parent they take: every global
    option but `--token`."""
    parent = argparse.ArgumentParser(add_help=False)
    add_global_options(parent, suppress=True, leave_out=("--token",))
    # No abbreviations: a parser with subcommands looks at the whole line, and would
    # take a subcommand's --client for an abbreviated --client-cert.
    group = commands.add_parser(name, parents=[parent], help=help, allow_abbrev=False)
    sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    return sub, parent


def token_ref(value: str) -> str:
    """A gateway token's name or id; a secret given here by mistake is refused, neither
    sent nor echoed."""
    if could_be_plaintext(value):
        raise argparse.ArgumentTypeError(
            "expects a gateway token's name or id (tok_…), not a secret; the admin token "
            "goes before the command (aibridgectl --token … COMMAND) or in AIBRIDGE_ADMIN_TOKEN"
        )
    return value


def add_token_filter(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument(
        "--token", dest="token_filter", type=token_ref, metavar="NAME|ID", help=help
    )


def add_filter_options(parser: argparse.ArgumentParser) -> None:
    add_period_options(parser)
    add_token_filter(parser, "only calls made with this gateway token")
    parser.add_argument(
        "--provider", metavar="NAME|ID", help="only this provider, under every name it has had"
    )
    parser.add_argument("--user", metavar="NAME|ID", help="only calls of this user's tokens")
    parser.add_argument("--model", metavar="MODEL", help="only calls for this model")
    parser.add_argument(
        "--client", metavar="CLIENT", help="only this client (claude-code, codex, curl, …)"
    )
    parser.add_argument("--session", metavar="ID", help="only this client session")
    parser.add_argument(
        "--status",
        choices=STATUS_CLASSES,
        help="only calls answered so (error: 4xx, 5xx and calls with no answer)",
    )


def add_list_command(
    sub: Subcommands,
    parent: argparse.ArgumentParser,
    group: str,
    help: str,
    func: Callable[[Context, argparse.Namespace], int],
) -> None:
    """`group list`, with the filter options and `--limit`."""
    lst = sub.add_parser("list", parents=[parent], help=help)
    add_filter_options(lst)
    lst.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N (default {DEFAULT_LIMIT})",
    )
    lst.set_defaults(func=func, check=lambda args: check_period(args, f"{group} list"))


def interception_filter(args: argparse.Namespace) -> admin_pb2.InterceptionFilter:
    selected = admin_pb2.InterceptionFilter(
        token=args.token_filter or "",
        provider=args.provider or "",
        model=args.model or "",
        client=args.client or "",
        session_id=args.session or "",
        status_class=args.status or "",
        user=args.user or "",
    )
    set_period(selected, args)
    return selected
