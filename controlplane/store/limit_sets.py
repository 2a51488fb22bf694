"""Limit sets, one per scope: `default`, `user:NAME`, `team:NAME`, `token:NAME`.

A scope names a live user, team or token; it is stored as (scope_kind, scope_id) and
shown back by name. Setting merges: each field given replaces the stored one, `clear`
removes named fields, a new set starts with no limits. A set left with no limits (after
a clear, or created so) is kept, and listed, until `clear_set` deletes it.
(controlplane/limits.py is something else: the gRPC server's own bounds.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import validation
from controlplane.errors import InvalidArgument, NotFound
from controlplane.pricing import validate_model
from controlplane.store import audit
from controlplane.store.db import Database
from controlplane.store.models import (
    GatewayToken,
    LimitSetRow,
    Provider,
    Revision,
    Team,
    User,
    utcnow,
)

COUNT_MAX = 1_000_000_000  # rpm, tpm, concurrency: beyond is a typo
BUDGET_MAX = 1e9  # USD a month
LIST_MAX = 100  # providers or model patterns in one set

# The fields a set has, as SetLimitsRequest names them (and `clear` takes them).
FIELDS = (
    "per_member",
    "requests_per_minute",
    "tokens_per_minute",
    "max_concurrent",
    "monthly_budget_usd",
    "providers",
    "models",
)
_COUNTS = ("requests_per_minute", "tokens_per_minute", "max_concurrent")
_KINDS = ("default", "user", "team", "token")  # also the order of ListLimits' ties
_SCOPE_FORMS = '"default", "user:NAME", "team:NAME" or "token:NAME"'


@dataclass(frozen=True)
class Scope:
    kind: str
    id: str  # "" for default
    label: str  # as the CLI names it: "default", "user:alice"


@dataclass(frozen=True)
class LimitChanges:
    """What SetLimits asks for: None leaves a field as it is."""

    per_member: bool | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent: int | None = None
    monthly_budget_usd: float | None = None
    providers: Sequence[str] | None = None
    models: Sequence[str] | None = None
    clear: Sequence[str] = ()


@dataclass(frozen=True)
class LimitSet:
    """A stored set with the label of its scope."""

    scope: str
    row: LimitSetRow


class LimitSets:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self) -> tuple[int, list[LimitSet]]:
        """Every set, sorted by scope label, default first."""
        with self.db.read() as session:
            revision = session.scalars(select(Revision.value)).one()
            return revision, labelled(session, session.scalars(select(LimitSetRow)))

    def set(
        self,
        actor: str,
        scope: str,
        changes: LimitChanges,
        expected_revision: int | None = None,
    ) -> tuple[int, LimitSet]:
        values = _validated(changes)
        with self.db.mutation(expected_revision) as m:
            found = resolve_scope(m.session, scope)
            if "providers" in values:
                _check_providers(m.session, values["providers"])
            if changes.per_member and found.kind != "team":
                raise InvalidArgument("per_member", "applies only to a team's set")
            row = m.session.get(LimitSetRow, (found.kind, found.id))
            before = describe(row) if row is not None else None
            if row is None:
                row = LimitSetRow(
                    scope_kind=found.kind, scope_id=found.id, per_member=False,
                    providers="[]", models="[]",
                )  # fmt: skip
                m.session.add(row)
            for name in changes.clear:
                _clear(row, name)
            for name, value in values.items():
                setattr(row, name, json.dumps(value) if name in ("providers", "models") else value)
            row.updated_at = utcnow()
            audit.record(
                m, actor, "limits.set", found.label,
                {"scope": found.label, "before": before, "after": describe(row)},
            )  # fmt: skip
            return m.revision, LimitSet(found.label, row)

    def clear_set(
        self, actor: str, scope: str, expected_revision: int | None = None
    ) -> tuple[int, str]:
        """Deletes the scope's set; NotFound when it has none."""
        with self.db.mutation(expected_revision) as m:
            found = resolve_scope(m.session, scope)
            row = m.session.get(LimitSetRow, (found.kind, found.id))
            if row is None:
                raise NotFound(f"{found.label} has no limit set")
            before = describe(row)
            m.session.delete(row)
            audit.record(
                m, actor, "limits.clear", found.label, {"scope": found.label, "before": before}
            )
            return m.revision, found.label


def resolve_scope(session: Session, scope: str) -> Scope:
    """The live user, team or token a scope names (by name or id); NotFound otherwise."""
    if scope == "default":
        return Scope("default", "", "default")
    kind, sep, ref = scope.partition(":")
    if not sep or kind not in _KINDS or kind == "default" or not ref:
        raise InvalidArgument("scope", f"must be {_SCOPE_FORMS}")
    if not validation.possible_id(ref):
        raise InvalidArgument("scope", f"is not a {kind}'s name or id")
    if kind == "user":
        user = session.scalars(
            select(User).where(
                (User.id == ref) | (User.name == ref), User.deleted_at.is_(None)
            )
        ).first()  # fmt: skip
        if user is None:
            raise NotFound(f"live user {ref!r} not found")
        return Scope("user", user.id, f"user:{user.name}")
    if kind == "team":
        team = session.scalars(
            select(Team).where((Team.id == ref) | (Team.name == ref), Team.deleted_at.is_(None))
        ).first()
        if team is None:
            raise NotFound(f"live team {ref!r} not found")
        return Scope("team", team.id, f"team:{team.name}")
    token = session.scalars(
        select(GatewayToken).where(
            (GatewayToken.id == ref) | (GatewayToken.name == ref),
            GatewayToken.revoked_at.is_(None),
        )
    ).first()
    if token is None:
        raise NotFound(f"live token {ref!r} not found")
    return Scope("token", token.id, f"token:{token.name}")


