"""This month's spend of users and teams against the budget that applies to each, for
the Users and Teams pages."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from aibridge.v1 import admin_pb2
from console.views import call


@dataclass(frozen=True)
class Budgeted:
    """What a user or team spent this month against the monthly budget that applies to
    it as a whole (None: no budget)."""

    spent: float
    budget: float | None

    @property
    def share(self) -> float:
        """The part of the budget spent (1.0: all of it); 0 without a budget, or with a
        budget of 0 (which allows nothing: no share of it to show)."""
        return self.spent / self.budget if self.budget else 0.0

    @property
    def percent(self) -> str:
        return f"{100 * self.share:.1f}%"

    @property
    def over(self) -> bool:
        """Spent at or past the budget: the gateway refuses the scope's calls."""
        return self.budget is not None and self.spent >= self.budget and self.spent > 0


@dataclass(frozen=True)
class Spending:
    """This month's spend by user or team (QuerySpend), and every limit set (ListLimits):
    what each spent against the budget that applies to it."""

    month: str  # "YYYY-MM", UTC
    unpriced: int  # the month's calls of a model with no price: their cost is not counted
    rows: Mapping[str, Any]  # SpendRow by the user's or team's id
    sets: Sequence[Any]  # every Limits

    def of(self, id_: str, scopes: Collection[str]) -> Budgeted:
        """What `id_` spent, against the budget the API gives its row; one that spent
        nothing this month has no row, so its budget is the same rule's, from the sets of
        `scopes` (as ListLimits names them: "default", "user:NAME", "team:NAME")."""
        row = self.rows.get(id_)
        if row is not None:
            return Budgeted(row.spent_usd, row.budget_usd if row.HasField("budget_usd") else None)
        return Budgeted(0.0, smallest_budget(self.sets, scopes))

    def set_of(self, scope: str) -> Any | None:
        """The limit set of `scope`, if it has one."""
        return next((s for s in self.sets if s.scope == scope), None)


def budget_scopes(kind: str, name: str) -> tuple[str, ...]:
    """The limit sets whose budget holds the user or team (`kind`) `name` as a whole: a
    user, the default set's and their own (the smaller one); a team, its own (unless it
    is per member)."""
    own = f"{kind}:{name}"
    return ("default", own) if kind == "user" else (own,)


async def spending(request: web.Request, by: str) -> Spending:
    spend, limits = await asyncio.gather(
        call(request, "QuerySpend", admin_pb2.QuerySpendRequest(by=by)),
        call(request, "ListLimits", admin_pb2.ListLimitsRequest()),
    )
    rows = {row.id: row for row in spend.rows}
    return Spending(spend.month, spend.unpriced, rows, list(limits.limits))


def smallest_budget(sets: Iterable[Any], scopes: Collection[str]) -> float | None:
    """The smallest monthly budget among the sets of `scopes` that applies to the scope as
    a whole (a team's per-member set applies to each member instead)."""
    budgets = [
        s.monthly_budget_usd
        for s in sets
        if s.scope in scopes and s.HasField("monthly_budget_usd") and not s.per_member
    ]
    return min(budgets, default=None)
