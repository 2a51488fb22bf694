"""aibridgectl: the administrator's command line, a thin client of the Admin gRPC API.

Exit codes: 0 success, 1 error (gRPC failure, no token, unreadable TLS file),
2 usage error (argparse), 3 a `--wait` ended before every subscriber applied the revision,
130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from aibridge.v1 import admin_pb2, admin_pb2_grpc
from common.channel import (
    DEFAULT_CONTROLPLANE,
    ClientTLS,
    auth_metadata,
    open_channel,
)
from common.flags import add_flag
from common.state import ADMIN_TOKEN_FILE, DEFAULT_STATE_DIR, read_if_exists

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_WAIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130

DEFAULT_TIMEOUT = 10.0
DEFAULT_WAIT_TIMEOUT = 30.0
DEFAULT_FLEET_GRACE = 30.0
MAX_FLEET_GRACE = 3600.0  # the API's limit (WaitForRevisionRequest.fleet_grace_seconds)
# The WaitForRevision call outlives the server-side wait so that the server answers
# with the laggards instead of the client giving up first.
WAIT_DEADLINE_MARGIN = 5.0
DEFAULT_AUDIT_LIMIT = 50
USAGE_GROUPS = ("provider", "model", "token")

_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# --- value parsing -------------------------------------------------------------------------


def parse_duration(value: str) -> int:
    """`90s`, `15m`, `12h`, `30d`, `2w` or plain seconds → seconds (positive)."""
    match = _DURATION.match(value.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid duration {value!r}: use seconds or a number with s, m, h, d or w "
            "(like 90s, 15m, 12h, 30d, 2w)"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}: must be positive")
    return seconds


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (naive means UTC) or a duration meaning that long before `now`."""
    text = value.strip()
    if _DURATION.match(text.lower()):
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


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return number


def _positive_int(value: str) -> int:
    number = _non_negative_int(value)
    if number == 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


@dataclass(frozen=True)
class KeySource:
    """A provider key as given on the command line: the key itself, or where to read it
    (a file, or `-` for standard input), so that it stays out of the process list and
    the shell's history. Sources keep their order: it is the failover order."""

    key: str = field(default="", repr=False)
    path: str = ""

    @classmethod
    def given(cls, value: str) -> KeySource:
        return cls(path="-") if value == "-" else cls(key=value)

    @classmethod
    def file(cls, path: str) -> KeySource:
        return cls(path=path)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return number


def _fleet_grace(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if not 0 <= number <= MAX_FLEET_GRACE:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_FLEET_GRACE:g}: {value}")
    return number


