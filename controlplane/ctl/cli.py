"""The command line: the parser of every command, and running one of them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

import grpc

from controlplane.ctl.api import Context, connect, describe_rpc_error
from controlplane.ctl.commands import (
    audit,
    interceptions,
    key_ring,
    limits,
    prices,
    providers,
    sessions,
    settings,
    spend,
    status,
    teams,
    tokens,
    usage,
    users,
)
from controlplane.ctl.errors import EXIT_ERROR, EXIT_INTERRUPTED, CtlError
from controlplane.ctl.options import add_global_options


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: the top level would read a subcommand's --client as an
    # abbreviated --client-cert (argparse looks at the whole line; filters.py).
    parser = argparse.ArgumentParser(
        prog="aibridgectl",
        allow_abbrev=False,
        description="Administer an aibridge controlplane: providers, tokens, users, teams, "
        "limits, prices, settings, usage, spend, interceptions, sessions, audit.",
    )
    add_global_options(parser, suppress=False)
    everywhere = argparse.ArgumentParser(add_help=False)
    add_global_options(everywhere, suppress=True)

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups = (status, providers, tokens, users, teams, limits, prices, settings, usage, spend,
              interceptions, sessions, audit, key_ring)  # fmt: skip
    for group in groups:
        group.register(commands, everywhere)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Runs one command and returns its exit code (argparse errors raise SystemExit(2))."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Rules argparse cannot express; these exit 2 like every other usage error.
    check: Callable[[argparse.Namespace], str | None] | None = getattr(args, "check", None)
    problem = check(args) if check is not None else None
    if problem:
        parser.error(problem)
    ctx: Context | None = None
    try:
        with connect(args) as ctx:
            return int(args.func(ctx, args))
    except CtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except grpc.RpcError as exc:
        tried = ", ".join(dict.fromkeys(ctx.attempted)) if ctx and ctx.attempted else ""
        print(f"error: {describe_rpc_error(exc, tried or args.controlplane)}", file=sys.stderr)
        if ctx and ctx.unanswered:
            print(
                "the change may have been applied: to make sure it is applied once, run the "
                f"same command again with --request-id {ctx.request_id}",
                file=sys.stderr,
            )
        return EXIT_ERROR
    except OSError as exc:  # unreadable TLS files
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> NoReturn:
    sys.exit(run(argv))
