"""`aibridgectl status`: the revision, the encryption key ring and every subscriber."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime

from aibridge.v1 import admin_pb2
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.output import emit_json, fmt_time, key_values, presence, table


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    status = commands.add_parser(
        "status",
        parents=[everywhere],
        help="revision and every subscriber, connected or recently disconnected",
    )
    status.set_defaults(func=cmd_status)


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    status = ctx.call(ctx.stub.GetStatus, admin_pb2.GetStatusRequest())
    if ctx.json:
        emit_json(status)
        return EXIT_OK
    print(
        key_values(
            [
                ("revision", str(status.revision)),
                ("snapshot version", str(status.snapshot_version)),
                ("controlplane", status.controlplane_id or "-"),
                ("subscribers", _count(status.subscribers)),
            ]
        )
    )
    if status.key_ring:
        print("\nencryption key ring (the first encrypts; a key protecting none can go):")
        rows = [[str(e.position), e.fingerprint, str(e.stored_keys)] for e in status.key_ring]
        print(table(["POSITION", "FINGERPRINT", "STORED_KEYS"], rows))
    if status.undecryptable_keys:
        print(f"{status.undecryptable_keys} stored keys cannot be decrypted by any of them")
    if status.subscribers:
        print()
        now = datetime.now(UTC)
        rows = [
            [
                s.id,
                s.role,
                s.address,
                fmt_time(s, "connected_since"),
                str(s.applied_version),
                s.instance,
                presence(s, now),
                s.last_error,
            ]
            for s in status.subscribers
        ]
        headers = ["ID", "ROLE", "ADDRESS", "CONNECTED_SINCE", "APPLIED", "INSTANCE", "STATE"]
        print(table([*headers, "LAST_ERROR"], rows))
        skipped = [(s, p) for s in status.subscribers for p in s.skipped]
        if skipped:
            print("\nskipped providers:")
            print(
                table(
                    ["SUBSCRIBER", "PROVIDER", "ID", "REASON"],
                    [[s.id, p.name, p.provider_id, p.reason] for s, p in skipped],
                )
            )
    return EXIT_OK


def _count(subscribers: Sequence[admin_pb2.Subscriber]) -> str:
    away = sum(1 for s in subscribers if not s.connected)
    return f"{len(subscribers)} ({away} disconnected)" if away else str(len(subscribers))
