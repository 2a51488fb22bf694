"""Provider keys at rest: encrypted with the first key of the ring, readable with any."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from aibridge.v1 import admin_pb2
from controlplane.store.keyring import KeyRing
from tests.harness import Controlplane, RecordingSubscriber, Secrets

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
SECRET_1 = "sk-before-rotation-0123456789"
SECRET_2 = "sk-after-rotation-9876543210"


def test_ring_decrypts_with_any_key_and_encrypts_with_the_first() -> None:
    old_ciphertext = KeyRing([OLD]).encrypt(SECRET_1)
    rotated = KeyRing.parse(f"{NEW}, {OLD}")
    assert rotated.decrypt(old_ciphertext) == SECRET_1
    assert Fernet(NEW.encode()).decrypt(rotated.encrypt(SECRET_2)).decode() == SECRET_2
    assert Fernet(NEW.encode()).decrypt(rotated.rotate(old_ciphertext)).decode() == SECRET_1
    with pytest.raises(ValueError, match="cannot be decrypted"):
        KeyRing([NEW]).decrypt(old_ciphertext)
    with pytest.raises(ValueError) as caught:
        KeyRing(["not-a-fernet-key"])
    assert "not-a-fernet-key" not in str(caught.value)
    with pytest.raises(ValueError):
        KeyRing.parse(" , ")


def key_rows(url: str) -> list[bytes]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT ciphertext FROM provider_keys ORDER BY position")
            return [bytes(row[0]) for row in conn.execute(query)]
    finally:
        engine.dispose()


def test_rotation_across_restarts(database_url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        before = Secrets(encryption_key=OLD)
        cp = Controlplane(database_url, tmp_path, before)
        await asyncio.to_thread(cp.start)
        await asyncio.to_thread(cp.admin.create_provider, "p", keys=[SECRET_1])
        await asyncio.to_thread(cp.stop)

        # A new key goes first; the old one stays so existing rows can still be read.
        cp.secrets = dataclasses.replace(before, encryption_key=f"{NEW},{OLD}")
        await asyncio.to_thread(cp.start)
        sub = RecordingSubscriber([cp.address], "bridged", before.bridged).start()
        try:
            updated = await asyncio.to_thread(
                cp.admin.UpdateProvider,
                admin_pb2.UpdateProviderRequest(ref="p", add_keys=[SECRET_2]),
            )
            await sub.wait_version(updated.revision)
            assert [k.secret for k in sub.snapshot.providers[0].keys] == [SECRET_1, SECRET_2]
        finally:
            await sub.stop()
            await asyncio.to_thread(cp.stop)
        old_row, new_row = key_rows(database_url)
        assert Fernet(OLD.encode()).decrypt(old_row).decode() == SECRET_1
        assert Fernet(NEW.encode()).decrypt(new_row).decode() == SECRET_2

        # Without the old key, a row it sealed cannot be read: the controlplane refuses to
        # start, and says how many keys it cannot decrypt (issue 18; it used to serve the
        # rest and log the row, hiding a key ring given without a key it still needs).
        cp.secrets = dataclasses.replace(before, encryption_key=NEW)
        await asyncio.to_thread(cp.start, False)
        assert cp.proc is not None
        assert await asyncio.to_thread(cp.proc.wait, 30) == 1
        assert "cannot start: 1 stored provider key cannot be decrypted" in cp.log()
        assert SECRET_1 not in cp.log() and SECRET_2 not in cp.log()
        assert OLD not in cp.log() and NEW not in cp.log()

    asyncio.run(scenario())
