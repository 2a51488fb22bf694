"""Rotating the encryption key ring: which entry protects each stored provider key, and
re-encrypting them under the first entry, a batch at a time.

A new key goes first in AIBRIDGE_ENCRYPTION_KEYS and encrypts from then on; the old one
stays in the ring until `reencrypt_batch` has moved every stored key under the new one,
and can then be removed. Each batch is its own transaction, audited: an interrupted run
loses nothing, and the next picks up what is left. The plaintexts do not change, so no
revision is made (data planes have nothing to apply); the batch holds the revision lock,
so it never interleaves with a mutation of the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from controlplane.store import audit
from controlplane.store.db import Database
from controlplane.store.keyring import KeyRing
from controlplane.store.models import ProviderKey


@dataclass(frozen=True)
class Protection:
    """How many stored keys each ring entry protects (by position), and how many no entry
    can decrypt."""

    by_entry: list[int]
    undecryptable: int


class UndecryptableKeys(Exception):
    """Stored keys that no entry of the ring decrypts: the key that encrypted them was
    removed from the ring too soon (or another ring was given)."""

    def __init__(self, count: int) -> None:
        super().__init__(
            f"{count} stored provider key{'s' if count != 1 else ''} cannot be decrypted with "
            "any key of the encryption key ring (AIBRIDGE_ENCRYPTION_KEYS): put back the key "
            "they were encrypted with; once `aibridgectl keys reencrypt` has moved them under "
            "the first key, the others can go"
        )
        self.count = count


def check_decryptable(db: Database, keyring: KeyRing) -> None:
    """Raises UndecryptableKeys if the ring cannot decrypt every stored key."""
    undecryptable = protection(db, keyring).undecryptable
    if undecryptable:
        raise UndecryptableKeys(undecryptable)


def protection(db: Database, keyring: KeyRing) -> Protection:
    counts = [0] * len(keyring.fingerprints)
    undecryptable = 0
    with db.read() as session:
        for ciphertext in session.scalars(select(ProviderKey.ciphertext)):
            position = keyring.entry_of(ciphertext)
            if position is None:
                undecryptable += 1
            else:
                counts[position] += 1
    return Protection(counts, undecryptable)


@dataclass(frozen=True)
class Batch:
    reencrypted: int
    remaining: int  # stored keys still under another entry than the first


def reencrypt_batch(db: Database, keyring: KeyRing, actor: str, size: int) -> Batch:
    """Moves up to `size` stored keys under the ring's first entry, in one transaction
    with its audit entry."""
    with db.mutation(bump=False) as m:
        session = m.session
        rows = session.execute(
            select(ProviderKey.id, ProviderKey.ciphertext).order_by(ProviderKey.id)
        )
        outside = [(key_id, c) for key_id, c in rows if keyring.entry_of(c) not in (0, None)]
        chosen = outside[:size]
        for key_id, ciphertext in chosen:
            session.execute(
                update(ProviderKey)
                .where(ProviderKey.id == key_id)
                .values(ciphertext=keyring.rotate(ciphertext))
            )
        if chosen:
            details = {"keys": len(chosen), "to_entry": keyring.fingerprints[0]}
            audit.record(m, actor, "keys.reencrypt", "provider keys", details)
    return Batch(len(chosen), len(outside) - len(chosen))
