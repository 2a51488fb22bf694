"""`aibridgectl tokens create|list|revoke`: gateway tokens for clients."""

from __future__ import annotations

import argparse
import sys

from aibridge.v1 import admin_pb2
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.mutation import add_mutation_options, mutate
from controlplane.ctl.options import parse_duration
from controlplane.ctl.output import emit_json, fmt_time, table


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    group = commands.add_parser("tokens", parents=[everywhere], help="gateway tokens for clients")
    sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    create = sub.add_parser("create", parents=[everywhere], help="issue a token (shown once)")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--expires-in",
        type=parse_duration,
        metavar="DURATION",
        help="like 90s, 15m, 12h, 30d, 2w or seconds (default: never)",
    )
    create.add_argument(
        "--user", metavar="USER", default="", help="the user (name or id) it belongs to"
    )
    add_mutation_options(create)
    create.set_defaults(func=cmd_create)

    lst = sub.add_parser("list", parents=[everywhere], help="list tokens")
    lst.add_argument("--all", action="store_true", help="include revoked tokens")
    lst.set_defaults(func=cmd_list)

    revoke = sub.add_parser("revoke", parents=[everywhere], help="revoke a token")
    revoke.add_argument("ref", metavar="NAME|ID")
    add_mutation_options(revoke)
    revoke.set_defaults(func=cmd_revoke)


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.CreateTokenResponse) -> None:
        info = response.info
        expires = fmt_time(info, "expires_at", unset="never")
        owner = f" for user {info.user}" if info.user else ""
        if response.replayed:
            # Its plaintext was only in the first answer, which may never have arrived.
            print(
                f"error: token {info.name} ({info.id}){owner} was already created by this "
                f"request, at revision {response.revision}; its secret is not stored and "
                "cannot be shown again. If you do not have it, revoke the token (aibridgectl "
                f"tokens revoke {info.id}) and create another.",
                file=sys.stderr,
            )
            return
        print(
            f"created token {info.name} ({info.id}){owner} at revision {response.revision}, "
            f"expires {expires}"
        )
        print()
        print(f"    {response.token}")
        print()
        print("Copy this token now: it is not stored and will not be shown again.")

    request = admin_pb2.CreateTokenRequest(
        name=args.name, expires_in_seconds=args.expires_in or 0, user=args.user
    )
    return mutate(ctx, args, ctx.stub.CreateToken, request, describe)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.ListTokensRequest(include_revoked=args.all)
    response = ctx.call(ctx.stub.ListTokens, request)
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.tokens:
        print("no tokens" if args.all else "no live tokens (--all includes revoked ones)")
        return EXIT_OK
    rows = [
        [
            t.name,
            t.id,
            t.hint,
            fmt_time(t, "created_at"),
            fmt_time(t, "expires_at", unset="never"),
            fmt_time(t, "revoked_at"),
            t.user,
        ]
        for t in response.tokens
    ]
    print(table(["NAME", "ID", "HINT", "CREATED", "EXPIRES", "REVOKED", "USER"], rows))
    return EXIT_OK


def cmd_revoke(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.TokenResponse) -> None:
        info = response.info
        print(f"revoked token {info.name} ({info.id}) at revision {response.revision}")

    request = admin_pb2.RevokeTokenRequest(ref=args.ref)
    return mutate(ctx, args, ctx.stub.RevokeToken, request, describe)
