"""The spend table: what each scope spent in each UTC month.

The usage ingest adds to it in the transaction that stores the interceptions, once per
new interception (`add`), and learns there which budgets the batch crossed. QuerySpend
and the spend metrics read it back by user, team, token, model or provider (`Spending`).

A call counts under every key common/scopes.py gives it: its token, its user, each of
the user's teams and its membership of each (as the database has the teams when the call
is stored), its model and its provider.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from common import scopes
from controlplane.errors import InvalidArgument
from controlplane.store.db import Database
from controlplane.store.models import (
    GatewayToken,
    LimitSetRow,
    Provider,
    Spend,
    Team,
    TeamMember,
    User,
)

BY = ("user", "team", "token", "model", "provider")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


# --- adding (the usage ingest) ---------------------------------------------------------------


@dataclass
class _Added:
    cost_usd: float = 0.0
    requests: int = 0
    unpriced: int = 0


@dataclass(frozen=True)
class Crossing:
    """A key whose spend this month went from below a budget that applies to it to at or
    above it."""

    limit_set: LimitSetRow
    key: str
    spent_usd: float


def add(session: Session, calls: Sequence[Mapping[str, Any]], month: str) -> list[Crossing]:
    """Adds the calls (interception rows just inserted, with their cost_usd) to the spend
    of every key each counts under; returns the budgets of `month` (the current one) they
    crossed."""
    teams = _team_ids(session, {c["user_id"] for c in calls if c["user_id"]})
    added: dict[tuple[str, str], _Added] = defaultdict(_Added)
    for call in calls:
        cost = call["cost_usd"]
        called_in = scopes.month(call["started_at"].timestamp())
        for key in _keys(call, teams):
            total = added[called_in, key]
            total.requests += 1
            if cost is None:
                total.unpriced += 1
            else:
                total.cost_usd += cost
    if not added:
        return []
    spent = _upsert(session, added)
    this_month = [c for c in calls if scopes.month(c["started_at"].timestamp()) == month]
    if not this_month:
        return []
    return _crossings(session, this_month, teams, month, added, spent)


def any_budget(session: Session) -> bool:
    """Whether some limit set has a monthly budget."""
    found = session.scalar(
        select(LimitSetRow.scope_kind).where(LimitSetRow.monthly_budget_usd.is_not(None)).limit(1)
    )
    return found is not None


def _keys(call: Mapping[str, Any], teams: Mapping[str, list[str]]) -> list[str]:
    user_id = call["user_id"]
    return [
        *scopes.spend_keys(call["token_id"], user_id, teams.get(user_id, ())),
        scopes.model_key(call["model"]),
        scopes.provider_key(call["provider_id"]),
    ]


def _team_ids(session: Session, user_ids: Iterable[str]) -> dict[str, list[str]]:
    """Each user's live teams."""
    ids = sorted(user_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(TeamMember.user_id, TeamMember.team_id)
        .join(Team, Team.id == TeamMember.team_id)
        .where(TeamMember.user_id.in_(ids), Team.deleted_at.is_(None))
        .order_by(TeamMember.team_id)
    )
    found: dict[str, list[str]] = defaultdict(list)
    for user_id, team_id in rows:
        found[user_id].append(team_id)
    return found


def _upsert(session: Session, added: Mapping[tuple[str, str], _Added]) -> dict[str, float]:
    """One upsert row per (month, key); returns each key's spend after it, by "month key"."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(Spend)
    statement = insert.on_conflict_do_update(
        index_elements=[Spend.month, Spend.key],
        set_={
            "cost_usd": Spend.cost_usd + insert.excluded.cost_usd,
            "requests": Spend.requests + insert.excluded.requests,
            "unpriced": Spend.unpriced + insert.excluded.unpriced,
        },
    ).returning(Spend.month, Spend.key, Spend.cost_usd)
    # Sorted: concurrent ingests on PostgreSQL lock the rows they share in the same order,
    # so they wait for each other instead of deadlocking.
    rows = [
        {"month": month, "key": key, "cost_usd": a.cost_usd, "requests": a.requests,
         "unpriced": a.unpriced}
        for (month, key), a in sorted(added.items())
    ]  # fmt: skip
    return {f"{m} {k}": cost for m, k, cost in session.execute(statement, rows)}


def _crossings(
    session: Session,
    calls: Sequence[Mapping[str, Any]],
    teams: Mapping[str, list[str]],
    month: str,
    added: Mapping[tuple[str, str], _Added],
    spent: Mapping[str, float],
) -> list[Crossing]:
    budgeted = list(
        session.scalars(select(LimitSetRow).where(LimitSetRow.monthly_budget_usd.is_not(None)))
    )
    if not budgeted:
        return []
    index = scopes.LimitSetIndex(budgeted)
    # Calls of one token and user share their sets and keys: each pair is checked once.
    identities = sorted({(call["token_id"], call["user_id"]) for call in calls})
    found: dict[tuple[str, str, str], Crossing] = {}
    for token_id, user_id in identities:
        for limit_set, key in index.applicable(token_id, user_id, teams.get(user_id, ())):
            budget = limit_set.monthly_budget_usd
            now = spent[f"{month} {key}"]
            # What it was before this batch, from what the upsert returned: right even
            # when another ingest added to the key meanwhile (PostgreSQL).
            before = now - added[month, key].cost_usd
            if budget is not None and before < budget <= now:
                found[limit_set.scope_kind, limit_set.scope_id, key] = Crossing(limit_set, key, now)
    return list(found.values())


def scope_label(session: Session, limit_set: LimitSetRow) -> str:
    """The set's scope as aibridgectl names it ("default", "user:alice", …)."""
    kind = limit_set.scope_kind
    if kind not in _NAMED:
        return kind
    id_column, name_column, _ = _NAMED[kind]
    name = session.scalar(select(name_column).where(id_column == limit_set.scope_id))
    return f"{kind}:{name or limit_set.scope_id}"


