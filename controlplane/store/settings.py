"""Gateway settings in the database: a row per setting an administrator set; a key
without one has its default (controlplane/settings.py knows the keys)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import settings
from controlplane.store import audit
from controlplane.store.db import Database
from controlplane.store.models import Revision, Setting, utcnow


@dataclass(frozen=True)
class SettingValue:
    spec: settings.SettingSpec
    value: str
    updated_at: datetime | None  # None while it has its default


class Settings:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self) -> tuple[int, list[SettingValue]]:
        """Every known setting, in the order controlplane/settings.py lists them."""
        with self.db.read() as session:
            revision = session.scalars(select(Revision.value)).one()
            rows = {row.key: row for row in session.scalars(select(Setting))}
        return revision, [_value(spec, rows.get(spec.key)) for spec in settings.SETTINGS.values()]

    def set(
        self, actor: str, key: str, value: str, expected_revision: int | None = None
    ) -> tuple[int, SettingValue]:
        """Always a mutation, even when the value does not change: the caller gets a
        revision to wait for either way, and the audit log shows who set it."""
        spec = settings.spec(key)
        new = spec.normalise(value)
        with self.db.mutation(expected_revision) as m:
            row = m.session.get(Setting, key)
            old = row.value if row is not None else spec.default
            if row is None:
                row = Setting(key=key, value=new, updated_at=utcnow())
                m.session.add(row)
            else:
                row.value, row.updated_at = new, utcnow()
            audit.record(m, actor, "setting.set", key, {"key": key, "old": old, "new": new})
            return m.revision, _value(spec, row)


def stored_values(session: Session) -> dict[str, str]:
    """The settings an administrator set, by key (for the snapshot)."""
    return {key: value for key, value in session.execute(select(Setting.key, Setting.value))}


def _value(spec: settings.SettingSpec, row: Setting | None) -> SettingValue:
    if row is None:
        return SettingValue(spec, spec.default, None)
    return SettingValue(spec, row.value, row.updated_at)
