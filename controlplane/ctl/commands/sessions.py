"""`aibridgectl sessions list|show`: a client's sessions, and each one's calls in order."""

from __future__ import annotations

import argparse

from aibridge.v1 import admin_pb2
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.filters import (
    add_filtering_group,
    add_list_command,
    add_token_filter,
    interception_filter,
)
from controlplane.ctl.options import positive_int
from controlplane.ctl.output import emit_json, fmt_time, table, terminal_width
from controlplane.ctl.records import timeline_entry, token_text


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    sub, parent = add_filtering_group(
        commands, "sessions", "client sessions (Claude Code, Codex, …)"
    )

    add_list_command(sub, parent, "sessions", "sessions, most recently active first", cmd_list)

    show = sub.add_parser("show", parents=[parent], help="a session's calls, in order")
    show.add_argument("session_id", metavar="ID")
    add_token_filter(show, "only the session under this gateway token")
    show.add_argument(
        "--limit", type=positive_int, metavar="N", help="its first N calls (default: all)"
    )
    show.set_defaults(func=cmd_show)


def _summary_row(s: admin_pb2.SessionSummary) -> list[str]:
    return [
        s.session_id,
        s.client,
        token_text(s),
        fmt_time(s, "first_seen"),
        fmt_time(s, "last_seen"),
        *(str(n) for n in (s.interceptions, s.input_tokens, s.output_tokens)),
        *(str(n) for n in (s.tool_calls, s.errors)),
    ]


SUMMARY_HEADERS = ["SESSION", "CLIENT", "TOKEN", "FIRST", "LAST"] + [
    "CALLS",
    "IN",
    "OUT",
    "TOOLS",
    "ERRORS",
]


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.ListSessionsRequest(filter=interception_filter(args))
    response = ctx.collect(ctx.stub.ListSessions, request, "sessions", args.limit)
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.sessions:
        print("no sessions match")
        return EXIT_OK
    print(table(SUMMARY_HEADERS, [_summary_row(s) for s in response.sessions]))
    return EXIT_OK


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.GetSessionRequest(session_id=args.session_id, token=args.token_filter or "")
    response = ctx.collect(ctx.stub.GetSession, request, "interceptions", args.limit)
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    print(table(SUMMARY_HEADERS, [_summary_row(s) for s in response.sessions]))
    # Any caller may send any session id: several tokens' calls under one are told apart.
    several = len(response.sessions) > 1
    if several:
        print(f"{len(response.sessions)} tokens used this session id: each call shows its token")
    width = terminal_width()
    for record in response.interceptions:
        print()
        print(timeline_entry(record, width, token=several))
    if response.next_cursor:
        print(f"\n(more calls follow: --limit {len(response.interceptions)} reached)")
    return EXIT_OK