# --- parser --------------------------------------------------------------------------------


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options accepted anywhere on the line.

    The top-level parser holds the real defaults; every subparser gets the same options
    with SUPPRESS so that leaving them out after the subcommand does not overwrite a value
    given before it.
    """
    env = os.environ

    def flag(name: str, default: Any, help: str, **kwargs: Any) -> None:
        if suppress:
            parser.add_argument(name, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
        else:
            add_flag(parser, name, default=default, help=help, **kwargs)

    flag("--json", False, "print the API response as one JSON document", action="store_true")
    flag(
        "--controlplane",
        DEFAULT_CONTROLPLANE,
        "controlplane gRPC address (host:port)",
        metavar="ADDR",
    )
    # Named after the secret it holds, not after the flag: AIBRIDGE_ADMIN_TOKEN.
    if suppress:
        parser.add_argument("--token", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    else:
        parser.add_argument(
            "--token",
            default=env.get("AIBRIDGE_ADMIN_TOKEN"),
            help="admin token [env AIBRIDGE_ADMIN_TOKEN; default: <state-dir>/admin.token]",
        )
    flag("--state-dir", DEFAULT_STATE_DIR, "local state directory", metavar="DIR")
    flag(
        "--timeout",
        DEFAULT_TIMEOUT,
        "deadline of each call, in seconds",
        type=_positive_float,
        metavar="SECONDS",
    )
    flag(
        "--ca-cert",
        None,
        "CA certificate that signs the controlplane's certificate",
        metavar="PATH",
    )
    flag("--client-cert", None, "client certificate for mutual TLS", metavar="PATH")
    flag("--client-key", None, "client certificate's private key", metavar="PATH")


def _add_mutation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expect-revision",
        type=_non_negative_int,
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
        type=_positive_float,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aibridgectl",
        description="Administer an aibridge controlplane: providers, tokens, usage, audit.",
    )
    _add_global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, suppress=True)

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    status = commands.add_parser(
        "status",
        parents=[common],
        help="revision and every subscriber, connected or recently disconnected",
    )
    status.set_defaults(func=cmd_status)

    _build_providers(commands, common)
    _build_tokens(commands, common)

    usage = commands.add_parser("usage", parents=[common], help="usage totals")
    usage.add_argument(
        "--since",
        type=parse_time,
        metavar="T",
        help="ISO 8601 time (naive is UTC) or a duration ago, like 24h",
    )
    usage.add_argument("--until", type=parse_time, metavar="T", help="same forms as --since")
    usage.add_argument(
        "--provider", metavar="NAME|ID", help="only this provider, under every name it has had"
    )
    usage.add_argument(
        "--by", choices=USAGE_GROUPS, default="provider", help="group rows by (default provider)"
    )
    usage.set_defaults(func=cmd_usage)

    audit = commands.add_parser("audit", parents=[common], help="recent admin changes")
    audit.add_argument(
        "--limit",
        type=_positive_int,
        default=DEFAULT_AUDIT_LIMIT,
        metavar="N",
        help=f"at most N entries, newest first (default {DEFAULT_AUDIT_LIMIT})",
    )
    audit.set_defaults(func=cmd_audit)
    return parser


def _build_providers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("providers", parents=[common], help="upstream providers")
    sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    sub.add_parser("list", parents=[common], help="list providers").set_defaults(
        func=cmd_providers_list
    )

    get = sub.add_parser("get", parents=[common], help="show one provider")
    get.add_argument("ref", metavar="NAME|ID")
    get.set_defaults(func=cmd_providers_get)

    create = sub.add_parser("create", parents=[common], help="add a provider")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--type", required=True, help="openai, anthropic, openai-compatible, …")
    create.add_argument("--base-url", required=True, metavar="URL")
    _add_key_sources(create, "--key", "keys", "an API key (repeat for failover, in order)")
    create.add_argument("--display-name", metavar="TEXT")
    create.add_argument("--disabled", action="store_true", help="create it disabled")
    _add_mutation_options(create)
    create.set_defaults(func=cmd_providers_create)

    update = sub.add_parser("update", parents=[common], help="change a provider")
    update.add_argument("ref", metavar="NAME|ID")
    update.add_argument("--name", metavar="NEW", help="rename it")
    update.add_argument("--base-url", metavar="URL")
    toggle = update.add_mutually_exclusive_group()
    toggle.add_argument("--enable", dest="enabled", action="store_const", const=True)
    toggle.add_argument("--disable", dest="enabled", action="store_const", const=False)
    update.add_argument("--display-name", metavar="TEXT")
    _add_key_sources(update, "--add-key", "add_keys", "an API key to append (repeatable)")
    update.add_argument(
        "--remove-key",
        action="append",
        default=[],
        dest="remove_key_ids",
        metavar="KEY_ID",
        help="remove a key by its id (repeatable)",
    )
    _add_mutation_options(update)
    update.set_defaults(func=cmd_providers_update)

    delete = sub.add_parser("delete", parents=[common], help="delete a provider")
    delete.add_argument("ref", metavar="NAME|ID")
    _add_mutation_options(delete)
    delete.set_defaults(func=cmd_providers_delete)


def _add_key_sources(parser: argparse.ArgumentParser, flag: str, dest: str, what: str) -> None:
    """FLAG KEY|- and FLAG-file PATH, into one list: a key's source keeps its place."""
    parser.add_argument(
        flag, action="append", default=[], dest=dest, type=KeySource.given, metavar="KEY|-",
        help=f"{what}; - reads it from standard input",
    )  # fmt: skip
    parser.add_argument(
        f"{flag}-file", action="append", dest=dest, type=KeySource.file, metavar="PATH",
        help=f"{what}, read from PATH (kept out of the process list and shell history)",
    )  # fmt: skip


