"""`aibridgectl audit`: recent admin changes, newest first."""

from __future__ import annotations

import argparse

from aibridge.v1 import admin_pb2
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.options import positive_int
from controlplane.ctl.output import emit_json, fmt_time, table

DEFAULT_AUDIT_LIMIT = 50


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    audit = commands.add_parser("audit", parents=[everywhere], help="recent admin changes")
    audit.add_argument(
        "--limit",
        type=positive_int,
        default=DEFAULT_AUDIT_LIMIT,
        metavar="N",
        help=f"at most N entries, newest first (default {DEFAULT_AUDIT_LIMIT})",
    )
    audit.set_defaults(func=cmd_audit)


def cmd_audit(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.call(ctx.stub.ListAudit, admin_pb2.ListAuditRequest(limit=args.limit))
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.entries:
        print("no audit entries")
        return EXIT_OK
    rows = [
        [str(e.id), fmt_time(e, "at"), e.actor, e.action, e.target, str(e.revision), e.details]
        for e in response.entries
    ]
    print(table(["ID", "AT", "ACTOR", "ACTION", "TARGET", "REVISION", "DETAILS"], rows))
    return EXIT_OK
