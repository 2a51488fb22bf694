"""`aibridgectl teams create|list|get|delete|add-member|remove-member`: groups of users."""

from __future__ import annotations

import argparse

from aibridge.v1 import admin_pb2
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.mutation import add_mutation_options, mutate
from controlplane.ctl.output import emit_json, fmt_time, key_values, table


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    group = commands.add_parser("teams", parents=[everywhere], help="teams of users")
    sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    create = sub.add_parser("create", parents=[everywhere], help="add a team")
    create.add_argument("name", metavar="NAME")
    add_mutation_options(create)
    create.set_defaults(func=cmd_create)

    sub.add_parser("list", parents=[everywhere], help="list teams").set_defaults(func=cmd_list)

    get = sub.add_parser("get", parents=[everywhere], help="show one team")
    get.add_argument("ref", metavar="NAME|ID")
    get.set_defaults(func=cmd_get)

    delete = sub.add_parser("delete", parents=[everywhere], help="delete a team")
    delete.add_argument("ref", metavar="NAME|ID")
    add_mutation_options(delete)
    delete.set_defaults(func=cmd_delete)

    for verb, func, what in (
        ("add-member", cmd_add_member, "put a user in a team"),
        ("remove-member", cmd_remove_member, "take a user out of a team"),
    ):
        member = sub.add_parser(verb, parents=[everywhere], help=what)
        member.add_argument("team", metavar="TEAM")
        member.add_argument("user", metavar="USER")
        add_mutation_options(member)
        member.set_defaults(func=func)


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.TeamResponse) -> None:
        t = response.team
        print(f"created team {t.name} ({t.id}) at revision {response.revision}")

    return mutate(
        ctx, args, ctx.stub.CreateTeam, admin_pb2.CreateTeamRequest(name=args.name), describe
    )


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.call(ctx.stub.ListTeams, admin_pb2.ListTeamsRequest())
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.teams:
        print(f"no teams (revision {response.revision})")
        return EXIT_OK
    rows = [[t.name, str(len(t.members)), t.id, ",".join(t.members)] for t in response.teams]
    print(table(["NAME", "MEMBERS", "ID", "USERS"], rows))
    return EXIT_OK


def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    team = ctx.call(ctx.stub.GetTeam, admin_pb2.GetTeamRequest(ref=args.ref))
    if ctx.json:
        emit_json(team)
        return EXIT_OK
    print(
        key_values(
            [
                ("id", team.id),
                ("name", team.name),
                ("members", ", ".join(team.members) or "-"),
                ("created", fmt_time(team, "created_at")),
            ]
        )
    )
    return EXIT_OK


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.DeleteTeamResponse) -> None:
        print(f"deleted team {response.name} ({response.id}) at revision {response.revision}")

    return mutate(
        ctx, args, ctx.stub.DeleteTeam, admin_pb2.DeleteTeamRequest(ref=args.ref), describe
    )


def cmd_add_member(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.TeamResponse) -> None:
        print(f"added {args.user} to team {response.team.name} at revision {response.revision}")

    request = admin_pb2.TeamMemberRequest(team=args.team, user=args.user)
    return mutate(ctx, args, ctx.stub.AddTeamMember, request, describe)


def cmd_remove_member(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.TeamResponse) -> None:
        print(f"removed {args.user} from team {response.team.name} at revision {response.revision}")

    request = admin_pb2.TeamMemberRequest(team=args.team, user=args.user)
    return mutate(ctx, args, ctx.stub.RemoveTeamMember, request, describe)
