"""Providers and their keys. Keys are encrypted before they reach a row."""

from __future__ import annotations

import builtins
import secrets
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from controlplane import validation
from controlplane.errors import AlreadyExists, InvalidArgument, NotFound
from controlplane.store import audit, limit_sets
from controlplane.store.db import Database
from controlplane.store.keyring import KeyRing
from controlplane.store.models import Provider, ProviderKey, Revision, utcnow

ID_PREFIX = "prv_"
KEY_ID_PREFIX = "key_"


@dataclass
class ProviderChanges:
    name: str | None = None
    base_url: str | None = None
    enabled: bool | None = None
    display_name: str | None = None
    add_keys: list[str] = field(default_factory=list)
    remove_key_ids: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return (
            self.name is None
            and self.base_url is None
            and self.enabled is None
            and self.display_name is None
            and not self.add_keys
            and not self.remove_key_ids
        )


class Providers:
    def __init__(self, db: Database, keyring: KeyRing) -> None:
        self.db = db
        self.keyring = keyring

    def create(
        self,
        actor: str,
        *,
        name: str,
        type: str,
        base_url: str,
        display_name: str = "",
        enabled: bool = True,
        keys: list[str] = (),  # type: ignore[assignment]
        expected_revision: int | None = None,
    ) -> tuple[int, Provider]:
        name = validation.name(name)
        type = validation.provider_type(type)
        base_url = validation.base_url_for_type(type, validation.base_url(base_url))
        display_name = validation.display_name(display_name)
        keys = [validation.provider_key(k) for k in keys]
        with self.db.mutation(expected_revision) as m:
            _ensure_name_free(m.session, name)
            now = utcnow()
            provider = Provider(
                id=ID_PREFIX + secrets.token_hex(8),
                name=name,
                type=type,
                display_name=display_name,
                enabled=enabled,
                base_url=base_url,
                created_at=now,
                updated_at=now,
                changed_revision=m.revision,
                changed_by=m.token,
            )
            m.session.add(provider)
            m.session.flush()
            hints = [self._add_key(m.session, provider, k) for k in keys]
            audit.record(
                m,
                actor,
                "provider.create",
                f"{provider.name} ({provider.id})",
                {
                    "name": name,
                    "type": type,
                    "base_url": base_url,
                    "enabled": enabled,
                    "display_name": display_name,
                    "keys": hints,
                },
            )
            m.session.flush()
            m.session.refresh(provider)
            return m.revision, provider

    def get(self, ref: str) -> Provider:
        with self.db.read() as session:
            return _find(session, ref)

    def list(self) -> tuple[int, list[Provider]]:
        with self.db.read() as session:
            revision = session.scalars(select(Revision.value)).one()
            query = select(Provider).where(Provider.deleted_at.is_(None)).order_by(Provider.name)
            return revision, list(session.scalars(query))

    def update(
        self, actor: str, ref: str, changes: ProviderChanges, expected_revision: int | None = None
    ) -> tuple[int, Provider]:
        if changes.empty():
            raise InvalidArgument("update", "nothing to change")
        if changes.name is not None:
            validation.name(changes.name)
        if changes.base_url is not None:
            changes.base_url = validation.base_url(changes.base_url)
        if changes.display_name is not None:
            validation.display_name(changes.display_name)
        for k in changes.add_keys:
            validation.provider_key(k, "add_keys")
        with self.db.mutation(expected_revision) as m:
            provider = _find(m.session, ref)
            details: dict[str, object] = {}
            if changes.name is not None and changes.name != provider.name:
                _ensure_name_free(m.session, changes.name)
                details["name"] = {"from": provider.name, "to": changes.name}
                # Allowlists name providers: they follow the rename, in this mutation.
                renamed_in = limit_sets.rename_provider(m.session, provider.name, changes.name)
                if renamed_in:
                    details["limit_sets"] = renamed_in
                provider.name = changes.name
            if changes.base_url is not None:
                validation.base_url_for_type(provider.type, changes.base_url)
            for attr in ("base_url", "enabled", "display_name"):
                value = getattr(changes, attr)
                if value is not None:
                    details[attr] = {"from": getattr(provider, attr), "to": value}
                    setattr(provider, attr, value)
            if changes.remove_key_ids:
                details["removed_keys"] = self._remove_keys(
                    m.session, provider, changes.remove_key_ids
                )
            if changes.add_keys:
                details["added_keys"] = [
                    self._add_key(m.session, provider, k) for k in changes.add_keys
                ]
            provider.updated_at = utcnow()
            provider.changed_revision, provider.changed_by = m.revision, m.token
            audit.record(m, actor, "provider.update", f"{provider.name} ({provider.id})", details)
            m.session.flush()
            m.session.refresh(provider)
            return m.revision, provider

    def delete(
        self, actor: str, ref: str, expected_revision: int | None = None
    ) -> tuple[int, Provider]:
        with self.db.mutation(expected_revision) as m:
            provider = _find(m.session, ref)
            # The row stays for usage and audit history; the encrypted keys go.
            m.session.execute(delete(ProviderKey).where(ProviderKey.provider_id == provider.id))
            provider.deleted_at = provider.updated_at = utcnow()
            provider.changed_revision, provider.changed_by = m.revision, m.token
            audit.record(m, actor, "provider.delete", f"{provider.name} ({provider.id})", {})
            return m.revision, provider

    def _add_key(self, session: Session, provider: Provider, secret: str) -> str:
        position = session.scalar(
            select(func.coalesce(func.max(ProviderKey.position), 0)).where(
                ProviderKey.provider_id == provider.id
            )
        )
        hint = validation.key_hint(secret)
        session.add(
            ProviderKey(
                id=KEY_ID_PREFIX + secrets.token_hex(8),
                provider_id=provider.id,
                position=(position or 0) + 1,
                ciphertext=self.keyring.encrypt(secret),
                hint=hint,
                created_at=utcnow(),
            )
        )
        session.flush()
        return hint

    @staticmethod
    def _remove_keys(
        session: Session, provider: Provider, key_ids: builtins.list[str]
    ) -> builtins.list[str]:  # `list` here is Providers.list
        removed = []
        for key_id in key_ids:
            key = session.get(ProviderKey, key_id) if validation.possible_id(key_id) else None
            if key is None or key.provider_id != provider.id:
                # Not repeated: a secret pasted here by mistake must not come back.
                raise NotFound(f"provider {provider.name} has no such key (ids look like key_…)")
            removed.append(f"{key.id} {key.hint}")
            session.delete(key)
        session.flush()
        session.expire(provider, ["keys"])
        return removed


def _find(session: Session, ref: str) -> Provider:
    validation.reference(ref, "a provider id or name")
    column = Provider.id if ref.startswith(ID_PREFIX) else Provider.name
    provider = session.scalars(
        select(Provider).where(column == ref, Provider.deleted_at.is_(None))
    ).one_or_none()
    if provider is None:
        raise NotFound(f"provider {ref!r} not found")
    return provider


def _ensure_name_free(session: Session, name: str) -> None:
    taken = session.scalar(
        select(Provider.id).where(Provider.name == name, Provider.deleted_at.is_(None))
    )
    if taken is not None:
        raise AlreadyExists(f"a provider named {name!r} already exists ({taken})")
