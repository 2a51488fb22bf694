"""Database → ProviderSnapshot, cut per role and encoded once for every watcher.

A `Snapshot` is built once per revision and never changed afterwards; each role gets
its own cut: bridged sees the keys of enabled providers, the gateway settings (what
to record) and governance (users, teams, limits, spend), proxyd sees routing metadata
only. Both see the gateway-token verifiers.

Each cut is kept as its wire encoding: a watcher is sent those bytes as they are, so a
snapshot of 10,000 providers is serialised once per revision, not once per subscriber.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from aibridge.v1 import snapshot_pb2
from common.clouds import effective_region
from controlplane.auth import Role
from controlplane.governance import build_governance
from controlplane.settings import gateway_settings
from controlplane.store.db import Database
from controlplane.store.keyring import KeyRing
from controlplane.store.models import (
    GatewayToken,
    Provider,
    ProviderKey,
    Revision,
    User,
    utcnow,
)
from controlplane.store.providers import model_map_of
from controlplane.store.settings import stored_values

log = logging.getLogger(__name__)

DATA_PLANE_ROLES = (Role.BRIDGED, Role.PROXYD)


@dataclass(frozen=True)
class Snapshot:
    version: int
    database_id: str
    encoded: Mapping[Role, bytes]  # each role's ProviderSnapshot, serialised

    def for_role(self, role: Role) -> snapshot_pb2.ProviderSnapshot:
        return snapshot_pb2.ProviderSnapshot.FromString(self.encoded[role])


# A live provider as the builder holds it: (name, the token of the mutation that last
# changed it, its entry in bridged's cut, its entry in proxyd's). A plain tuple of
# strings and bytes: once the garbage collector has seen one it stops tracking it, so
# 10,000 cost its full passes next to nothing (it tracks every instance of a tuple
# subclass).
_Entry = tuple[str, str, bytes, bytes]


class SnapshotBuilder:
    """Builds snapshots from what changed since the previous build.

    Every mutation stamps the providers it touches with its revision and its random
    token, so a build after revision R reads only the providers stamped after R (deleted
    ones included, to drop them) and encodes only those: a change to one of 10,000
    providers costs that row, its keys decrypted and its entry encoded, plus a read of
    every live provider's id and token (below), not 10,000 rows and messages.

    Encoded messages concatenate, repeated fields included (the protobuf wire format),
    so a cut is its header's bytes followed by each provider's entry, in name order.

    Every build compares the id and token of each live provider with what it holds. A
    database changed other than through mutations since the last build fails that (a
    backup restored, then changed again up to the same revision, holds other tokens),
    and the build reads every row instead. One thread builds at a time (the publisher's).
    """

    def __init__(self, db: Database, keyring: KeyRing, controlplane_id: str) -> None:
        self.db = db
        self.keyring = keyring
        self.controlplane_id = controlplane_id
        self._database_id: str | None = None
        self._version = 0
        self._entries: dict[str, _Entry] = {}  # live providers by id, as of the last build

    def build(self) -> Snapshot:
        with self.db.read() as session:
            connection = session.connection()
            version, database_id = connection.execute(
                select(Revision.value, Revision.database_id)
            ).one()
            tokens = _token_verifiers(session)
            # A handful of rows: read whole at every build, like the token verifiers.
            settings = gateway_settings(stored_values(session))
            governance = build_governance(session)
            entries: dict[str, _Entry] | None = None
            if database_id == self._database_id and version >= self._version:
                entries = self._merge(connection, dict(self._entries), after=self._version)
                if _tokens(entries) != _live_tokens(connection):
                    log.warning(
                        "the database holds providers that no mutation since revision %d "
                        "accounts for (a restored backup?): reading them all",
                        self._version,
                    )
                    entries = None
            if entries is None:
                entries = self._merge(connection, {}, after=None)
        ordered = sorted(entries.values())  # by name: names of live providers are unique
        entries_of = {
            Role.BRIDGED: [bridged for _, _, bridged, _ in ordered],
            Role.PROXYD: [proxyd for _, _, _, proxyd in ordered],
        }
        encoded = {}
        for role in DATA_PLANE_ROLES:
            header = snapshot_pb2.ProviderSnapshot(
                version=version,
                role=role.value,
                tokens=tokens,
                controlplane_id=self.controlplane_id,
                database_id=database_id,
                settings=settings if role is Role.BRIDGED else None,
                governance=governance if role is Role.BRIDGED else None,
            ).SerializeToString()
            encoded[role] = header + b"".join(entries_of[role])
        self._database_id, self._version, self._entries = database_id, version, entries
        return Snapshot(version, database_id, MappingProxyType(encoded))

    def _merge(
        self, connection: Connection, entries: dict[str, _Entry], after: int | None
    ) -> dict[str, _Entry]:
        """`entries` with the providers stamped after revision `after` (every live one
        if None) read, encoded and put in, and the deleted ones taken out."""
        if after is None:
            changed: ColumnElement[bool] = Provider.deleted_at.is_(None)
        else:
            changed = Provider.changed_revision > after
        keys: dict[str, list[Row[*tuple[Any, ...]]]] = defaultdict(list)
        for key in connection.execute(
            select(
                ProviderKey.provider_id, ProviderKey.id, ProviderKey.ciphertext,
                ProviderKey.hint,
            )
            .join(Provider, Provider.id == ProviderKey.provider_id)
            .where(changed, Provider.deleted_at.is_(None), Provider.enabled.is_(True))
            .order_by(ProviderKey.provider_id, ProviderKey.position)
        ):  # fmt: skip
            keys[key.provider_id].append(key)
        for p in connection.execute(
            select(
                Provider.id, Provider.name, Provider.type, Provider.display_name,
                Provider.enabled, Provider.base_url, Provider.region, Provider.project,
                Provider.model_map, Provider.changed_by, Provider.deleted_at,
            ).where(changed)
        ):  # fmt: skip
            if p.deleted_at is not None:
                entries.pop(p.id, None)
            else:
                entries[p.id] = (p.name, p.changed_by, *self._encode(p, keys[p.id]))
        return entries

    def _encode(
        self, p: Row[*tuple[Any, ...]], keys: list[Row[*tuple[Any, ...]]]
    ) -> tuple[bytes, bytes]:
        """The provider's entry in bridged's cut and in proxyd's, each as the bytes of a
        ProviderSnapshot that holds only it."""
        entry = snapshot_pb2.SnapshotProvider(
            id=p.id,
            name=p.name,
            type=p.type,
            display_name=p.display_name,
            enabled=p.enabled,
            base_url=p.base_url,
            # Not secret: proxyd's cut has them too.
            region=effective_region(p.type, p.base_url, p.region),
            project=p.project,
            model_map=model_map_of(p.model_map),
        )
        proxyd = snapshot_pb2.ProviderSnapshot(providers=[entry]).SerializeToString()
        # Least privilege: only bridged gets keys, and only for providers it may serve.
        for key in keys:
            try:
                secret = self.keyring.decrypt(key.ciphertext)
            except ValueError as exc:
                log.error("provider %s key %s skipped: %s", p.name, key.id, exc)
                continue
            entry.keys.add(id=key.id, secret=secret, hint=key.hint)
        bridged = snapshot_pb2.ProviderSnapshot(providers=[entry]).SerializeToString()
        return bridged, proxyd


def _tokens(entries: dict[str, _Entry]) -> dict[str, str]:
    return {provider_id: entry[1] for provider_id, entry in entries.items()}


_LIVE_TOKENS = "SELECT id, changed_by FROM providers WHERE deleted_at IS NULL"


def _live_tokens(connection: Connection) -> dict[str, str]:
    """Each live provider's id and the token of the mutation that last changed it.
    Read through the driver's own cursor (in the same transaction): this runs on every
    build, over every row, and SQLAlchemy's result rows would be most of its cost."""
    dialect = connection.dialect
    cursor = connection.connection.cursor()
    try:
        cursor.execute(_LIVE_TOKENS)
        return dict(cursor.fetchall())
    except dialect.loaded_dbapi.Error as exc:
        # Made SQLAlchemy's, as every other statement's error is: a lost database then
        # reads as one (DatabaseUnavailable), and its connection is not used again.
        disconnected = dialect.is_disconnect(exc, connection.connection, cursor)
        if disconnected:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            _LIVE_TOKENS, None, exc, dialect.loaded_dbapi.Error,
            connection_invalidated=disconnected, dialect=dialect,
        ) from exc  # fmt: skip
    finally:
        cursor.close()


def _token_verifiers(session: Session) -> list[snapshot_pb2.TokenVerifier]:
    """Live, unexpired tokens, less those of a disabled (or deleted) user: leaving them
    out is what refuses them, in bridged and proxyd alike."""
    now = utcnow()
    query = (
        select(
            GatewayToken.id, GatewayToken.name, GatewayToken.sha256, GatewayToken.expires_at,
            GatewayToken.user_id,
        )
        .outerjoin(User, User.id == GatewayToken.user_id)
        .where(
            GatewayToken.revoked_at.is_(None),
            or_(
                GatewayToken.user_id.is_(None),
                and_(User.enabled.is_(True), User.deleted_at.is_(None)),
            ),
        )
        .order_by(GatewayToken.id)
    )  # fmt: skip
    return [
        snapshot_pb2.TokenVerifier(
            id=t.id,
            name=t.name,
            sha256=t.sha256,
            expires_at=int(t.expires_at.timestamp()) if t.expires_at else 0,
            user_id=t.user_id or "",
        )
        for t in session.execute(query)
        if t.expires_at is None or t.expires_at > now
    ]