# --- reading (QuerySpend, metrics) -----------------------------------------------------------


@dataclass(frozen=True)
class SpendLine:
    name: str
    id: str
    spent_usd: float
    requests: int
    budget_usd: float | None  # the smallest that applies to the scope as a whole


@dataclass(frozen=True)
class SpendReport:
    by: str
    month: str
    lines: list[SpendLine]
    unpriced: int  # the month's calls that used tokens of a model with no price


def check_month(month: str) -> str:
    """A "YYYY-MM" month; empty: the current one."""
    if not month:
        return scopes.month()
    found = _MONTH.fullmatch(month)
    if found is None or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1970:
        raise InvalidArgument("month", 'must be a month as "YYYY-MM" (like "2025-11")')
    return month


class Spending:
    def __init__(self, db: Database) -> None:
        self.db = db

    def report(self, by: str = "user", month: str = "", limit: int | None = None) -> SpendReport:
        """The month's spend (default: the current month) by user, team, token, model or
        provider, the highest first; with `limit`, that many at most."""
        by = by or "user"
        if by not in BY:
            raise InvalidArgument("by", f"must be one of {', '.join(BY)}")
        month = check_month(month)
        prefix = f"{by}:"
        query = (
            select(Spend.key, Spend.cost_usd, Spend.requests)
            .where(Spend.month == month, Spend.key.startswith(prefix))
            .order_by(Spend.cost_usd.desc(), Spend.key)
            .limit(limit)
        )
        with self.db.read() as session:
            found = [(key.removeprefix(prefix), cost, n) for key, cost, n in session.execute(query)]
            names = _names(session, by, [i for i, _, _ in found])
            budgets = _budgets(session, by, [i for i, _, _ in found])
            unpriced = session.scalar(
                select(func.coalesce(func.sum(Spend.unpriced), 0)).where(
                    Spend.month == month, Spend.key.startswith("model:")
                )
            )
        lines = [
            SpendLine(names.get(i, i), i, cost, int(n), budgets.get(i)) for i, cost, n in found
        ]
        lines.sort(key=lambda line: (-line.spent_usd, line.name))
        return SpendReport(by, month, lines, int(unpriced or 0))


# Each kind's id, name, and when it went (a token is revoked, the rest are deleted).
_NAMED: dict[str, tuple[Any, Any, Any]] = {
    "user": (User.id, User.name, User.deleted_at),
    "team": (Team.id, Team.name, Team.deleted_at),
    "token": (GatewayToken.id, GatewayToken.name, GatewayToken.revoked_at),
    "provider": (Provider.id, Provider.name, Provider.deleted_at),
}


def _names(session: Session, by: str, ids: Sequence[str]) -> dict[str, str]:
    """Each id's current name; a deleted user's, team's or provider's (a revoked
    token's) says so."""
    if by not in _NAMED or not ids:
        return {}
    id_column, name_column, gone_column = _NAMED[by]
    mark = " (revoked)" if by == "token" else " (deleted)"
    rows = session.execute(select(id_column, name_column, gone_column).where(id_column.in_(ids)))
    return {i: name + (mark if gone else "") for i, name, gone in rows}


def _budgets(session: Session, by: str, ids: Sequence[str]) -> dict[str, float]:
    """The smallest monthly budget that applies to each scope as a whole: a user's own set
    and the default; a team's set unless it is per member; a token's own set, and the
    default for a token without a user."""
    if by not in ("user", "team", "token") or not ids:
        return {}
    sets = session.scalars(
        select(LimitSetRow).where(
            LimitSetRow.monthly_budget_usd.is_not(None),
            (LimitSetRow.scope_kind == "default")
            | ((LimitSetRow.scope_kind == by) & LimitSetRow.scope_id.in_(ids)),
        )
    )
    default: float | None = None
    own: dict[str, float] = {}
    for s in sets:
        if s.monthly_budget_usd is None or (by == "team" and s.per_member):
            continue
        if s.scope_kind == "default":
            default = s.monthly_budget_usd
        else:
            own[s.scope_id] = s.monthly_budget_usd
    with_default: set[str] = set()
    if default is not None and by == "user":
        with_default = set(ids)
    elif default is not None and by == "token":  # a user's token counts under its user
        owned = session.scalars(
            select(GatewayToken.id).where(
                GatewayToken.id.in_(ids), GatewayToken.user_id.is_not(None)
            )
        )
        with_default = set(ids) - set(owned)
    budgets: dict[str, float] = {}
    for i in ids:
        candidates = [own[i]] if i in own else []
        if i in with_default and default is not None:
            candidates.append(default)
        if candidates:
            budgets[i] = min(candidates)
    return budgets
