"""The governance part of bridged's snapshot: users, teams, limit sets, and this month's
spend of every scope a budget applies to. Read whole at every build, like the token
verifiers: thousands of rows at most, and a change to any of them is a new revision."""

from __future__ import annotations

from sqlalchemy.orm import Session

from aibridge.v1 import snapshot_pb2


def build_governance(session: Session) -> snapshot_pb2.Governance:
    governance = snapshot_pb2.Governance()
    _add_users_and_teams(session, governance)
    _add_limits_and_spend(session, governance)
    return governance


def _add_users_and_teams(session: Session, governance: snapshot_pb2.Governance) -> None:
    """Enabled live users, each with the ids of its live teams; live teams."""


def _add_limits_and_spend(session: Session, governance: snapshot_pb2.Governance) -> None:
    """Every limit set; this month's spend of each scope key a budget applies to."""
