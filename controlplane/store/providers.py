"""Providers and their keys. Keys are encrypted before they reach a row.

bedrock and vertex providers (common/clouds.py) have a region, which may be read from
their base_url's host but must be known, vertex ones a project, and both a model map;
their keys are credential JSON documents, stored as common.clouds.stored_key writes them."""

from __future__ import annotations

import builtins
import json
import secrets
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from common import clouds
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
    region: str | None = None  # "": read it from the base_url's host again
    project: str | None = None
    # Applied after clear_model_map; an empty cloud model id removes that model's mapping.
    model_map: list[tuple[str, str]] = field(default_factory=list)
    clear_model_map: bool = False

    def empty(self) -> bool:
        return (
            self.name is None
            and self.base_url is None
            and self.enabled is None
            and self.display_name is None
            and not self.add_keys
            and not self.remove_key_ids
            and self.region is None
            and self.project is None
            and not self.model_map
            and not self.clear_model_map
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
        region: str = "",
        project: str = "",
        model_map: list[tuple[str, str]] = (),  # type: ignore[assignment]
    ) -> tuple[int, Provider]:
        name = validation.name(name)
        type = validation.provider_type(type)
        base_url = validation.base_url_for_type(type, validation.base_url(base_url))
        display_name = validation.display_name(display_name)
        _only_for_clouds(
            type, region=bool(region), project=bool(project), model_map=bool(model_map)
        )
        region = validation.region(region)
        mapping = validation.model_map_for_type(type, dict(validation.model_map(list(model_map))))
        stored = [validation.key_for_type(type, k) for k in keys]
        if type == clouds.VERTEX:
            project = validation.project(_vertex_project(project, stored))
        _require_region(type, base_url, region)
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
                region=region,
                project=project,
                model_map=_model_map_text(mapping),
                created_at=now,
                updated_at=now,
                changed_revision=m.revision,
                changed_by=m.token,
            )
            m.session.add(provider)
            m.session.flush()
            hints = [self._add_key(m.session, provider, *k) for k in stored]
            details: dict[str, object] = {
                "name": name,
                "type": type,
                "base_url": base_url,
                "enabled": enabled,
                "display_name": display_name,
                "keys": hints,
            }
            if type in clouds.CLOUD_TYPES:
                details |= {"region": region, "model_map": mapping}
            if type == clouds.VERTEX:
                details["project"] = project
            audit.record(m, actor, "provider.create", f"{provider.name} ({provider.id})", details)
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
        if changes.region is not None:
            validation.region(changes.region)
        validation.model_map(changes.model_map, removals=True)
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
            details |= _change_cloud_settings(provider, changes)
            # Checked against the provider's type, which only the row knows.
            added = [
                validation.key_for_type(provider.type, k, "add_keys") for k in changes.add_keys
            ]
            if changes.remove_key_ids:
                details["removed_keys"] = self._remove_keys(
                    m.session, provider, changes.remove_key_ids
                )
            if added:
                details["added_keys"] = [self._add_key(m.session, provider, *k) for k in added]
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

    def _add_key(self, session: Session, provider: Provider, secret: str, hint: str) -> str:
        position = session.scalar(
            select(func.coalesce(func.max(ProviderKey.position), 0)).where(
                ProviderKey.provider_id == provider.id
            )
        )
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


def model_map_of(text: str) -> dict[str, str]:
    """A provider's model map, from its column."""
    mapping: dict[str, str] = json.loads(text or "{}")
    return mapping


def _model_map_text(mapping: dict[str, str]) -> str:
    return json.dumps(mapping, sort_keys=True, separators=(",", ":"))


def _only_for_clouds(provider_type: str, *, region: bool, project: bool, model_map: bool) -> None:
    """Refuses the cloud settings that were given to a type that has no use for them."""
    if provider_type not in clouds.CLOUD_TYPES:
        for given, name in ((region, "region"), (model_map, "model_map")):
            if given:
                raise InvalidArgument(name, "only for bedrock and vertex providers")
    if project and provider_type != clouds.VERTEX:
        raise InvalidArgument("project", "only for vertex providers")


def _require_region(provider_type: str, base_url: str, region: str) -> None:
    if provider_type not in clouds.CLOUD_TYPES:
        return
    named = clouds.effective_region(provider_type, base_url, "")  # the host's, if any
    if not region and not named:
        raise InvalidArgument("region", "is required: the base_url's host names no region")
    if region and named and region != named:
        # Signed or addressed for one region, sent to another's endpoint: every call fails.
        raise InvalidArgument("region", f"is {region}, but the base_url's host is {named}'s")


def _vertex_project(given: str, stored: list[tuple[str, str]]) -> str:
    """A new vertex provider's project: the one given, or else its first key's (a
    service account belongs to a project, and is most often used in it)."""
    project: str = given or (json.loads(stored[0][0]).get("project_id", "") if stored else "")
    if not project:
        raise InvalidArgument(
            "project",
            "is required: give it, or a first key (a service-account JSON) that names its "
            "project_id",
        )
    return project


def _change_cloud_settings(provider: Provider, changes: ProviderChanges) -> dict[str, object]:
    """Applies `changes`' region, project and model map to `provider`; the audit
    details of what changed."""
    _only_for_clouds(
        provider.type,
        region=changes.region is not None,
        project=changes.project is not None,
        model_map=bool(changes.model_map) or changes.clear_model_map,
    )
    details: dict[str, object] = {}
    if changes.region is not None and changes.region != provider.region:
        details["region"] = {"from": provider.region, "to": changes.region}
        provider.region = changes.region
    if changes.base_url is not None or changes.region is not None:
        _require_region(provider.type, provider.base_url, provider.region)
    if changes.project is not None:
        if not changes.project:
            raise InvalidArgument("project", "is required: vertex calls are made in a project")
        project = validation.project(changes.project)
        if project != provider.project:
            details["project"] = {"from": provider.project, "to": project}
            provider.project = project
    if changes.model_map or changes.clear_model_map:
        before = model_map_of(provider.model_map)
        after = {} if changes.clear_model_map else dict(before)
        for model, upstream in changes.model_map:
            if upstream:
                after[model] = upstream
            else:
                after.pop(model, None)
        if after != before:
            after = validation.model_map_for_type(provider.type, after)
            details["model_map"] = {"from": before, "to": after}
            provider.model_map = _model_map_text(after)
    return details
