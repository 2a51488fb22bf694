"""Who may use what and how much: the governance part of one snapshot, as a policy that
a request asks about its caller. Built once per snapshot (the route table holds it) and
never changed after, but for a cache of each token's merged limits, made on its first
call: a snapshot of 10,000 tokens costs nothing for the tokens nobody uses.

Every limit set that applies to a call must pass (common/scopes.py says which apply and
the key each counts under). Sets that share a key share its counters; each such limit
is the minimum over those sets, with the scope of the set that gives it, for messages.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from aibridge.v1 import snapshot_pb2
from common import scopes
from common.tokens import Caller

OPEN = "open"
CLOSED = "closed"


class Check(NamedTuple):
    """One key's counter limits for a call (0: no such limit), each with the scope that
    gives it. What bridged/limits.py counts."""

    key: str
    rpm: int = 0
    tpm: int = 0
    concurrent: int = 0
    rpm_scope: str = ""
    tpm_scope: str = ""
    concurrent_scope: str = ""


class Budget(NamedTuple):
    scope: str
    key: str
    usd: float


class Allowlist(NamedTuple):
    scope: str
    names: tuple[str, ...]  # as the set gives them, for messages
    match: re.Pattern[str]  # the names (or globs) as one expression


@dataclass(frozen=True, slots=True)
class Limits:
    """Everything that applies to one token's calls, merged from its sets."""

    providers: tuple[Allowlist, ...]
    models: tuple[Allowlist, ...]
    budgets: tuple[Budget, ...]
    checks: tuple[Check, ...]


NO_LIMITS = Limits((), (), (), ())


class Governance:
    def __init__(
        self, governance: snapshot_pb2.Governance | None = None, redis_unavailable: str = ""
    ) -> None:
        g = governance if governance is not None else snapshot_pb2.Governance()
        self.redis_unavailable = CLOSED if redis_unavailable == CLOSED else OPEN
        self.users: Mapping[str, snapshot_pb2.SnapshotUser] = {u.id: u for u in g.users}
        self.limit_sets = tuple(g.limit_sets)
        self.active = bool(self.limit_sets)  # no sets: nothing to check, per request
        self._spend = {s.key: (s.month, s.spent_usd) for s in g.spend}
        self._by_token: dict[str, Limits] = {}
        self._month = _Month()

    def user_name(self, user_id: str) -> str:
        user = self.users.get(user_id) if user_id else None
        return user.name if user is not None else ""

    def limits(self, caller: Caller) -> Limits:
        """What applies to this caller's calls (cached per token for this snapshot)."""
        found = self._by_token.get(caller.token_id)
        if found is None:
            found = self._by_token[caller.token_id] = self._merge(caller)
        return found

    def spent(self, key: str, now: float | None = None) -> float:
        """This UTC month's spend of a key; another month's counts as 0."""
        entry = self._spend.get(key)
        if entry is None:
            return 0.0
        return entry[1] if entry[0] == self._month.current(now) else 0.0

    def provider_refusal(self, limits: Limits, provider: str) -> str | None:
        for allowed in limits.providers:
            if not allowed.match.fullmatch(provider):
                return (
                    f"provider {provider!r} is not allowed for {allowed.scope} "
                    f"(allowed: {', '.join(allowed.names)})"
                )
        return None

    def model_refusal(self, limits: Limits, model: str) -> str | None:
        for allowed in limits.models:
            if not model:
                return (
                    f"a request without a model is not allowed for {allowed.scope} "
                    f"(allowed: {', '.join(allowed.names)})"
                )
            if not allowed.match.match(model):
                return (
                    f"model {model!r} is not allowed for {allowed.scope} "
                    f"(allowed: {', '.join(allowed.names)})"
                )
        return None

    def budget_refusal(self, limits: Limits, now: float | None = None) -> str | None:
        for b in limits.budgets:
            spent = self.spent(b.key, now)
            if spent >= b.usd:
                month = self._month.current(now)
                resets = time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(scopes.next_month_start(now))
                )
                return (
                    f"the monthly budget of {b.scope} (${b.usd:,.2f}) is spent "
                    f"(${spent:,.2f} in {month}); it resets at {resets}"
                )
        return None

    def _merge(self, caller: Caller) -> Limits:
        user = self.users.get(caller.user_id) if caller.user_id else None
        team_ids = user.team_ids if user is not None else ()
        found = scopes.applicable(self.limit_sets, caller.token_id, caller.user_id, team_ids)
        if not found:
            return NO_LIMITS
        identity = f"user:{user.name}" if user is not None else f"token:{caller.name}"
        providers: list[Allowlist] = []
        models: list[Allowlist] = []
        budgets: list[Budget] = []
        checks: dict[str, Check] = {}
        for s, key in found:
            scope = _label(s, identity)
            if s.providers:
                names = tuple(s.providers)
                providers.append(Allowlist(scope, names, _names(names)))
            if s.models:
                patterns = tuple(s.models)
                models.append(Allowlist(scope, patterns, _globs(patterns)))
            if s.HasField("monthly_budget_usd"):
                budgets.append(Budget(scope, key, s.monthly_budget_usd))
            if s.requests_per_minute or s.tokens_per_minute or s.max_concurrent:
                checks[key] = _tighter(checks.get(key, Check(key)), s, scope)
        return Limits(tuple(providers), tuple(models), tuple(budgets), tuple(checks.values()))


def _label(s: snapshot_pb2.LimitSet, identity: str) -> str:
    """The scope as a refusal names it; the default set's, with whom it counted."""
    if s.scope_kind == "default":
        return f"default ({identity})"
    return s.scope or f"{s.scope_kind}:{s.scope_id}"


def _tighter(c: Check, s: snapshot_pb2.LimitSet, scope: str) -> Check:
    """The check with each of the set's limits that is stricter than the one it has."""
    rpm, rpm_scope = _min(c.rpm, c.rpm_scope, s.requests_per_minute, scope)
    tpm, tpm_scope = _min(c.tpm, c.tpm_scope, s.tokens_per_minute, scope)
    conc, conc_scope = _min(c.concurrent, c.concurrent_scope, s.max_concurrent, scope)
    return Check(c.key, rpm, tpm, conc, rpm_scope, tpm_scope, conc_scope)


def _min(limit: int, scope: str, other: int, other_scope: str) -> tuple[int, str]:
    if other > 0 and (limit == 0 or other < limit):
        return other, other_scope
    return limit, scope


def _names(names: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(n) for n in names))


def _globs(patterns: tuple[str, ...]) -> re.Pattern[str]:
    # fnmatch.translate ends each in \Z: one expression, matched from the start, is
    # fnmatchcase over the list.
    return re.compile("|".join(fnmatch.translate(p) for p in patterns))


class _Month:
    """The current UTC month, recomputed only when it ends."""

    __slots__ = ("_ends", "_name")

    def __init__(self) -> None:
        self._name = ""
        self._ends = 0.0

    def current(self, now: float | None = None) -> str:
        t = time.time() if now is None else now
        if now is not None:  # a given time (tests): no cache
            return scopes.month(t)
        if t >= self._ends or not self._name:
            self._name, self._ends = scopes.month(t), scopes.next_month_start(t)
        return self._name
