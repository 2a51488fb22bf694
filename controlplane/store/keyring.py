"""Provider keys at rest: Fernet with a key ring (the first key encrypts, every key decrypts)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class KeyRing:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("the encryption key ring is empty")
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys])
        except ValueError as exc:
            # Fernet's own message never contains the key.
            raise ValueError(f"invalid encryption key: {exc}") from None

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
