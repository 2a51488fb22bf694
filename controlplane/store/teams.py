"""Teams: named groups of users. A user may belong to several; a limit set on a team
counts the traffic of its members."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controlplane import validation
from controlplane.errors import AlreadyExists, NotFound
from controlplane.store import audit, live, users
from controlplane.store.db import Database
from controlplane.store.models import LimitSetRow, Revision, Team, TeamMember, User, utcnow

ID_PREFIX = "team_"


@dataclass(frozen=True)
class TeamInfo:
    """A team as the admin API shows one: with its members' names, sorted."""

    team: Team
    members: list[str]


class Teams:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, actor: str, name: str, expected_revision: int | None = None
    ) -> tuple[int, TeamInfo]:
        name = validation.name(name)
        with self.db.mutation(expected_revision) as m:
            taken = m.session.scalar(
                select(Team.id).where(Team.name == name, Team.deleted_at.is_(None))
            )
            if taken is not None:
                raise AlreadyExists(f"a team named {name!r} already exists ({taken})")
            team = Team(id=ID_PREFIX + secrets.token_hex(8), name=name, created_at=utcnow())
            m.session.add(team)
            audit.record(m, actor, "team.create", f"{name} ({team.id})", {"name": name})
            m.session.flush()
            return m.revision, TeamInfo(team, [])

    def get(self, ref: str) -> TeamInfo:
        with self.db.read() as session:
            team = find_live(session, ref)
            return TeamInfo(team, _members(session, team.id).get(team.id, []))

    def list(self) -> tuple[int, list[TeamInfo]]:
        with self.db.read() as session:
            revision = session.scalars(select(Revision.value)).one()
            teams = session.scalars(
                select(Team).where(Team.deleted_at.is_(None)).order_by(Team.name)
            )
            members = _members(session)
            return revision, [TeamInfo(t, members.get(t.id, [])) for t in teams]

    def delete(
        self, actor: str, ref: str, expected_revision: int | None = None
    ) -> tuple[int, Team]:
        """Soft-deletes the team, removing its memberships and its limit set with it."""
        with self.db.mutation(expected_revision) as m:
            team = find_live(m.session, ref)
            members = _members(m.session, team.id).get(team.id, [])
            m.session.execute(delete(TeamMember).where(TeamMember.team_id == team.id))
            limits = m.session.get(LimitSetRow, ("team", team.id))
            if limits is not None:
                m.session.delete(limits)
            team.deleted_at = utcnow()
            audit.record(
                m,
                actor,
                "team.delete",
                f"{team.name} ({team.id})",
                {"members": members, "limit_set_deleted": limits is not None},
            )
            return m.revision, team

    def add_member(
        self, actor: str, team_ref: str, user_ref: str, expected_revision: int | None = None
    ) -> tuple[int, TeamInfo]:
        validation.reference(team_ref, "a team id or name", "team")
        validation.reference(user_ref, "a user id or name", "user")
        with self.db.mutation(expected_revision) as m:
            team = find_live(m.session, team_ref, "team")
            user = users.find_live(m.session, user_ref, "user")
            if m.session.get(TeamMember, (team.id, user.id)) is not None:
                raise AlreadyExists(f"user {user.name!r} is already a member of team {team.name!r}")
            m.session.add(TeamMember(team_id=team.id, user_id=user.id, added_at=utcnow()))
            audit.record(
                m, actor, "team.add_member", f"{team.name} ({team.id})",
                {"user": f"{user.name} ({user.id})"},
            )  # fmt: skip
            m.session.flush()
            return m.revision, TeamInfo(team, _members(m.session, team.id).get(team.id, []))

    def remove_member(
        self, actor: str, team_ref: str, user_ref: str, expected_revision: int | None = None
    ) -> tuple[int, TeamInfo]:
        validation.reference(team_ref, "a team id or name", "team")
        validation.reference(user_ref, "a user id or name", "user")
        with self.db.mutation(expected_revision) as m:
            team = find_live(m.session, team_ref, "team")
            user = users.find_live(m.session, user_ref, "user")
            membership = m.session.get(TeamMember, (team.id, user.id))
            if membership is None:
                raise NotFound(f"user {user.name!r} is not a member of team {team.name!r}")
            m.session.delete(membership)
            audit.record(
                m, actor, "team.remove_member", f"{team.name} ({team.id})",
                {"user": f"{user.name} ({user.id})"},
            )  # fmt: skip
            m.session.flush()
            return m.revision, TeamInfo(team, _members(m.session, team.id).get(team.id, []))


def find_live(session: Session, ref: str, field: str = "ref") -> Team:
    """A live team by id (team_…) or name."""
    return live.find_live(session, Team, ref, ID_PREFIX, "team", field)


def _members(session: Session, team_id: str | None = None) -> dict[str, list[str]]:
    """The names of each team's members, sorted (of one team if `team_id` is given)."""
    query = (
        select(TeamMember.team_id, User.name)
        .join(User, User.id == TeamMember.user_id)
        .where(User.deleted_at.is_(None))
        .order_by(User.name)
    )
    if team_id is not None:
        query = query.where(TeamMember.team_id == team_id)
    members: dict[str, list[str]] = {}
    for team, name in session.execute(query):
        members.setdefault(team, []).append(name)
    return members
