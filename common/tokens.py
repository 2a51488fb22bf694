"""Gateway tokens: how a plaintext is hashed, and who a presented token lets in.

The controlplane stores only `token_digest(plaintext)` and ships it in every snapshot's
token verifiers; bridged and proxyd check a presented token against them with `Callers`,
locally, per request. Tokens are 256 random bits, so a fast hash is the right verifier:
there is nothing to brute-force, and a lookup by digest reveals nothing of a token.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from types import MappingProxyType
from typing import NamedTuple

from aibridge.v1 import snapshot_pb2

# How a token's id and its plaintext begin (controlplane/store/tokens.py makes both).
TOKEN_ID_PREFIX = "tok_"
TOKEN_PREFIX = "abt_"


def token_digest(plaintext: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 plaintext: what is stored and looked up.
    Raises UnicodeEncodeError for a string that is not text (lone surrogates)."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def could_be_plaintext(ref: str) -> bool:
    """Whether `ref`, given where a token's name or id belongs, may be its secret instead:
    names have no "_" and ids start "tok_", so anything else with one is taken for a
    secret (and an admin client refuses it, neither sending nor showing it)."""
    return "_" in ref and not ref.startswith(TOKEN_ID_PREFIX)


class Caller(NamedTuple):
    """Whom a valid token names."""

    token_id: str
    name: str
    expires_at: int  # unix seconds, 0 = never
    user_id: str = ""  # the user it belongs to; "" when the token is its own identity


class Callers:
    """The tokens of one snapshot, by digest. Immutable: a reload builds a new one."""

    __slots__ = ("_by_digest",)

    def __init__(self, verifiers: Iterable[snapshot_pb2.TokenVerifier] = ()) -> None:
        self._by_digest = MappingProxyType(
            {t.sha256: Caller(t.id, t.name, t.expires_at, t.user_id) for t in verifiers}
        )

    def __len__(self) -> int:
        return len(self._by_digest)

    def verify(self, presented: str, now: float | None = None) -> Caller | None:
        """The caller `presented` names, or None if it is unknown, expired or not text.
        `now` is unix seconds; the clock is read only for a token that can expire."""
        try:
            digest = token_digest(presented)
        except UnicodeEncodeError:  # bytes that were not UTF-8 (kept as surrogates)
            return None
        caller = self._by_digest.get(digest)
        if caller is None or not caller.expires_at:
            return caller
        return caller if (time.time() if now is None else now) < caller.expires_at else None
