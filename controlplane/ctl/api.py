"""Calling the Admin API: credentials, the channel, one call, and gRPC errors in words."""

from __future__ import annotations

import argparse
import getpass
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc

from aibridge.v1 import admin_pb2_grpc
from common.channel import ClientTLS, auth_metadata, open_channel
from common.flags import optional_path
from common.state import ADMIN_TOKEN_FILE, read_if_exists
from controlplane.ctl.errors import CtlError

# The most records the API returns in one page (ListInterceptionsRequest.limit).
MAX_PAGE = 1000


class Paged(Protocol):
    """A list request: how many records, from where."""

    limit: int
    cursor: str


@dataclass
class Context:
    """What a command needs to call the API and to know how to answer."""

    stub: admin_pb2_grpc.AdminStub
    metadata: tuple[tuple[str, str], ...]
    timeout: float
    json: bool

    def call(self, rpc: Callable[..., Any], request: object) -> Any:
        """`rpc` (a method of `stub`) with the call's deadline and credentials."""
        return rpc(request, timeout=self.timeout, metadata=self.metadata)

    def collect(
        self, rpc: Callable[..., Any], request: Paged, field: str, limit: int | None
    ) -> Any:
        """The first page of `rpc(request)` holding the records (repeated `field`) of every
        page, following next_cursor until `limit` of them (None: all) are in hand. Its
        next_cursor is the last page's: where to go on."""
        collected = None
        while True:
            have = 0 if collected is None else len(getattr(collected, field))
            request.limit = MAX_PAGE if limit is None else min(limit - have, MAX_PAGE)
            page = self.call(rpc, request)
            if collected is None:
                collected = page
            else:
                getattr(collected, field).extend(getattr(page, field))
                collected.next_cursor = page.next_cursor
            # An empty page that still has a cursor would loop forever: stop there.
            done = limit is not None and have + len(getattr(page, field)) >= limit
            if done or not page.next_cursor or not getattr(page, field):
                return collected
            request.cursor = page.next_cursor


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
    return ClientTLS(
        optional_path(args.ca_cert), optional_path(args.client_cert), optional_path(args.client_key)
    )


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[Context]:
    """A Context on a channel to the controlplane, closed on leaving."""
    token = resolve_token(args)
    tls = resolve_tls(args)
    with open_channel(args.controlplane, tls) as channel:
        yield Context(
            stub=admin_pb2_grpc.AdminStub(channel),
            metadata=(*auth_metadata(token), ("x-aibridge-actor", actor())),
            timeout=args.timeout,
            json=args.json,
        )


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