def _check_providers(session: Session, names: Sequence[str]) -> None:
    """An allowlist names live providers: a typo would refuse every call of the scope."""
    if not names:
        return
    live = set(
        session.scalars(
            select(Provider.name).where(Provider.name.in_(names), Provider.deleted_at.is_(None))
        )
    )
    missing = [n for n in names if n not in live]
    if missing:
        raise NotFound(f"no provider named {missing[0]!r}")


def rename_provider(session: Session, old: str, new: str) -> list[str]:
    """Rewrites the allowlists that name provider `old` to name `new`, in the rename's
    transaction; returns the scopes of the sets changed."""
    rows = session.scalars(
        select(LimitSetRow).where(LimitSetRow.providers.contains(json.dumps(old), autoescape=True))
    )
    changed = [r for r in rows if old in providers_of(r)]
    for row in changed:
        names = {new if p == old else p for p in providers_of(row)}
        row.providers = json.dumps(sorted(names))
        row.updated_at = utcnow()
    return [s.scope for s in labelled(session, changed)]


def labelled(session: Session, rows: Iterable[LimitSetRow]) -> list[LimitSet]:
    """`rows` with their scopes' labels (three queries, whatever the number of sets),
    sorted by label, default first. A set whose user, team or token is gone (they delete
    it with them) would show its id."""
    rows = list(rows)
    names: dict[tuple[str, str], str] = {}
    for kind, model in (("user", User), ("team", Team), ("token", GatewayToken)):
        ids = [r.scope_id for r in rows if r.scope_kind == kind]
        if ids:
            for id_, name in session.execute(select(model.id, model.name).where(model.id.in_(ids))):
                names[(kind, id_)] = name
    found = [
        LimitSet(
            "default"
            if r.scope_kind == "default"
            else f"{r.scope_kind}:{names.get((r.scope_kind, r.scope_id), r.scope_id)}",
            r,
        )
        for r in rows
    ]
    return sorted(found, key=lambda s: (s.scope != "default", s.scope))


def providers_of(row: LimitSetRow) -> list[str]:
    return list(json.loads(row.providers))


def models_of(row: LimitSetRow) -> list[str]:
    return list(json.loads(row.models))


def describe(row: LimitSetRow) -> dict[str, Any]:
    """The set's limits, for the audit log: unset ones left out."""
    out: dict[str, Any] = {}
    if row.per_member:
        out["per_member"] = True
    for name in (*_COUNTS, "monthly_budget_usd"):
        if getattr(row, name) is not None:
            out[name] = getattr(row, name)
    if providers_of(row):
        out["providers"] = providers_of(row)
    if models_of(row):
        out["models"] = models_of(row)
    return out


def _clear(row: LimitSetRow, name: str) -> None:
    if name == "per_member":
        row.per_member = False
    elif name in ("providers", "models"):
        setattr(row, name, "[]")
    else:
        setattr(row, name, None)


def _validated(changes: LimitChanges) -> dict[str, Any]:
    """The fields given, validated (lists deduplicated; providers sorted)."""
    for name in changes.clear:
        if name not in FIELDS:
            raise InvalidArgument("clear", f"{name!r} is not a limit (one of {', '.join(FIELDS)})")
    values: dict[str, Any] = {}
    if changes.per_member is not None:
        values["per_member"] = changes.per_member
    for name in _COUNTS:
        value = getattr(changes, name)
        if value is not None:
            if isinstance(value, bool) or not 1 <= value <= COUNT_MAX:
                raise InvalidArgument(name, f"must be a whole number from 1 to {COUNT_MAX:,}")
            values[name] = int(value)
    budget = changes.monthly_budget_usd
    if budget is not None:
        if not math.isfinite(budget) or not 0 <= budget <= BUDGET_MAX:
            raise InvalidArgument("monthly_budget_usd", f"must be USD from 0 to {BUDGET_MAX:,.0f}")
        values["monthly_budget_usd"] = float(budget)
    if changes.providers is not None:
        _bounded(changes.providers, "providers")
        values["providers"] = sorted({validation.name(p, "providers") for p in changes.providers})
    if changes.models is not None:
        _bounded(changes.models, "models")
        values["models"] = list(dict.fromkeys(validate_model(p, "models") for p in changes.models))
    both = sorted(set(values) & set(changes.clear))
    if both:
        raise InvalidArgument("clear", f"{both[0]} is both given and cleared")
    return values


def _bounded(items: Sequence[str], field: str) -> None:
    if len(items) > LIST_MAX:
        raise InvalidArgument(field, f"must list at most {LIST_MAX}")
