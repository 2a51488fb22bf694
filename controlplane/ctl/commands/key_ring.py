"""`aibridgectl keys reencrypt`: every stored provider key under the first key of the
encryption key ring, a batch per call, so that the ring's older keys can be removed."""

from __future__ import annotations

import argparse

from aibridge.v1 import admin_pb2
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.mutation import note_replay
from controlplane.ctl.options import positive_int
from controlplane.ctl.output import emit_json

DEFAULT_BATCH = 100


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    keys = commands.add_parser("keys", parents=[everywhere], help="the encryption key ring")
    sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    reencrypt = sub.add_parser(
        "reencrypt",
        parents=[everywhere],
        help="re-encrypt every stored provider key under the ring's first key, in audited "
        "batches; run it again after an interruption",
    )
    reencrypt.add_argument(
        "--batch-size", type=positive_int, default=DEFAULT_BATCH, metavar="N",
        help=f"keys per transaction (default {DEFAULT_BATCH}, at most 10,000)",
    )  # fmt: skip
    reencrypt.set_defaults(func=cmd_reencrypt)


def cmd_reencrypt(ctx: Context, args: argparse.Namespace) -> int:
    done = 0
    while True:  # each call moves at least one key or says none are left: bounded
        request = admin_pb2.ReencryptKeysRequest(
            batch_size=args.batch_size, request_id=ctx.next_request_id()
        )
        batch = ctx.call(ctx.stub.ReencryptKeys, request)
        note_replay(ctx, request.request_id, ": these counts are its first answer's")
        done += batch.reencrypted
        if not ctx.json and batch.reencrypted:
            print(f"re-encrypted {batch.reencrypted} ({batch.remaining} left)")
        if batch.remaining == 0 or batch.reencrypted == 0:
            break
    if ctx.json:
        emit_json(admin_pb2.ReencryptKeysResponse(reencrypted=done, remaining=batch.remaining))
    elif batch.remaining == 0:
        print(f"every stored key is under the ring's first key ({done} re-encrypted now)")
    return EXIT_OK
