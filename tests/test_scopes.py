"""common/scopes.py's LimitSetIndex answers as the plain rule does: every set of the
call's scopes, in the order given, each with its key. Random sets and calls, seeded."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest

from common import scopes


@dataclass
class Scope:
    scope_kind: str
    scope_id: str
    per_member: bool = False


def reference(
    limit_sets: Sequence[Scope], token_id: str, user_id: str, team_ids: Iterable[str]
) -> list[tuple[Scope, str]]:
    """The rule as the module states it, one set at a time."""
    teams = set(team_ids) if user_id else set()
    found: list[tuple[Scope, str]] = []
    for s in limit_sets:
        if s.scope_kind == "default":
            found.append((s, scopes.identity_key(token_id, user_id)))
        elif s.scope_kind == "user" and user_id and s.scope_id == user_id:
            found.append((s, scopes.user_key(user_id)))
        elif s.scope_kind == "team" and s.scope_id in teams:
            key = (
                scopes.member_key(s.scope_id, user_id)
                if s.per_member
                else scopes.team_key(s.scope_id)
            )
            found.append((s, key))
        elif s.scope_kind == "token" and s.scope_id == token_id:
            found.append((s, scopes.token_key(token_id)))
    return found


@pytest.mark.parametrize("seed", range(20))
def test_the_index_answers_as_the_rule(seed: int) -> None:
    rng = random.Random(seed)
    ids = [f"x{n}" for n in range(6)] + [""]
    limit_sets = [
        Scope(
            rng.choice(["default", "user", "team", "token", "other"]),
            rng.choice(ids),
            rng.random() < 0.5,
        )
        for _ in range(rng.randrange(0, 40))
    ]
    index = scopes.LimitSetIndex(limit_sets)
    for _ in range(200):
        token_id, user_id = rng.choice(ids), rng.choice(ids)
        team_ids = rng.sample(ids, rng.randrange(0, 4))
        expected = reference(limit_sets, token_id, user_id, team_ids)
        assert index.applicable(token_id, user_id, team_ids) == expected
        assert scopes.applicable(limit_sets, token_id, user_id, team_ids) == expected
