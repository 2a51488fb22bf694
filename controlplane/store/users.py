"""Users: the people gateway tokens may belong to. Disabling one refuses all of their
tokens at once (the snapshot leaves them out of the verifiers); deleting one revokes them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from controlplane import validation
from controlplane.errors import AlreadyExists, InvalidArgument
from controlplane.store import audit, live
from controlplane.store.db import Database
from controlplane.store.models import (
    GatewayToken,
    LimitSetRow,
    Revision,
    Team,
    TeamMember,
    User,
    utcnow,
)

ID_PREFIX = "usr_"


@dataclass(frozen=True)
class UserInfo:
    """A user as the admin API shows one: with its teams' names and live tokens."""

    user: User
    teams: list[str]
    tokens: int


@dataclass(frozen=True)
class DeletedUser:
    user: User
    revoked_tokens: int


class Users:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        actor: str,
        name: str,
        email: str = "",
        enabled: bool = True,
        expected_revision: int | None = None,
    ) -> tuple[int, UserInfo]:
        name = validation.name(name)
        email = validation.email(email)
        with self.db.mutation(expected_revision) as m:
            taken = m.session.scalar(
                select(User.id).where(User.name == name, User.deleted_at.is_(None))
            )
            if taken is not None:
                raise AlreadyExists(f"a user named {name!r} already exists ({taken})")
            now = utcnow()
            user = User(
                id=ID_PREFIX + secrets.token_hex(8),
                name=name,
                email=email,
                enabled=enabled,
                created_at=now,
                updated_at=now,
            )
            m.session.add(user)
            audit.record(
                m,
                actor,
                "user.create",
                f"{name} ({user.id})",
                {"name": name, "email": email, "enabled": enabled},
            )
            m.session.flush()
            return m.revision, UserInfo(user, [], 0)

    def get(self, ref: str) -> UserInfo:
        with self.db.read() as session:
            return _info(session, [find_live(session, ref)])[0]

    def list(self) -> tuple[int, list[UserInfo]]:
        with self.db.read() as session:
            revision = session.scalars(select(Revision.value)).one()
            users = session.scalars(
                select(User).where(User.deleted_at.is_(None)).order_by(User.name)
            )
            return revision, _info(session, list(users), everyone=True)

    def update(
        self,
        actor: str,
        ref: str,
        enabled: bool | None = None,
        email: str | None = None,
        expected_revision: int | None = None,
    ) -> tuple[int, UserInfo]:
        if enabled is None and email is None:
            raise InvalidArgument("update", "nothing to change (give enabled or email)")
        if email is not None:
            validation.email(email)
        with self.db.mutation(expected_revision) as m:
            user = find_live(m.session, ref)
            details: dict[str, object] = {}
            if enabled is not None:
                details["enabled"] = {"from": user.enabled, "to": enabled}
                user.enabled = enabled
            if email is not None:
                details["email"] = {"from": user.email, "to": email}
                user.email = email
            user.updated_at = utcnow()
            # Turning a user on or off is what an audit reader looks for: its own action.
            action = "user.update" if enabled is None else f"user.{_switch(enabled)}"
            audit.record(m, actor, action, f"{user.name} ({user.id})", details)
            m.session.flush()
            return m.revision, _info(m.session, [user])[0]

    def delete(
        self, actor: str, ref: str, expected_revision: int | None = None
    ) -> tuple[int, DeletedUser]:
        """Soft-deletes the user, and in the same mutation revokes their live tokens,
        removes their memberships and deletes their limit set (and their tokens')."""
        with self.db.mutation(expected_revision) as m:
            user = find_live(m.session, ref)
            now = utcnow()
            tokens = list(
                m.session.scalars(
                    select(GatewayToken).where(
                        GatewayToken.user_id == user.id, GatewayToken.revoked_at.is_(None)
                    )
                )
            )
            for token in tokens:
                token.revoked_at = now
            teams = list(
                m.session.scalars(
                    select(Team.name)
                    .join(TeamMember, TeamMember.team_id == Team.id)
                    .where(TeamMember.user_id == user.id)
                    .order_by(Team.name)
                )
            )
            m.session.execute(delete(TeamMember).where(TeamMember.user_id == user.id))
            limits = 0
            for scope in [("user", user.id)] + [("token", t.id) for t in tokens]:
                row = m.session.get(LimitSetRow, scope)
                if row is not None:
                    m.session.delete(row)
                    limits += 1
            user.deleted_at = user.updated_at = now
            audit.record(
                m,
                actor,
                "user.delete",
                f"{user.name} ({user.id})",
                {
                    "revoked_tokens": len(tokens),
                    "tokens": [f"{t.name} ({t.id})" for t in tokens],
                    "teams": teams,
                    "limit_sets_deleted": limits,
                },
            )
            return m.revision, DeletedUser(user, len(tokens))


def find_live(session: Session, ref: str, field: str = "ref") -> User:
    """A live user by id (usr_…) or name."""
    return live.find_live(session, User, ref, ID_PREFIX, "user", field)


def _info(session: Session, users: list[User], everyone: bool = False) -> list[UserInfo]:
    """Each user with the names of their (live) teams and the count of their live tokens;
    `everyone` (a listing of every live user) reads them all instead of by id."""
    ids = [u.id for u in users]
    members = select(TeamMember.user_id, Team.name).join(Team, Team.id == TeamMember.team_id)
    counts = select(GatewayToken.user_id, func.count()).where(GatewayToken.revoked_at.is_(None))
    if not everyone:
        members = members.where(TeamMember.user_id.in_(ids))
        counts = counts.where(GatewayToken.user_id.in_(ids))
    teams: dict[str, list[str]] = {i: [] for i in ids}
    for user_id, team_name in session.execute(
        members.where(Team.deleted_at.is_(None)).order_by(Team.name)
    ):
        if user_id in teams:
            teams[user_id].append(team_name)
    tokens = {u: n for u, n in session.execute(counts.group_by(GatewayToken.user_id))}
    return [UserInfo(u, teams[u.id], tokens.get(u.id, 0)) for u in users]


def _switch(enabled: bool) -> str:
    return "enable" if enabled else "disable"
