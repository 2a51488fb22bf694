"""The audit log: one row per mutation, written in the mutation's own transaction."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from controlplane.store.db import Database, Mutation
from controlplane.store.models import AuditEntry, utcnow


def record(m: Mutation, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
    """`details` must already have its secrets masked."""
    m.session.add(
        AuditEntry(
            at=utcnow(),
            actor=actor,
            action=action,
            target=target,
            revision=m.revision,
            details=json.dumps(details, sort_keys=True, ensure_ascii=False),
        )
    )


def list_entries(db: Database, limit: int) -> list[AuditEntry]:
    with db.read() as session:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        return list(session.scalars(query))
