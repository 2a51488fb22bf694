"""Which limit sets apply to a request, and the key each one counts it under.

A limit set attaches to a scope: `default` (every identity separately: a token's user,
or the token itself when it has none), `user`, `team` (the team's total, or each member
separately when `per_member`) or `token`. Every set that applies must pass; none
overrides another.

A set's key names what it counts: the rate, concurrency and spend counters of a set are
kept under it, and the controlplane's spend table uses the same keys. Two sets that count
the same traffic share a key (`default` and `user:U` both count U's calls as `user:U`), so
their counters are one, checked against each set's own limit.

The data planes (enforcement) and the controlplane (spend, budget crossings) both read
them from here: a rule written twice drifts.
"""

from __future__ import annotations

import calendar
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Generic, Protocol, TypeVar


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def team_key(team_id: str) -> str:
    return f"team:{team_id}"


def member_key(team_id: str, user_id: str) -> str:
    return f"member:{team_id}:{user_id}"


def token_key(token_id: str) -> str:
    return f"token:{token_id}"


def model_key(model: str) -> str:
    return f"model:{model}"


def provider_key(provider_id: str) -> str:
    return f"provider:{provider_id}"


def identity_key(token_id: str, user_id: str) -> str:
    """Whom the default set counts: the token's user, or the token without one."""
    return user_key(user_id) if user_id else token_key(token_id)


def spend_keys(token_id: str, user_id: str, team_ids: Iterable[str]) -> list[str]:
    """Every scope key a call of this token adds its cost to (model and provider aside)."""
    keys = [token_key(token_id)]
    if user_id:
        keys.append(user_key(user_id))
        for team_id in team_ids:
            keys += (team_key(team_id), member_key(team_id, user_id))
    return keys


def month(unix_seconds: float | None = None) -> str:
    """The UTC calendar month, "YYYY-MM", budgets are counted in."""
    return time.strftime("%Y-%m", time.gmtime(unix_seconds))


def next_month_start(unix_seconds: float | None = None) -> int:
    """Unix seconds when the UTC month after `unix_seconds`'s begins: when budgets reset."""
    t = time.gmtime(unix_seconds)
    year, mon = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, mon, 1, 0, 0, 0, 0, 0, 0))


class LimitScope(Protocol):
    """What `applicable` reads of a limit set (snapshot_pb2.LimitSet has these)."""

    scope_kind: str
    scope_id: str
    per_member: bool


S = TypeVar("S", bound=LimitScope)


def applicable(
    limit_sets: Sequence[S], token_id: str, user_id: str, team_ids: Iterable[str]
) -> list[tuple[S, str]]:
    """The sets that apply to a call of this token (whose user, if any, is in these
    teams), each with the key it counts the call under. For many calls, build a
    LimitSetIndex once instead."""
    return LimitSetIndex(limit_sets).applicable(token_id, user_id, team_ids)


class LimitSetIndex(Generic[S]):
    """The limit sets by scope, built once: `applicable` costs O(the user's teams), not
    O(the sets). Answers as `applicable` does, in the order of the sets given."""

    def __init__(self, limit_sets: Iterable[S]) -> None:
        self._by_scope: dict[tuple[str, str], list[tuple[int, S]]] = defaultdict(list)
        for n, s in enumerate(limit_sets):
            self._by_scope[s.scope_kind, "" if s.scope_kind == "default" else s.scope_id].append(
                (n, s)
            )

    def applicable(
        self, token_id: str, user_id: str, team_ids: Iterable[str]
    ) -> list[tuple[S, str]]:
        found: list[tuple[int, S, str]] = []
        by_scope = self._by_scope
        for n, s in by_scope.get(("default", ""), ()):
            found.append((n, s, identity_key(token_id, user_id)))
        if user_id:
            for n, s in by_scope.get(("user", user_id), ()):
                found.append((n, s, user_key(user_id)))
            for team_id in set(team_ids):
                for n, s in by_scope.get(("team", team_id), ()):
                    key = member_key(team_id, user_id) if s.per_member else team_key(team_id)
                    found.append((n, s, key))
        for n, s in by_scope.get(("token", token_id), ()):
            found.append((n, s, token_key(token_id)))
        found.sort(key=lambda f: f[0])
        return [(s, key) for _, s, key in found]
