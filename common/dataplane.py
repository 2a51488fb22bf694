"""What bridged and proxyd share in their configuration: where the controlplane is, how
to reach it, and the listen address. One set of flags, read the same way by both."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import runtime, state
from common.channel import DEFAULT_CONTROLPLANE, ClientTLS
from common.flags import Flag, optional_path
from common.snapshot_file import SnapshotFile
from common.subscriber import Apply, Subscriber


@dataclass(frozen=True)
class ControlplaneLink:
    addresses: tuple[str, ...]
    token: str = field(repr=False)  # a secret: never in a printed config
    tls: ClientTLS | None
    snapshot_cache: Path | None

    def subscriber(self, role: str, apply: Apply) -> Subscriber:
        cache = SnapshotFile(self.snapshot_cache, self.token) if self.snapshot_cache else None
        if cache is not None:
            cache.remove_stale_temporaries()
        return Subscriber(self.addresses, role, self.token, apply, tls=self.tls, cache=cache)


def flags(role: str) -> tuple[Flag, ...]:
    """The flags both data planes take, in the order their --help lists them."""
    return (
        Flag(
            "--controlplane",
            default=DEFAULT_CONTROLPLANE,
            help="controlplane gRPC address; comma-separated for several replicas",
        ),
        Flag(
            "--state-dir",
            type=Path,
            default=state.DEFAULT_STATE_DIR,
            help="where make run keeps generated secrets",
        ),
        Flag(
            "--snapshot-cache",
            env_var=f"AIBRIDGE_{role.upper()}_SNAPSHOT_CACHE",  # one file per role, never shared
            help=f"file keeping the last snapshot, served when a start finds no controlplane "
            f"('off' disables it; default: STATE_DIR/{role}.snapshot)",
        ),
        Flag(
            f"--{role}-token",
            help=f"credential for the snapshot stream (default: STATE_DIR/{role}.token)",
        ),
        Flag(
            "--controlplane-ca-cert",
            env_var="AIBRIDGE_CA_CERT",
            help="CA that signed the controlplane's certificate (enables TLS)",
        ),
        Flag(
            "--controlplane-client-cert",
            env_var="AIBRIDGE_CLIENT_CERT",
            help="client certificate for the controlplane (mTLS)",
        ),
        Flag(
            "--controlplane-client-key",
            env_var="AIBRIDGE_CLIENT_KEY",
            help="key of --controlplane-client-cert",
        ),
        Flag(
            "--event-loop",
            default="uvloop",
            choices=list(runtime.EVENT_LOOPS),
            help="asyncio event loop implementation",
        ),
        Flag("--log-format", default="text", choices=["text", "json"], help="log line format"),
        Flag(
            "--access-log",
            default="on",
            choices=["on", "off"],
            help="a log line per request (id, token name, provider, route, status, error, bytes)",
        ),
        Flag("--log-level", default="info", help="debug, info, warning or error"),
    )


def derived(values: Mapping[str, Any], role: str) -> dict[str, Any]:
    """The settings both data planes derive from `flags(role)`; call it after validating,
    since it may create the token file."""
    return {"controlplane": link(values, role), "access_log": values["access_log"] == "on"}


def link(values: Mapping[str, Any], role: str) -> ControlplaneLink:
    state_dir: Path = values["state_dir"]
    token = state.credential(state_dir, f"{role}.token", f"ab{role[0]}", values[f"{role}_token"])
    tls = ClientTLS(
        optional_path(values["controlplane_ca_cert"]),
        optional_path(values["controlplane_client_cert"]),
        optional_path(values["controlplane_client_key"]),
    )
    addresses = tuple(x.strip() for x in values["controlplane"].split(",") if x.strip())
    cache = values["snapshot_cache"] or str(state_dir / f"{role}.snapshot")
    return ControlplaneLink(
        addresses, token, tls if tls.enabled else None, None if cache == "off" else Path(cache)
    )
