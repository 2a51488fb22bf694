"""Command-line values (durations, times, numbers) and the options every command accepts."""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from common import wire
from common.channel import DEFAULT_CONTROLPLANE
from common.flags import DURATION, Flag, add_argument, parse_duration
from common.state import DEFAULT_STATE_DIR

DEFAULT_TIMEOUT = 10.0


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (naive means UTC) or a duration meaning that long before `now`."""
    text = value.strip()
    if DURATION.match(text.lower()):
        current = now if now is not None else datetime.now(UTC)
        return current - timedelta(seconds=parse_duration(text))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {value!r}: use ISO 8601 (2026-11-01, 2026-11-01T10:00:00Z) "
            "or a duration meaning that long ago (24h, 7d)"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return number


def positive_int(value: str) -> int:
    number = non_negative_int(value)
    if number == 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return number


# A later change of the same invocation adds "/N" to the ID: room is left for it.
MAX_REQUEST_ID = wire.MAX_REQUEST_ID - 8


def request_id(value: str) -> str:
    if not (0 < len(value) <= MAX_REQUEST_ID and value.isascii() and value.isprintable()):
        raise argparse.ArgumentTypeError(
            f"must be 1 to {MAX_REQUEST_ID} printable ASCII characters: {value!r}"
        )
    return value


# The options accepted anywhere on the line, with their AIBRIDGE_* variables.
GLOBAL_FLAGS = (
    Flag("--json", switch=True, help="print the API response as one JSON document"),
    Flag(
        "--controlplane",
        default=DEFAULT_CONTROLPLANE,
        metavar="ADDR[,ADDR...]",
        help="controlplane gRPC address (host:port); several, separated by commas: a call "
        "one cannot answer is tried again through the next",
    ),
    # Named after the secret it holds, not after the flag.
    Flag(
        "--token",
        env_var="AIBRIDGE_ADMIN_TOKEN",
        help="admin token (default: <state-dir>/admin.token)",
    ),
    Flag("--state-dir", default=DEFAULT_STATE_DIR, metavar="DIR", help="local state directory"),
    Flag(
        "--timeout",
        default=DEFAULT_TIMEOUT,
        type=positive_float,
        metavar="SECONDS",
        help="deadline of each call, in seconds",
    ),
    Flag(
        "--ca-cert",
        metavar="PATH",
        help="CA certificate that signs the controlplane's certificate",
    ),
    Flag("--client-cert", metavar="PATH", help="client certificate for mutual TLS"),
    Flag("--client-key", metavar="PATH", help="client certificate's private key"),
)


def add_global_options(
    parser: argparse.ArgumentParser,
    *,
    suppress: bool,
    env: Mapping[str, str] | None = None,
    leave_out: Collection[str] = (),
) -> None:
    """The global options, on the top-level parser (which holds the real defaults) or,
    with `suppress`, on a subparser: there they have no default, so that leaving one out
    after the subcommand does not overwrite a value given before it. `leave_out`: flags a
    subcommand gives a meaning of its own."""
    for flag in GLOBAL_FLAGS:
        if flag.name not in leave_out:
            add_argument(parser, flag, env, hidden=suppress)
    # No AIBRIDGE_ variable: a key belongs to one invocation, and one a script exported
    # would replay its first change in place of every later one.
    parser.add_argument(
        "--request-id",
        type=request_id,
        metavar="ID",
        default=argparse.SUPPRESS if suppress else None,
        help=argparse.SUPPRESS
        if suppress
        else "the change's idempotency key (default: a new one per invocation); run again "
        "with the same ID, a change already applied is not applied again, and its first "
        "answer is printed",
    )


def add_period_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        type=parse_time,
        metavar="T",
        help="ISO 8601 time (naive is UTC) or a duration ago, like 24h",
    )
    parser.add_argument("--until", type=parse_time, metavar="T", help="same forms as --since")


def check_period(args: argparse.Namespace, command: str) -> str | None:
    if args.since and args.until and args.since > args.until:
        return f"{command}: --since is after --until"
    return None


class Period(Protocol):
    """A request (or filter) with a `since` and an `until`."""

    @property
    def since(self) -> Timestamp: ...
    @property
    def until(self) -> Timestamp: ...


def set_period(target: Period, args: argparse.Namespace) -> None:
    """`--since` and `--until`, when given, onto `target`."""
    if args.since is not None:
        target.since.CopyFrom(to_timestamp(args.since))
    if args.until is not None:
        target.until.CopyFrom(to_timestamp(args.until))
