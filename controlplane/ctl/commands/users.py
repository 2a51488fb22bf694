"""`aibridgectl users create|list|get|update|enable|disable|delete`: the people gateway
tokens belong to."""

from __future__ import annotations

import argparse

from aibridge.v1 import admin_pb2
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.mutation import add_mutation_options, mutate
from controlplane.ctl.output import emit_json, fmt_time, key_values, table, yes_no


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    group = commands.add_parser("users", parents=[everywhere], help="users tokens belong to")
    sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    create = sub.add_parser("create", parents=[everywhere], help="add a user")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--email", metavar="EMAIL", default="")
    create.add_argument("--disabled", action="store_true", help="create them disabled")
    add_mutation_options(create)
    create.set_defaults(func=cmd_create)

    sub.add_parser("list", parents=[everywhere], help="list users").set_defaults(func=cmd_list)

    get = sub.add_parser("get", parents=[everywhere], help="show one user")
    get.add_argument("ref", metavar="NAME|ID")
    get.set_defaults(func=cmd_get)

    update = sub.add_parser("update", parents=[everywhere], help="change a user's email")
    update.add_argument("ref", metavar="NAME|ID")
    update.add_argument("--email", metavar="EMAIL", required=True, help="'' removes it")
    add_mutation_options(update)
    update.set_defaults(func=cmd_update)

    for verb, enabled, what in (
        ("enable", True, "let a user's tokens in again"),
        ("disable", False, "refuse all of a user's tokens"),
    ):
        switch = sub.add_parser(verb, parents=[everywhere], help=what)
        switch.add_argument("ref", metavar="NAME|ID")
        add_mutation_options(switch)
        switch.set_defaults(func=cmd_switch, enabled=enabled)

    delete = sub.add_parser(
        "delete", parents=[everywhere], help="delete a user, revoking their tokens"
    )
    delete.add_argument("ref", metavar="NAME|ID")
    add_mutation_options(delete)
    delete.set_defaults(func=cmd_delete)


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.UserResponse) -> None:
        u = response.user
        state = "" if u.enabled else ", disabled"
        print(f"created user {u.name} ({u.id}){state} at revision {response.revision}")

    request = admin_pb2.CreateUserRequest(name=args.name, email=args.email, disabled=args.disabled)
    return mutate(ctx, args, ctx.stub.CreateUser, request, describe)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.call(ctx.stub.ListUsers, admin_pb2.ListUsersRequest())
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.users:
        print(f"no users (revision {response.revision})")
        return EXIT_OK
    rows = [
        [u.name, yes_no(u.enabled), u.email, str(u.tokens), ",".join(u.teams), u.id]
        for u in response.users
    ]
    print(table(["NAME", "ENABLED", "EMAIL", "TOKENS", "TEAMS", "ID"], rows))
    return EXIT_OK


def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    user = ctx.call(ctx.stub.GetUser, admin_pb2.GetUserRequest(ref=args.ref))
    if ctx.json:
        emit_json(user)
        return EXIT_OK
    print(
        key_values(
            [
                ("id", user.id),
                ("name", user.name),
                ("email", user.email or "-"),
                ("enabled", yes_no(user.enabled)),
                ("teams", ", ".join(user.teams) or "-"),
                ("tokens", str(user.tokens)),
                ("created", fmt_time(user, "created_at")),
                ("updated", fmt_time(user, "updated_at")),
            ]
        )
    )
    return EXIT_OK


def cmd_update(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.UserResponse) -> None:
        u = response.user
        print(f"updated user {u.name} ({u.id}) at revision {response.revision}")

    request = admin_pb2.UpdateUserRequest(ref=args.ref, email=args.email)
    return mutate(ctx, args, ctx.stub.UpdateUser, request, describe)


def cmd_switch(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.UserResponse) -> None:
        u = response.user
        done = "enabled" if u.enabled else "disabled"
        print(
            f"{done} user {u.name} ({u.id}) and their {u.tokens} token(s) "
            f"at revision {response.revision}"
        )

    request = admin_pb2.UpdateUserRequest(ref=args.ref, enabled=args.enabled)
    return mutate(ctx, args, ctx.stub.UpdateUser, request, describe)


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.DeleteUserResponse) -> None:
        print(
            f"deleted user {response.name} ({response.id}) and revoked "
            f"{response.revoked_tokens} token(s) at revision {response.revision}"
        )

    request = admin_pb2.DeleteUserRequest(ref=args.ref)
    return mutate(ctx, args, ctx.stub.DeleteUser, request, describe)
