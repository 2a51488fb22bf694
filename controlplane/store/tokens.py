"""Gateway tokens: the plaintext is returned once at creation; only its digest is stored
(common.tokens: the data planes check presented tokens against the same digest).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.tokens import TOKEN_ID_PREFIX, TOKEN_PREFIX, token_digest
from controlplane import validation
from controlplane.errors import AlreadyExists, InvalidArgument, NotFound
from controlplane.store import audit, limit_sets, users
from controlplane.store.db import Database
from controlplane.store.models import GatewayToken, LimitSetRow, Revision, utcnow

ID_PREFIX = TOKEN_ID_PREFIX
MAX_EXPIRY = timedelta(days=3650)


class Tokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        actor: str,
        name: str,
        expires_in_seconds: int = 0,
        expected_revision: int | None = None,
        user: str = "",
    ) -> tuple[int, GatewayToken, str]:
        """`user` (a user's name or id, or empty) is whom the token belongs to: a disabled
        user may be given one, refused like their others until they are enabled."""
        name = validation.name(name)
        if user:
            validation.reference(user, "a user id or name", "user")
        if expires_in_seconds < 0:
            raise InvalidArgument("expires_in_seconds", "must not be negative")
        if expires_in_seconds > MAX_EXPIRY.total_seconds():
            raise InvalidArgument("expires_in_seconds", "must be at most ten years")
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        expires_at: datetime | None = (
            now + timedelta(seconds=expires_in_seconds) if expires_in_seconds else None
        )
        with self.db.mutation(expected_revision) as m:
            taken = m.session.scalar(
                select(GatewayToken.id).where(
                    GatewayToken.name == name, GatewayToken.revoked_at.is_(None)
                )
            )
            if taken is not None:
                raise AlreadyExists(f"a live token named {name!r} already exists ({taken})")
            owner = users.find_live(m.session, user, "user") if user else None
            token = GatewayToken(
                id=ID_PREFIX + secrets.token_hex(8),
                name=name,
                sha256=token_digest(plaintext),
                hint=plaintext[: len(TOKEN_PREFIX) + 4] + "…",
                created_at=now,
                expires_at=expires_at,
                user_id=owner.id if owner else None,
            )
            m.session.add(token)
            audit.record(
                m,
                actor,
                "token.create",
                f"{name} ({token.id})",
                {
                    "name": name,
                    "hint": token.hint,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                    "user": f"{owner.name} ({owner.id})" if owner else None,
                },
            )
            m.session.flush()
            m.session.refresh(token)  # loads its user, for the answer
            return m.revision, token, plaintext

    def list(self, include_revoked: bool = False) -> tuple[int, list[GatewayToken]]:
        with self.db.read() as session:
            revision = session.scalars(select(Revision.value)).one()
            query = select(GatewayToken).order_by(GatewayToken.name, GatewayToken.created_at)
            if not include_revoked:
                query = query.where(GatewayToken.revoked_at.is_(None))
            return revision, list(session.scalars(query))

    def revoke(
        self, actor: str, ref: str, expected_revision: int | None = None
    ) -> tuple[int, GatewayToken]:
        with self.db.mutation(expected_revision) as m:
            token = _find_live(m.session, ref)
            token.revoked_at = utcnow()
            # The token's limit set goes with it: the entry says what it held.
            row = m.session.get(LimitSetRow, ("token", token.id))
            details: dict[str, object] = {}
            if row is not None:
                details["limit_set_deleted"] = limit_sets.describe(row)
                m.session.delete(row)
            audit.record(m, actor, "token.revoke", f"{token.name} ({token.id})", details)
            return m.revision, token


def _find_live(session: Session, ref: str) -> GatewayToken:
    validation.reference(ref, "a token id or name")
    column = GatewayToken.id if ref.startswith(ID_PREFIX) else GatewayToken.name
    token = session.scalars(
        select(GatewayToken).where(column == ref, GatewayToken.revoked_at.is_(None))
    ).one_or_none()
    if token is None:
        raise NotFound(f"live token {ref!r} not found")
    return token
