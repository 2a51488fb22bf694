"""Provider keys at rest: Fernet with a key ring (the first key encrypts, every key decrypts)."""

from __future__ import annotations

import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

ENTRY_CACHE_SIZE = 100_000


class KeyRing:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("the encryption key ring is empty")
        try:
            self._entries = [Fernet(k.strip().encode()) for k in keys]
        except ValueError as exc:
            # Fernet's own message never contains the key.
            raise ValueError(f"invalid encryption key: {exc}") from None
        self._fernet = MultiFernet(self._entries)
        # entry_of's answers: status pages ask about every stored key, every few seconds.
        self._entry_of: dict[bytes, int | None] = {}
        # Names for the entries that give nothing of them away (a key is 256 random bits).
        self.fingerprints = [hashlib.sha256(k.strip().encode()).hexdigest()[:12] for k in keys]

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """Comma- or whitespace-separated Fernet keys, newest first."""
        return cls([k for k in text.replace(",", " ").split() if k])

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken:
            raise ValueError(
                "a provider key cannot be decrypted with any key in the ring"
            ) from None

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypts with the first key of the ring."""
        return self._fernet.rotate(ciphertext)

    def entry_of(self, ciphertext: bytes) -> int | None:
        """The position (0: the first) of the ring entry that decrypts `ciphertext`, or
        None if none does."""
        if ciphertext in self._entry_of:
            return self._entry_of[ciphertext]
        if len(self._entry_of) >= ENTRY_CACHE_SIZE:
            self._entry_of.clear()
        found = None
        for position, entry in enumerate(self._entries):
            try:
                entry.decrypt(ciphertext)
            except InvalidToken:
                continue
            found = position
            break
        self._entry_of[ciphertext] = found
        return found
