"""`aibridgectl settings list|set`: the gateway's settings (what is recorded, …)."""

from __future__ import annotations

import argparse

from aibridge.v1 import admin_pb2
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.mutation import add_mutation_options, mutate
from controlplane.ctl.output import emit_json, table, terminal_width


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    group = commands.add_parser(
        "settings", parents=[everywhere], help="gateway settings: what is recorded, …"
    )
    sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    lst = sub.add_parser("list", parents=[everywhere], help="every setting and its value")
    lst.set_defaults(func=cmd_list)

    set_ = sub.add_parser("set", parents=[everywhere], help="change a setting")
    set_.add_argument("key", metavar="KEY", help="like record.prompts")
    set_.add_argument("value", metavar="VALUE", help="on/off for switches, a number for sizes")
    add_mutation_options(set_)
    set_.set_defaults(func=cmd_set)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.call(ctx.stub.ListSettings, admin_pb2.ListSettingsRequest())
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    rows = [[s.key, s.value, s.default_value, s.description] for s in response.settings]
    print(table(["KEY", "VALUE", "DEFAULT", "DESCRIPTION"], rows, fit=terminal_width()))
    return EXIT_OK


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.SetSettingResponse) -> None:
        s = response.setting
        print(f"set {s.key} to {s.value} at revision {response.revision}")

    request = admin_pb2.SetSettingRequest(key=args.key, value=args.value)
    return mutate(ctx, args, ctx.stub.SetSetting, request, describe)