def _build_tokens(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("tokens", parents=[common], help="gateway tokens for clients")
    sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    create = sub.add_parser("create", parents=[common], help="issue a token (shown once)")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--expires-in",
        type=parse_duration,
        metavar="DURATION",
        help="like 90s, 15m, 12h, 30d, 2w or seconds (default: never)",
    )
    _add_mutation_options(create)
    create.set_defaults(func=cmd_tokens_create)

    lst = sub.add_parser("list", parents=[common], help="list tokens")
    lst.add_argument("--all", action="store_true", help="include revoked tokens")
    lst.set_defaults(func=cmd_tokens_list)

    revoke = sub.add_parser("revoke", parents=[common], help="revoke a token")
    revoke.add_argument("ref", metavar="NAME|ID")
    _add_mutation_options(revoke)
    revoke.set_defaults(func=cmd_tokens_revoke)


# --- calling the API -----------------------------------------------------------------------


class CtlError(Exception):
    """A failure already phrased for the user; exits 1."""


def read_keys(sources: Sequence[KeySource]) -> list[str]:
    """Each source's key. A file (or standard input) holds one key, surrounding
    whitespace aside. From a terminal, `-` asks for it without echoing it."""
    if sum(source.path == "-" for source in sources) > 1:
        raise CtlError("only one key can come from standard input (-); use --key-file for more")
    keys = []
    for source in sources:
        if not source.path:
            keys.append(source.key)
            continue
        try:
            if source.path == "-" and sys.stdin.isatty():
                text = getpass.getpass("provider key (not shown): ")
            elif source.path == "-":
                text = sys.stdin.read()
            else:
                text = Path(source.path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise CtlError(f"cannot read a key from {source.path}: {reason}") from None
        if not text.strip():
            where = "standard input" if source.path == "-" else source.path
            raise CtlError(f"{where} holds no key")
        keys.append(text.strip())
    return keys


@dataclass
class Context:
    stub: admin_pb2_grpc.AdminStub
    metadata: tuple[tuple[str, str], ...]
    timeout: float
    json: bool


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def resolve_token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    path = Path(args.state_dir) / ADMIN_TOKEN_FILE
    token = read_if_exists(path)
    if token:
        return token
    raise CtlError(
        f"no admin token: none given with --token or AIBRIDGE_ADMIN_TOKEN, and {path} does "
        "not exist. Run `make run` once (the controlplane writes that file on first start), "
        "or set AIBRIDGE_ADMIN_TOKEN (or pass --state-dir pointing at the controlplane's "
        "state directory)."
    )


def resolve_tls(args: argparse.Namespace) -> ClientTLS:
    if args.client_key and not args.client_cert:
        raise CtlError("--client-key needs --client-cert")
    if args.client_cert and not args.client_key:
        raise CtlError("--client-cert needs --client-key")

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    return ClientTLS(path(args.ca_cert), path(args.client_cert), path(args.client_key))


_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def _numbers(message: Message, data: dict[str, Any]) -> dict[str, Any]:
    """Proto JSON writes 64-bit integers as strings; scripts want numbers (`.revision + 1`)."""
    for f in message.DESCRIPTOR.fields:
        if f.name not in data:
            continue
        value = getattr(message, f.name)
        repeated = f.is_repeated  # protobuf >= 7 (pyproject.toml) has it; `label` is gone
        if f.type in _INT64:
            data[f.name] = [int(v) for v in value] if repeated else int(value)
        elif f.message_type is not None and f.message_type.full_name != "google.protobuf.Timestamp":
            if repeated:
                data[f.name] = [_numbers(m, d) for m, d in zip(value, data[f.name], strict=True)]
            else:
                data[f.name] = _numbers(value, data[f.name])
    return data


def to_json(message: Message) -> dict[str, Any]:
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _numbers(message, data)


def emit_json(message: Message) -> None:
    print(json.dumps(to_json(message), indent=2, ensure_ascii=False))


def wait_for_revision(ctx: Context, args: argparse.Namespace, revision: int) -> int:
    if not args.wait:
        return EXIT_OK
    request = admin_pb2.WaitForRevisionRequest(
        revision=revision, timeout_seconds=args.wait_timeout, fleet_grace_seconds=args.fleet_grace
    )
    try:
        response = ctx.stub.WaitForRevision(
            request, timeout=args.wait_timeout + WAIT_DEADLINE_MARGIN, metadata=ctx.metadata
        )
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
        print(
            f"error: gave up waiting for revision {revision} after "
            f"{args.wait_timeout + WAIT_DEADLINE_MARGIN:g}s without an answer",
            file=sys.stderr,
        )
        return EXIT_WAIT_INCOMPLETE
    if response.done:
        if not ctx.json:
            print(f"revision {revision} applied by every subscriber")
        return EXIT_OK
    print(
        f"error: revision {revision} not applied by every subscriber within "
        f"{args.wait_timeout:g}s; lagging:",
        file=sys.stderr,
    )
    now = datetime.now(UTC)
    rows = [
        [s.id, s.role, s.address, str(s.applied_version), presence(s, now), s.last_error]
        for s in response.laggards
    ]
    print(table(["ID", "ROLE", "ADDRESS", "APPLIED", "STATE", "LAST_ERROR"], rows), file=sys.stderr)
    return EXIT_WAIT_INCOMPLETE


# --- readable output -----------------------------------------------------------------------


def fmt_time(message: Message, field: str, unset: str = "-") -> str:
    if not message.HasField(field):
        return unset
    ts: Timestamp = getattr(message, field)
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def presence(subscriber: admin_pb2.Subscriber, now: datetime) -> str:
    """`connected`, or `disconnected 12s ago`."""
    if subscriber.connected:
        return "connected"
    if not subscriber.HasField("disconnected_at"):
        return "disconnected"
    since = now - subscriber.disconnected_at.ToDatetime(tzinfo=UTC)
    return f"disconnected {max(int(since.total_seconds()), 0)}s ago"


def _cell(value: str) -> str:
    # One row per line, whatever the server put in a free-text field.
    text = " ".join(str(value).split())
    return text or "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = [list(headers)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [v.ljust(w) for v, w in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in pairs) + 1
    return "\n".join(f"{(k + ':').ljust(width)}  {v}" for k, v in pairs)


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


# --- commands ------------------------------------------------------------------------------


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    status = ctx.stub.GetStatus(
        admin_pb2.GetStatusRequest(), timeout=ctx.timeout, metadata=ctx.metadata
    )
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


def _print_provider(provider: admin_pb2.Provider) -> None:
    print(
        key_values(
            [
                ("id", provider.id),
                ("name", provider.name),
                ("type", provider.type),
                ("display name", provider.display_name or "-"),
                ("enabled", _yes_no(provider.enabled)),
                ("base url", provider.base_url),
                ("created", fmt_time(provider, "created_at")),
                ("updated", fmt_time(provider, "updated_at")),
                ("keys", str(len(provider.keys))),
            ]
        )
    )
    if provider.keys:
        rows = [[k.id, k.hint, fmt_time(k, "created_at")] for k in provider.keys]
        print("\n" + table(["KEY_ID", "HINT", "CREATED"], rows))


def cmd_providers_list(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.stub.ListProviders(
        admin_pb2.ListProvidersRequest(), timeout=ctx.timeout, metadata=ctx.metadata
    )
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.providers:
        print(f"no providers (revision {response.revision})")
        return EXIT_OK
    rows = [
        [p.name, p.type, _yes_no(p.enabled), p.base_url, str(len(p.keys)), p.id]
        for p in response.providers
    ]
    print(table(["NAME", "TYPE", "ENABLED", "BASE_URL", "KEYS", "ID"], rows))
    return EXIT_OK


def cmd_providers_get(ctx: Context, args: argparse.Namespace) -> int:
    provider = ctx.stub.GetProvider(
        admin_pb2.GetProviderRequest(ref=args.ref), timeout=ctx.timeout, metadata=ctx.metadata
    )
    if ctx.json:
        emit_json(provider)
    else:
        _print_provider(provider)
    return EXIT_OK


def cmd_providers_create(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.CreateProviderRequest(
        name=args.name,
        type=args.type,
        base_url=args.base_url,
        display_name=args.display_name or "",
        disabled=args.disabled,
        keys=read_keys(args.keys),
    )
    if args.expect_revision is not None:
        request.expected_revision = args.expect_revision
    response = ctx.stub.CreateProvider(request, timeout=ctx.timeout, metadata=ctx.metadata)
    if ctx.json:
        emit_json(response)
    else:
        p = response.provider
        state = "" if p.enabled else ", disabled"
        print(
            f"created provider {p.name} ({p.id}) with {len(p.keys)} key(s){state} "
            f"at revision {response.revision}"
        )
    return wait_for_revision(ctx, args, response.revision)


def cmd_providers_update(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.UpdateProviderRequest(
        ref=args.ref, add_keys=read_keys(args.add_keys), remove_key_ids=args.remove_key_ids
    )
    if args.name is not None:
        request.name = args.name
    if args.base_url is not None:
        request.base_url = args.base_url
    if args.enabled is not None:
        request.enabled = args.enabled
    if args.display_name is not None:
        request.display_name = args.display_name
    if args.expect_revision is not None:
        request.expected_revision = args.expect_revision
    response = ctx.stub.UpdateProvider(request, timeout=ctx.timeout, metadata=ctx.metadata)
    if ctx.json:
        emit_json(response)
    else:
        p = response.provider
        print(f"updated provider {p.name} ({p.id}) at revision {response.revision}")
    return wait_for_revision(ctx, args, response.revision)


def cmd_providers_delete(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.DeleteProviderRequest(ref=args.ref)
    if args.expect_revision is not None:
        request.expected_revision = args.expect_revision
    response = ctx.stub.DeleteProvider(request, timeout=ctx.timeout, metadata=ctx.metadata)
    if ctx.json:
        emit_json(response)
    else:
        print(f"deleted provider {response.name} ({response.id}) at revision {response.revision}")
    return wait_for_revision(ctx, args, response.revision)


def cmd_tokens_create(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.CreateTokenRequest(name=args.name, expires_in_seconds=args.expires_in or 0)
    if args.expect_revision is not None:
        request.expected_revision = args.expect_revision
    response = ctx.stub.CreateToken(request, timeout=ctx.timeout, metadata=ctx.metadata)
    # Printed before any --wait so that a lagging subscriber cannot lose the only copy.
    if ctx.json:
        emit_json(response)
    else:
        info = response.info
        expires = fmt_time(info, "expires_at", unset="never")
        print(
            f"created token {info.name} ({info.id}) at revision {response.revision}, "
            f"expires {expires}"
        )
        print()
        print(f"    {response.token}")
        print()
        print("Copy this token now: it is not stored and will not be shown again.")
    return wait_for_revision(ctx, args, response.revision)


def cmd_tokens_list(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.stub.ListTokens(
        admin_pb2.ListTokensRequest(include_revoked=args.all),
        timeout=ctx.timeout,
        metadata=ctx.metadata,
    )
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.tokens:
        print("no tokens" if args.all else "no live tokens (--all includes revoked ones)")
        return EXIT_OK
    rows = [
        [
            t.name,
            t.id,
            t.hint,
            fmt_time(t, "created_at"),
            fmt_time(t, "expires_at", unset="never"),
            fmt_time(t, "revoked_at"),
        ]
        for t in response.tokens
    ]
    print(table(["NAME", "ID", "HINT", "CREATED", "EXPIRES", "REVOKED"], rows))
    return EXIT_OK


def cmd_tokens_revoke(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.RevokeTokenRequest(ref=args.ref)
    if args.expect_revision is not None:
        request.expected_revision = args.expect_revision
    response = ctx.stub.RevokeToken(request, timeout=ctx.timeout, metadata=ctx.metadata)
    if ctx.json:
        emit_json(response)
    else:
        info = response.info
        print(f"revoked token {info.name} ({info.id}) at revision {response.revision}")
    return wait_for_revision(ctx, args, response.revision)


def cmd_usage(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.QueryUsageRequest(provider=args.provider or "", group_by=args.by)
    if args.since is not None:
        request.since.CopyFrom(to_timestamp(args.since))
    if args.until is not None:
        request.until.CopyFrom(to_timestamp(args.until))
    response = ctx.stub.QueryUsage(request, timeout=ctx.timeout, metadata=ctx.metadata)
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.rows:
        print("no usage recorded in that period")
        return EXIT_OK
    fields = (
        "requests",
        "errors",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
    )
    rows = [[r.key, *(str(getattr(r, f)) for f in fields)] for r in response.rows]
    totals = [sum(getattr(r, f) for r in response.rows) for f in fields]
    rows.append(["TOTAL", *(str(t) for t in totals)])
    group = (response.group_by or args.by).upper()
    print(
        table([group, "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "CACHE_READ", "CACHE_WRITE"], rows)
    )
    return EXIT_OK


def cmd_audit(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.stub.ListAudit(
        admin_pb2.ListAuditRequest(limit=args.limit), timeout=ctx.timeout, metadata=ctx.metadata
    )
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


# --- entry point ---------------------------------------------------------------------------


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Rules argparse cannot express; these exit 2 like every other usage error."""
    func: Callable[..., int] = args.func
    if func is cmd_providers_update and not any(
        [
            args.name is not None,
            args.base_url is not None,
            args.enabled is not None,
            args.display_name is not None,
            args.add_keys,
            args.remove_key_ids,
        ]
    ):
        parser.error(
            "providers update: nothing to change (give --name, --base-url, "
            "--enable/--disable, --display-name, --add-key or --remove-key)"
        )
    if func is cmd_usage and args.since and args.until and args.since > args.until:
        parser.error("usage: --since is after --until")


def describe_rpc_error(exc: grpc.RpcError, address: str) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    name = code.name if code is not None else "UNKNOWN"
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"{name}: the controlplane at {address} is unreachable ({details})"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"{name}: {details} (check --token, AIBRIDGE_ADMIN_TOKEN or <state-dir>/admin.token)"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{name}: {details} (no answer from {address}; see --timeout)"
    return f"{name}: {details}"


def run(argv: Sequence[str] | None = None) -> int:
    """Runs one command and returns its exit code (argparse errors raise SystemExit(2))."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    try:
        token = resolve_token(args)
        tls = resolve_tls(args)
        with open_channel(args.controlplane, tls) as channel:
            ctx = Context(
                stub=admin_pb2_grpc.AdminStub(channel),
                metadata=(*auth_metadata(token), ("x-aibridge-actor", actor())),
                timeout=args.timeout,
                json=args.json,
            )
            return int(args.func(ctx, args))
    except CtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except grpc.RpcError as exc:
        print(f"error: {describe_rpc_error(exc, args.controlplane)}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # unreadable TLS files
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> NoReturn:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
