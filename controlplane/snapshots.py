"""Database → ProviderSnapshot, cut per role.

A `Snapshot` is built once per revision and never changed afterwards; each role gets
its own cut: bridged sees the keys of enabled providers, proxyd sees routing metadata
only. Both see the gateway-token verifiers.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from aibridge.v1 import snapshot_pb2
from controlplane.auth import Role
from controlplane.store.db import Database
from controlplane.store.keyring import KeyRing
from controlplane.store.models import GatewayToken, Provider, ProviderKey, Revision, utcnow

log = logging.getLogger(__name__)

DATA_PLANE_ROLES = (Role.BRIDGED, Role.PROXYD)


@dataclass(frozen=True)
class Snapshot:
    version: int
    cuts: Mapping[Role, snapshot_pb2.ProviderSnapshot]

    def for_role(self, role: Role) -> snapshot_pb2.ProviderSnapshot:
        return self.cuts[role]


def build_snapshot(db: Database, keyring: KeyRing, controlplane_id: str) -> Snapshot:
    """Reads the whole provider state in one consistent transaction."""
    with db.read() as session:
        version, database_id = session.execute(select(Revision.value, Revision.database_id)).one()
        # Plain rows, not ORM objects: at 10,000 providers, making objects was most of
        # the rebuild.
        live = Provider.deleted_at.is_(None)
        providers = session.execute(
            select(
                Provider.id, Provider.name, Provider.type, Provider.display_name,
                Provider.enabled, Provider.base_url,
            ).where(live).order_by(Provider.name)
        ).all()  # fmt: skip
        keys: dict[str, list[Row[Any]]] = defaultdict(list)
        for key in session.execute(
            select(
                ProviderKey.provider_id, ProviderKey.id, ProviderKey.ciphertext, ProviderKey.hint
            )
            .join(Provider, Provider.id == ProviderKey.provider_id)
            .where(live, Provider.enabled.is_(True))
            .order_by(ProviderKey.provider_id, ProviderKey.position)
        ):
            keys[key.provider_id].append(key)
        tokens = _token_verifiers(session)
    cuts = {
        role: _cut(role, version, providers, keys, tokens, keyring, controlplane_id, database_id)
        for role in DATA_PLANE_ROLES
    }
    return Snapshot(version=version, cuts=MappingProxyType(cuts))


def _token_verifiers(session: Session) -> list[snapshot_pb2.TokenVerifier]:
    now = utcnow()
    query = select(GatewayToken).where(GatewayToken.revoked_at.is_(None)).order_by(GatewayToken.id)
    return [
        snapshot_pb2.TokenVerifier(
            id=t.id,
            name=t.name,
            sha256=t.sha256,
            expires_at=int(t.expires_at.timestamp()) if t.expires_at else 0,
        )
        for t in session.scalars(query)
        if t.expires_at is None or t.expires_at > now
    ]


def _cut(
    role: Role,
    version: int,
    providers: Sequence[Row[Any]],
    keys: Mapping[str, list[Row[Any]]],
    tokens: list[snapshot_pb2.TokenVerifier],
    keyring: KeyRing,
    controlplane_id: str,
    database_id: str,
) -> snapshot_pb2.ProviderSnapshot:
    message = snapshot_pb2.ProviderSnapshot(
        version=version,
        role=role.value,
        tokens=tokens,
        controlplane_id=controlplane_id,
        database_id=database_id,
    )
    for p in providers:
        entry = message.providers.add(
            id=p.id,
            name=p.name,
            type=p.type,
            display_name=p.display_name,
            enabled=p.enabled,
            base_url=p.base_url,
        )
        # Least privilege: only bridged gets keys, and only for providers it may serve.
        if role is Role.BRIDGED and p.enabled:
            for key in keys.get(p.id, ()):
                try:
                    secret = keyring.decrypt(key.ciphertext)
                except ValueError as exc:
                    log.error("provider %s key %s skipped: %s", p.name, key.id, exc)
                    continue
                entry.keys.add(id=key.id, secret=secret, hint=key.hint)
    return message
