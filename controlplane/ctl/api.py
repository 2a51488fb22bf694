"""Calling the Admin API: credentials, the channels, one call (retried when it may be),
and gRPC errors in words.

A call that finds a controlplane unreachable (UNAVAILABLE) is tried again a few times
with the shared backoff, through the next of the addresses given; so is one that got no
answer in time (DEADLINE_EXCEEDED) if it is a change, or if there is another address to
try (a read that is merely slow would only be slow again). A change carries the
invocation's idempotency key (`--request-id`, or one made per invocation), so a retry of
a change that was applied gets its first answer back instead of applying it twice; it is
sent again only to a controlplane that says it takes keys (an older one would apply it
twice).
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from aibridge.v1 import admin_pb2, admin_pb2_grpc
from common.backoff import backoff_delay
from common.channel import ClientTLS, auth_metadata, open_channel
from common.flags import optional_path
from common.state import ADMIN_TOKEN_FILE, read_if_exists
from common.wire import REPLAYED_METADATA
from controlplane.ctl.errors import CtlError

# The most records the API returns in one page (ListInterceptionsRequest.limit).
MAX_PAGE = 1000
# Tries of one call, and the pauses between them (common/backoff.py).
ATTEMPTS = 4
RETRY_BASE = 0.25
RETRY_CAP = 2.0
# The ends of a change that leave it unknown whether it was applied.
UNANSWERED = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED,
})  # fmt: skip


class Paged(Protocol):
    """A list request: how many records, from where."""

    limit: int
    cursor: str


class Controlplanes:
    """The controlplane addresses given, a channel to each opened when first used. Calls
    go to the current one, and a call it cannot answer moves on to the next."""

    def __init__(self, addresses: list[str], tls: ClientTLS, stack: ExitStack) -> None:
        self.addresses = addresses
        self._tls = tls
        self._stack = stack
        self._stubs: dict[str, admin_pb2_grpc.AdminStub] = {}
        self._current = 0
        self.taking_keys: set[str] = set()  # the addresses that said they take request ids

    @property
    def address(self) -> str:
        return self.addresses[self._current]

    @property
    def stub(self) -> admin_pb2_grpc.AdminStub:
        if self.address not in self._stubs:
            channel = self._stack.enter_context(open_channel(self.address, self._tls))
            self._stubs[self.address] = admin_pb2_grpc.AdminStub(channel)
        return self._stubs[self.address]

    def name_of(self, rpc: Callable[..., Any]) -> str:
        """The name of `rpc`, a method of one of the stubs."""
        return next(
            name
            for stub in self._stubs.values()
            for name, method in vars(stub).items()
            if method is rpc
        )

    def move_on(self) -> None:
        self._current = (self._current + 1) % len(self.addresses)


@dataclass
class Context:
    """What a command needs to call the API and to know how to answer."""

    controlplanes: Controlplanes
    metadata: tuple[tuple[str, str], ...]
    timeout: float
    json: bool
    # The invocation's idempotency key: its first change's, and with "/2", "/3"… its
    # later ones' (`aibridgectl keys reencrypt` makes a change per batch).
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    changes: int = 0
    replayed: bool = False  # the last call's answer replays an applied change's
    attempted: list[str] = field(default_factory=list)  # the last call's addresses
    # The request id of a change whose call ended without saying whether it was applied.
    unanswered: str = ""

    @property
    def stub(self) -> admin_pb2_grpc.AdminStub:
        """The API, for naming a method to `call` (ctx.stub.ListTokens)."""
        return self.controlplanes.stub

    def next_request_id(self) -> str:
        self.changes += 1
        return self.request_id if self.changes == 1 else f"{self.request_id}/{self.changes}"

    def call(
        self,
        rpc: Callable[..., Any],
        request: Any,
        *,
        timeout: float | None = None,
        retry_deadline: bool = True,
    ) -> Any:
        """`rpc` (a method of `stub`) with the call's deadline (`timeout`, or --timeout)
        and credentials, tried again through the next controlplane when it may be (see
        above; `retry_deadline=False`: never after DEADLINE_EXCEEDED)."""
        name = self.controlplanes.name_of(rpc)
        request_id: str = getattr(request, "request_id", "")
        self.attempted = []
        failures = 0
        while True:
            self.attempted.append(self.controlplanes.address)
            try:
                if request_id and failures:
                    self._check_takes_keys()
                response, call = getattr(self.stub, name).with_call(
                    request, timeout=timeout or self.timeout, metadata=self.metadata
                )
            except grpc.RpcError as exc:
                failures += 1
                code = exc.code()
                retried = code == grpc.StatusCode.UNAVAILABLE or (
                    code == grpc.StatusCode.DEADLINE_EXCEEDED
                    and retry_deadline
                    and (bool(request_id) or len(self.controlplanes.addresses) > 1)
                )
                if not retried or failures >= ATTEMPTS:
                    if request_id and code in UNANSWERED:
                        self.unanswered = request_id
                    raise
                tried = self.controlplanes.address
                self.controlplanes.move_on()
                if request_id:  # said, since the change may have been applied by then
                    through = self.controlplanes.address
                    print(
                        f"note: {name} got {code.name} from {tried}; trying again with request "
                        f"id {request_id}{f' through {through}' if through != tried else ''}",
                        file=sys.stderr,
                    )
                time.sleep(backoff_delay(failures - 1, RETRY_BASE, RETRY_CAP))
                continue
            self.replayed = (REPLAYED_METADATA, "true") in tuple(call.trailing_metadata() or ())
            return response

    def _check_takes_keys(self) -> None:
        """Before a change goes again to a controlplane: one of an older release ignores
        its request id, and would apply it a second time."""
        address = self.controlplanes.address
        if address in self.controlplanes.taking_keys:
            return
        who = self.stub.WhoAmI(
            admin_pb2.WhoAmIRequest(), timeout=self.timeout, metadata=self.metadata
        )
        if not who.request_ids:
            raise CtlError(
                f"the change may have been applied, and the controlplane at {address} does "
                "not take request ids (an older release), so it was not sent again: look for "
                "it in `aibridgectl audit` before repeating it"
            )
        self.controlplanes.taking_keys.add(address)

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


def addresses_of(value: str) -> list[str]:
    """`--controlplane`: one address, or several separated by commas."""
    addresses = [a.strip() for a in value.split(",") if a.strip()]
    if not addresses:
        raise CtlError("--controlplane: no address given")
    return addresses


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[Context]:
    """A Context on channels to the controlplanes, closed on leaving."""
    token = resolve_token(args)
    tls = resolve_tls(args)
    with ExitStack() as stack:
        ctx = Context(
            controlplanes=Controlplanes(addresses_of(args.controlplane), tls, stack),
            metadata=(*auth_metadata(token), ("x-aibridge-actor", actor())),
            timeout=args.timeout,
            json=args.json,
        )
        if args.request_id:
            ctx.request_id = args.request_id
        yield ctx


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
