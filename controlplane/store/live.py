"""Finding a live (not deleted) user or team by the id or the name an admin gave."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import validation
from controlplane.errors import NotFound
from controlplane.store.models import Team, User

Row = TypeVar("Row", User, Team)


def find_live(
    session: Session, model: type[Row], ref: str, id_prefix: str, what: str, field: str
) -> Row:
    """The live `model` row whose id (when `ref` has the prefix) or name is `ref`."""
    validation.reference(ref, f"a {what} id or name", field)
    column = model.id if ref.startswith(id_prefix) else model.name
    query = select(model).where(column == ref, model.deleted_at.is_(None))
    found = session.scalars(query).one_or_none()
    if found is None:
        raise NotFound(f"{what} {ref!r} not found")
    return found
