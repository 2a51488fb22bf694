"""The snapshot builder reads only what changed since its last build: whatever the
mutations, each of its snapshots must be the one a build from nothing would make, and a
database changed behind its back (a restored backup) must be read whole."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.auth import Role
from controlplane.snapshots import SnapshotBuilder
from controlplane.store import Database, KeyRing
from controlplane.store.providers import ProviderChanges, Providers
from controlplane.store.revision import advance_past
from controlplane.store.tokens import Tokens
from tests.harness import Secrets, backup_of

CONTROLPLANE = "cp-test"
READ_WHOLE = "reading them all"


class Admin:
    """Random mutations through the store, as the admin API makes them."""

    def __init__(self, db: Database, keyring: KeyRing, seed: int) -> None:
        self.providers = Providers(db, keyring)
        self.tokens = Tokens(db)
        self.random = random.Random(seed)
        self.serial = 0

    def live(self) -> list:
        return self.providers.list()[1]

    def step(self) -> str:
        self.serial += 1
        n = self.serial
        live = self.live()
        choice = self.random.choice(
            ["create", "create", "rename", "display", "url", "toggle", "add_key",
             "remove_key", "delete", "token"] if live else ["create"]
        )  # fmt: skip
        if choice == "create":
            keys = [f"sk-builder-{n}-{i}-{'x' * 20}" for i in range(self.random.randint(0, 2))]
            self.providers.create(
                "test", name=f"p-{n}", type=self.random.choice(["openai", "anthropic"]),
                base_url=f"https://p{n}.example.test", keys=keys,
                enabled=self.random.random() < 0.8,
            )  # fmt: skip
            return choice
        if choice == "token":
            self.tokens.create("test", f"token-{n}")
            return choice
        p = self.random.choice(live)
        changes = ProviderChanges()
        if choice == "rename":
            changes.name = f"renamed-{n}"
        elif choice == "display":
            changes.display_name = f"Display {n}"
        elif choice == "url":
            changes.base_url = f"https://moved{n}.example.test"
        elif choice == "toggle":
            changes.enabled = not p.enabled
        elif choice == "add_key":
            changes.add_keys = [f"sk-added-{n}-{'y' * 20}"]
        elif choice == "remove_key":
            if not p.keys:
                return "nothing"
            changes.remove_key_ids = [p.keys[0].id]
        if choice == "delete":
            self.providers.delete("test", p.id)
        else:
            self.providers.update("test", p.id, changes)
        return choice


def from_nothing(db: Database, keyring: KeyRing) -> dict[Role, bytes]:
    return dict(SnapshotBuilder(db, keyring, CONTROLPLANE).build().encoded)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def test_every_build_equals_a_build_from_nothing(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    keyring = KeyRing([Secrets().encryption_key])
    admin = Admin(db, keyring, seed=6)
    builder = SnapshotBuilder(db, keyring, CONTROLPLANE)
    done: list[str] = []
    with caplog.at_level(logging.WARNING, logger="controlplane.snapshots"):
        for _ in range(40):
            for _ in range(random.Random(len(done)).randint(1, 3)):  # a burst, one build
                done.append(admin.step())
            snapshot = builder.build()
            assert dict(snapshot.encoded) == from_nothing(db, keyring), done
    assert {"create", "rename", "toggle", "remove_key", "delete"} <= set(done)
    # Every build took the short way: none found the database changed behind its back.
    assert READ_WHOLE not in caplog.text
    cut = snapshot.for_role(Role.BRIDGED)
    assert [p.name for p in cut.providers] == sorted(p.name for p in admin.live())
    assert all(not p.keys for p in cut.providers if not p.enabled)
    assert not any(p.keys for p in snapshot.for_role(Role.PROXYD).providers)


def test_a_database_changed_behind_its_back_is_read_whole(
    db: Database, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A backup restored under a running controlplane has the same identity, and its
    revision is moved past the subscribers' (see test_snapshot_cache): to a builder that
    reads only rows stamped after its last build, nothing would look changed."""
    keyring = KeyRing([Secrets().encryption_key])
    admin = Admin(db, keyring, seed=7)
    for _ in range(10):
        admin.step()
    builder = SnapshotBuilder(db, keyring, CONTROLPLANE)
    builder.build()
    db.dispose()  # nothing may write while the backup is taken
    with backup_of(database_url, tmp_path) as backup_url:
        # The hard case: as many live providers as in the backup, one of them changed.
        changed = admin.live()[0]
        admin.providers.update("test", changed.id, ProviderChanges(display_name="after"))
        built = builder.build()
        restored = Database(backup_url)
        try:
            advance_past(restored, built.version, "a subscriber is ahead")
            builder.db = restored  # the controlplane's database is now the backup
            with caplog.at_level(logging.WARNING, logger="controlplane.snapshots"):
                snapshot = builder.build()
            assert READ_WHOLE in caplog.text
            assert dict(snapshot.encoded) == from_nothing(restored, keyring)
            names = {p.name: p.display_name for p in snapshot.for_role(Role.PROXYD).providers}
            assert names[changed.name] == changed.display_name != "after"
        finally:
            restored.dispose()


def test_a_backup_restored_and_changed_up_to_the_same_revision_is_read_whole(
    db: Database, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Undoing a mistake: the backup is restored under the running controlplane and the
    change made again, right this time, reaching the same revision as the mistake."""
    keyring = KeyRing([Secrets().encryption_key])
    admin = Admin(db, keyring, seed=8)
    for _ in range(6):
        admin.step()
    target = admin.live()[0]
    builder = SnapshotBuilder(db, keyring, CONTROLPLANE)
    builder.build()
    db.dispose()
    with backup_of(database_url, tmp_path) as backup_url:
        admin.providers.update("test", target.id, ProviderChanges(display_name="mistake"))
        mistaken = builder.build()
        restored = Database(backup_url)
        try:
            redo = Providers(restored, keyring)
            redo.update("test", target.id, ProviderChanges(display_name="fixed"))
            builder.db = restored
            with caplog.at_level(logging.WARNING, logger="controlplane.snapshots"):
                snapshot = builder.build()
            assert snapshot.version == mistaken.version  # the same revision, other contents
            assert READ_WHOLE in caplog.text
            assert dict(snapshot.encoded) == from_nothing(restored, keyring)
            names = {p.name: p.display_name for p in snapshot.for_role(Role.PROXYD).providers}
            assert names[target.name] == "fixed"
        finally:
            restored.dispose()
