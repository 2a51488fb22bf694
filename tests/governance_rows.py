"""Users, teams and spend written straight into a controlplane's database through the
models, for tests of what reads them (limit sets, the snapshot's governance). They bump
no revision: the next mutation's snapshot is the first to see them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.orm import Session

from controlplane.store.models import Spend, Team, TeamMember, User, utcnow
from tests.harness import Controlplane


@contextmanager
def database(cp: Controlplane) -> Iterator[Session]:
    engine = sa.create_engine(cp.database_url)
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


def add_user(cp: Controlplane, name: str, deleted: bool = False) -> str:
    user_id = f"usr_{uuid.uuid4().hex[:16]}"
    now = utcnow()
    with database(cp) as session:
        session.add(
            User(
                id=user_id, name=name, email="", enabled=True, created_at=now, updated_at=now,
                deleted_at=now if deleted else None,
            )
        )  # fmt: skip
    return user_id


def add_team(cp: Controlplane, name: str, members: tuple[str, ...] = (), team_id: str = "") -> str:
    team_id = team_id or f"team_{uuid.uuid4().hex[:16]}"
    now = utcnow()
    with database(cp) as session:
        session.add(Team(id=team_id, name=name, created_at=now))
        session.flush()
        for user_id in members:
            session.add(TeamMember(team_id=team_id, user_id=user_id, added_at=now))
    return team_id


def add_spend(cp: Controlplane, month: str, costs: dict[str, float]) -> None:
    with database(cp) as session:
        for key, cost in costs.items():
            session.add(Spend(month=month, key=key, cost_usd=cost, requests=1, unpriced=0))
