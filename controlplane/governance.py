"""The governance part of bridged's snapshot: users, teams, limit sets, and this month's
spend of every scope a budget applies to. Read whole at every build, like the token
verifiers: thousands of rows at most, and a change to any of them is a new revision."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import ColumnElement, literal, or_, select
from sqlalchemy.orm import Session

from aibridge.v1 import snapshot_pb2
from common import scopes
from controlplane.store.limit_sets import LimitSet, labelled, models_of, providers_of
from controlplane.store.models import GatewayToken, LimitSetRow, Spend, Team, TeamMember, User


def build_governance(session: Session) -> snapshot_pb2.Governance:
    governance = snapshot_pb2.Governance()
    _add_users_and_teams(session, governance)
    _add_limits_and_spend(session, governance)
    return governance


def _add_users_and_teams(session: Session, governance: snapshot_pb2.Governance) -> None:
    """Enabled live users, each with the ids of its live teams; live teams."""
    teams = session.execute(
        select(Team.id, Team.name).where(Team.deleted_at.is_(None)).order_by(Team.id)
    ).all()
    governance.teams.extend(snapshot_pb2.SnapshotTeam(id=t.id, name=t.name) for t in teams)
    team_ids: dict[str, list[str]] = defaultdict(list)
    for user_id, team_id in session.execute(
        select(TeamMember.user_id, TeamMember.team_id)
        .join(Team, Team.id == TeamMember.team_id)
        .where(Team.deleted_at.is_(None))
        .order_by(TeamMember.team_id)
    ):
        team_ids[user_id].append(team_id)
    users = session.execute(
        select(User.id, User.name)
        .where(User.enabled.is_(True), User.deleted_at.is_(None))
        .order_by(User.id)
    )
    governance.users.extend(
        snapshot_pb2.SnapshotUser(id=u.id, name=u.name, team_ids=team_ids[u.id]) for u in users
    )


def _add_limits_and_spend(session: Session, governance: snapshot_pb2.Governance) -> None:
    """Every limit set; this month's spend of each scope key a budget applies to."""
    sets = labelled(session, session.scalars(select(LimitSetRow)))
    governance.limit_sets.extend(limit_set_message(s) for s in sets)
    month = scopes.month()
    budgeted = [s.row for s in sets if s.row.monthly_budget_usd is not None]
    keys = _budgeted_keys(budgeted)
    if keys is None:
        return
    query = select(Spend.key, Spend.cost_usd).where(Spend.month == month, keys).order_by(Spend.key)
    governance.spend.extend(
        snapshot_pb2.ScopeSpend(key=key, month=month, spent_usd=cost)
        for key, cost in session.execute(query)
    )


def _budgeted_keys(rows: list[LimitSetRow]) -> ColumnElement[bool] | None:
    """Which spend keys some budget applies to (common/scopes.py's keys), as one SQL
    condition; None when no set has a budget."""
    exact: set[str] = set()
    prefixes: set[str] = set()
    default = False
    for row in rows:
        if row.scope_kind == "default":  # every identity: users, and tokens without one
            prefixes.add(scopes.user_key(""))
            default = True
        elif row.scope_kind == "user":
            exact.add(scopes.user_key(row.scope_id))
        elif row.scope_kind == "team" and row.per_member:
            prefixes.add(scopes.member_key(row.scope_id, ""))
        elif row.scope_kind == "team":
            exact.add(scopes.team_key(row.scope_id))
        elif row.scope_kind == "token":
            exact.add(scopes.token_key(row.scope_id))
    conditions = [Spend.key.startswith(p, autoescape=True) for p in sorted(prefixes)]
    if exact:
        conditions.append(Spend.key.in_(sorted(exact)))
    if default:
        # Tokens with a user count under the user: only the live tokens without one are
        # identities of their own (a subquery: still one query for the spend).
        conditions.append(
            Spend.key.in_(
                select(literal(scopes.token_key("")) + GatewayToken.id).where(
                    GatewayToken.user_id.is_(None), GatewayToken.revoked_at.is_(None)
                )
            )
        )
    return or_(*conditions) if conditions else None


def limit_set_message(s: LimitSet) -> snapshot_pb2.LimitSet:
    row = s.row
    return snapshot_pb2.LimitSet(
        scope_kind=row.scope_kind,
        scope_id=row.scope_id,
        scope=s.scope,
        per_member=row.per_member,
        requests_per_minute=row.requests_per_minute or 0,
        tokens_per_minute=row.tokens_per_minute or 0,
        max_concurrent=row.max_concurrent or 0,
        monthly_budget_usd=row.monthly_budget_usd,
        providers=providers_of(row),
        models=models_of(row),
    )
