"""The one path of every change (providers create/update/delete, tokens create/revoke):
`--expect-revision` onto the request, the call, the answer as JSON or a sentence, then
`--wait` for the fleet to apply the new revision."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc

from aibridge.v1 import admin_pb2
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_ERROR, EXIT_OK, EXIT_WAIT_INCOMPLETE
from controlplane.ctl.options import non_negative_int, positive_float
from controlplane.ctl.output import emit_json, presence, table

DEFAULT_WAIT_TIMEOUT = 30.0
DEFAULT_FLEET_GRACE = 30.0
MAX_FLEET_GRACE = 3600.0  # the API's limit (WaitForRevisionRequest.fleet_grace_seconds)
# The WaitForRevision call outlives the server-side wait so that the server answers
# with the laggards instead of the client giving up first.
WAIT_DEADLINE_MARGIN = 5.0


class ChangeRequest(Protocol):
    """Every mutation's request carries the revision it expects (when one is given) and
    its idempotency key."""

    expected_revision: int
    request_id: str


def _fleet_grace(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if not 0 <= number <= MAX_FLEET_GRACE:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_FLEET_GRACE:g}: {value}")
    return number


def add_mutation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expect-revision",
        type=non_negative_int,
        metavar="N",
        help="refuse the change (ABORTED) unless the current revision is N",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="after the change, wait until every subscriber has applied it, those "
        "disconnected within --fleet-grace included (exit 3 if not)",
    )
    parser.add_argument(
        "--wait-timeout",
        type=positive_float,
        default=DEFAULT_WAIT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long --wait waits (default {DEFAULT_WAIT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--fleet-grace",
        type=_fleet_grace,
        default=DEFAULT_FLEET_GRACE,
        metavar="SECONDS",
        help="--wait also waits for the subscribers disconnected less than this long ago: "
        f"they may be reconnecting (default {DEFAULT_FLEET_GRACE:g}; 0: connected ones only)",
    )


def mutate(
    ctx: Context,
    args: argparse.Namespace,
    rpc: Callable[..., Any],
    request: ChangeRequest,
    describe: Callable[[Any], None],
) -> int:
    """Makes the change `rpc(request)` and returns the exit code; `describe` prints the
    response for a reader (`--json` prints it whole instead)."""
    if args.expect_revision is not None:
        request.expected_revision = args.expect_revision
    request.request_id = ctx.next_request_id()
    response = ctx.call(rpc, request)
    note_replay(ctx, request.request_id, f", at revision {response.revision}: nothing "
                "changed now, and this is its first answer")  # fmt: skip
    # Printed before any --wait, so that a lagging subscriber cannot cost the user the
    # answer: for a new token, its only copy.
    if ctx.json:
        emit_json(response)
    else:
        describe(response)
    if getattr(response, "replayed", False):
        return EXIT_ERROR  # the first answer had a new token's secret, and this has not
    if not args.wait:
        return EXIT_OK
    return wait_for_revision(ctx, response.revision, args.wait_timeout, args.fleet_grace)


def note_replay(ctx: Context, request_id: str, what: str) -> None:
    """Says on stderr that the last call was a replay: `what` says what its answer is."""
    if ctx.replayed:
        print(f"note: request id {request_id} was applied already{what}", file=sys.stderr)


def wait_for_revision(ctx: Context, revision: int, wait_timeout: float, fleet_grace: float) -> int:
    request = admin_pb2.WaitForRevisionRequest(
        revision=revision, timeout_seconds=wait_timeout, fleet_grace_seconds=fleet_grace
    )
    try:
        response = ctx.call(
            ctx.stub.WaitForRevision,
            request,
            timeout=wait_timeout + WAIT_DEADLINE_MARGIN,
            retry_deadline=False,
        )
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
        print(
            f"error: gave up waiting for revision {revision} after "
            f"{wait_timeout + WAIT_DEADLINE_MARGIN:g}s without an answer",
            file=sys.stderr,
        )
        return EXIT_WAIT_INCOMPLETE
    if response.done:
        if not ctx.json:
            print(f"revision {revision} applied by every subscriber")
        return EXIT_OK
    print(
        f"error: revision {revision} not applied by every subscriber within "
        f"{wait_timeout:g}s; lagging:",
        file=sys.stderr,
    )
    now = datetime.now(UTC)
    rows = [
        [s.id, s.role, s.address, str(s.applied_version), presence(s, now), s.last_error]
        for s in response.laggards
    ]
    print(table(["ID", "ROLE", "ADDRESS", "APPLIED", "STATE", "LAST_ERROR"], rows), file=sys.stderr)
    return EXIT_WAIT_INCOMPLETE
