"""The governance part of bridged's snapshot: users, teams, limit sets, and this month's
spend of every scope a budget applies to. Read whole at every build, like the token
verifiers: thousands of rows at most, and a change to any of them is a new revision."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from aibridge.v1 import snapshot_pb2
from controlplane.store.models import Team, TeamMember, User


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
