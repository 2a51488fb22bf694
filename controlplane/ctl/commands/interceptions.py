"""`aibridgectl interceptions list|show`: the calls bridged intercepted, newest first."""

from __future__ import annotations

import argparse

from aibridge.v1 import admin_pb2
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.filters import add_filtering_group, add_list_command, interception_filter
from controlplane.ctl.output import cost_text, emit_json, fmt_time, table, terminal_width
from controlplane.ctl.records import interception_text, status_text, token_text


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    sub, parent = add_filtering_group(
        commands, "interceptions", "intercepted calls: prompts, tool calls, tokens"
    )

    add_list_command(sub, parent, "interceptions", "recent calls, newest first", cmd_list)

    show = sub.add_parser("show", parents=[parent], help="one call, its texts whole")
    show.add_argument("id", metavar="ID", help="the request id (x-aibridge-request-id)")
    show.set_defaults(func=cmd_show)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.ListInterceptionsRequest(filter=interception_filter(args))
    response = ctx.collect(ctx.stub.ListInterceptions, request, "interceptions", args.limit)
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.interceptions:
        print("no interceptions match")
        return EXIT_OK
    width = terminal_width()
    rows = [_row(i) for i in response.interceptions]
    listing = table(_HEADERS, rows, fit=width)
    if max(len(line) for line in listing.splitlines()) > width:
        # No room for the prompt's least: USER and COST give way (--json has them).
        narrow = [i for i, h in enumerate(_HEADERS) if h not in _WIDE_ONLY]
        listing = table(
            [_HEADERS[i] for i in narrow], [[r[i] for i in narrow] for r in rows], fit=width
        )
    print(listing)
    return EXIT_OK


_HEADERS = [
    "ID", "STARTED", "TOKEN", "USER", "CLIENT", "PROVIDER", "MODEL", "STATUS", "IN", "OUT",
    "COST", "TOOLS", "PROMPT",
]  # fmt: skip
_WIDE_ONLY = ("USER", "COST")


def _row(i: admin_pb2.InterceptionRecord) -> list[str]:
    return [
        i.id,
        fmt_time(i, "started_at"),
        token_text(i),
        i.user_name or "-",
        i.client,
        i.provider_name,
        i.model,
        status_text(i),
        str(i.input_tokens),
        str(i.output_tokens),
        cost_text(i),
        str(len(i.tool_calls)),
        i.prompt,
    ]


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    record = ctx.call(ctx.stub.GetInterception, admin_pb2.GetInterceptionRequest(id=args.id))
    if ctx.json:
        emit_json(record)
    else:
        print(interception_text(record))
    return EXIT_OK
