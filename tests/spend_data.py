"""Users, teams, tokens and limit sets written straight into a controlplane's database
for the spend tests (the admin API for them is built apart), and what the spend table
holds, read back the same way."""

from __future__ import annotations

import secrets
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aibridge.v1 import usage_pb2
from controlplane.store.models import (
    GatewayToken,
    LimitSetRow,
    Spend,
    Team,
    TeamMember,
    User,
    utcnow,
)
from tests.harness import Controlplane, interception


@contextmanager
def database(cp: Controlplane) -> Iterator[Session]:
    """A session on the controlplane's database, committed at the end."""
    engine = sa.create_engine(cp.database_url)
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


def add_user(
    session: Session, name: str, teams: tuple[str, ...] = (), deleted: bool = False
) -> str:
    """User `name` (id usr_NAME), in the teams named (team_NAME, made when missing), with
    its token `name` (tok_NAME): the controlplane charges a call to its token's user."""
    now = utcnow()
    user_id = f"usr_{name}"
    session.add(
        User(id=user_id, name=name, email="", enabled=True, created_at=now, updated_at=now,
             deleted_at=now if deleted else None)
    )  # fmt: skip
    for team in teams:
        if session.get(Team, f"team_{team}") is None:
            session.add(Team(id=f"team_{team}", name=team, created_at=now))
        session.flush()
        session.add(TeamMember(team_id=f"team_{team}", user_id=user_id, added_at=now))
    session.flush()
    add_token(session, name, user=name)
    return user_id


def add_token(session: Session, name: str, user: str = "", revoked: bool = False) -> str:
    """Gateway token `name` (id tok_NAME) of user `user` (none: its own identity)."""
    now = utcnow()
    session.add(
        GatewayToken(
            id=f"tok_{name}", name=name, sha256=secrets.token_hex(32), hint="abt_x…",
            created_at=now, user_id=f"usr_{user}" if user else None,
            revoked_at=now if revoked else None,
        )
    )  # fmt: skip
    return f"tok_{name}"


def set_budget(
    session: Session, kind: str, scope_id: str, usd: float, per_member: bool = False
) -> None:
    session.add(
        LimitSetRow(
            scope_kind=kind, scope_id=scope_id, per_member=per_member, monthly_budget_usd=usd,
            providers="[]", models="[]", updated_at=utcnow(),
        )
    )  # fmt: skip


def spend_table(cp: Controlplane) -> dict[tuple[str, str], tuple[float, int, int]]:
    """(month, key) → (cost, requests, unpriced)."""
    with database(cp) as session:
        return {
            (r.month, r.key): (r.cost_usd, r.requests, r.unpriced)
            for r in session.scalars(sa.select(Spend))
        }


def call(
    request_id: str, token: str = "alice", user: str = "", model: str = "gpt-4o",
    tokens: tuple[int, int, int, int] = (1000, 100, 0, 0), ago: timedelta = timedelta(0),
    now: datetime | None = None, **fields: Any,
) -> usage_pb2.Interception:  # fmt: skip
    """A call of token `token` (tok_TOKEN), made by `user` (usr_USER) if given. gpt-4o at
    its shipped price: 1000 input and 100 output tokens cost 0.0035 USD."""
    if user:
        fields |= {"user_id": f"usr_{user}", "user_name": user}
    return interception(request_id, ago, now, model=model, token=token, tokens=tokens, **fields)


def metrics(cp: Controlplane) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{cp.metrics_port}/metrics", timeout=5) as r:
        return str(r.read().decode())
