"""The last snapshot on disk: a data plane restarted while the controlplane is down serves
from it, and says so; a fresh snapshot always replaces it, even from a new database."""

from __future__ import annotations

import contextlib
import os
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aibridge.v1 import admin_pb2, snapshot_pb2
from common.snapshot_file import SnapshotFile
from mockupstream import MockUpstream
from tests.harness import (
    Bridged,
    Controlplane,
    Proxyd,
    Secrets,
    backup_of,
    postgres_database,
    wait_until,
)

KEY = "sk-cached-provider-key-LEAKCHECK-0001"


def snapshot(version: int, role: str = "bridged") -> snapshot_pb2.ProviderSnapshot:
    message = snapshot_pb2.ProviderSnapshot(version=version, role=role, database_id="db-1")
    message.providers.add(id="p1", name="llm", type="openai", enabled=True).keys.add(
        id="k1", secret=KEY, hint="0001"
    )
    return message


def test_file_is_sealed_private_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "state" / "bridged.snapshot"
    cache = SnapshotFile(path, "abb_credential")
    assert cache.load("bridged") is None  # nothing saved yet

    cache.save(snapshot(3))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KEY.encode() not in path.read_bytes() and b"llm" not in path.read_bytes()
    assert cache.load("bridged") == snapshot(3)
    cache.save(snapshot(4))
    assert cache.load("bridged") == snapshot(4)
    assert [p.name for p in path.parent.iterdir()] == ["bridged.snapshot"]  # no temporaries


def test_unusable_files_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bridged.snapshot"
    SnapshotFile(path, "abb_credential").save(snapshot(3))
    assert SnapshotFile(path, "abb_rotated_credential").load("bridged") is None
    assert SnapshotFile(path, "abb_credential").load("proxyd") is None  # another role's

    path.write_bytes(path.read_bytes()[:-10])  # damaged
    assert SnapshotFile(path, "abb_credential").load("bridged") is None


def readyz(url: str) -> dict[str, Any]:
    return httpx.get(url + "/readyz", timeout=5).json()


def chat_through_bridged(bridged: Bridged, token: str) -> str:
    response = httpx.post(
        bridged.provider_url("llm") + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "m", "messages": []},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def chat_through_proxyd(proxyd: Proxyd, upstream: MockUpstream, token: str) -> str:
    trust = ssl.create_default_context(cafile=str(proxyd.ca_path))
    with httpx.Client(proxy=proxyd.proxy_url(token), verify=trust, timeout=30) as client:
        response = client.post(
            f"https://localhost:{upstream.port}/v1/chat/completions",
            json={"model": "m", "messages": []},
        )
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def cached_version(process: Bridged | Proxyd, secrets: Secrets) -> int:
    token = secrets.bridged if process.role == "bridged" else secrets.proxyd
    cache = SnapshotFile(process.workdir / "state" / f"{process.role}.snapshot", token)
    loaded = cache.load(process.role)
    return loaded.version if loaded else 0


@pytest.mark.faults
def test_restart_while_the_controlplane_is_down_serves_the_cache(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    secrets: Secrets, tls_upstream_a: MockUpstream,
) -> None:  # fmt: skip
    bridged, proxyd = mitm
    created = controlplane.admin.create_provider(
        "llm", f"https://localhost:{tls_upstream_a.port}/v1", keys=[KEY]
    )
    controlplane.admin.wait_applied(created.revision)
    both = (bridged, proxyd)
    wait_until(
        lambda: all(cached_version(p, secrets) == created.revision for p in both), 15, "cache"
    )
    assert KEY not in (bridged.workdir / "state" / "bridged.snapshot").read_text()

    controlplane.kill()
    for process in (bridged, proxyd):
        process.stop()
        process.start()  # ready without a controlplane: from the cache
        state = readyz(process.url)
        assert state == {
            "ready": True, "version": created.revision,
            "controlplane_connected": False, "from_cache": True,
        }  # fmt: skip
        assert f"aibridge_{process.role}_snapshot_from_cache 1.0" in process.metrics()
        assert "serving the cached snapshot" in process.log()
    assert chat_through_bridged(bridged, token) == "hello from A"
    assert chat_through_proxyd(proxyd, tls_upstream_a, token) == "hello from A"
    assert tls_upstream_a.seen[-1].key == KEY  # the key came out of bridged's cache

    controlplane.start()  # same port, same database, nothing changed meanwhile
    # The controlplane confirms the cached version: no longer "from cache".
    wait_until(lambda: all(readyz(p.url)["from_cache"] is False for p in both), 30, "reconnect")
    for process in both:
        assert readyz(process.url)["controlplane_connected"] is True
        assert f"aibridge_{process.role}_snapshot_from_cache 0.0" in process.metrics()
    # The processes stopped while the controlplane was down could not say goodbye: they
    # are listed as disconnected, and a wait with a fleet grace would hold for them.
    controlplane.admin.wait_applied(created.revision, fleet_grace=0)
    changed = controlplane.admin.create_provider("other", "https://api.example.com/v1").revision
    controlplane.admin.wait_applied(changed, fleet_grace=0)
    wait_until(
        lambda: all(cached_version(p, secrets) == changed for p in both), 15, "cache replaced"
    )


@contextlib.contextmanager
def another_database(like: str, directory: Path) -> Iterator[str]:
    if like.startswith("sqlite"):
        yield f"sqlite:///{directory / 'other.db'}"
    else:
        with postgres_database() as url:
            yield url


def test_a_new_database_replaces_a_cache_with_a_higher_version(
    controlplane: Controlplane, bridged: Bridged, token: str, secrets: Secrets,
    tmp_path: Path, upstream_a: MockUpstream, upstream_b: MockUpstream,
) -> None:  # fmt: skip
    """A database restored or replaced starts its revisions lower than the cache's: the
    database's identity in the snapshot makes the subscriber take it anyway."""
    admin = controlplane.admin
    for n in range(4):  # push the old database's revision well above the new one's
        admin.create_provider(f"old-{n}", upstream_a.url + "/v1")
    old = admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY]).revision
    admin.wait_applied(old)
    assert chat_through_bridged(bridged, token) == "hello from A"
    controlplane.stop()

    with another_database(controlplane.database_url, tmp_path) as url:
        fresh = Controlplane(url, tmp_path, secrets, name="fresh", port=controlplane.port).start()
        try:
            created = fresh.admin.CreateToken(admin_pb2.CreateTokenRequest(name="new"))
            new = fresh.admin.create_provider("llm", upstream_b.url + "/v1", keys=[KEY]).revision
            assert new < old
            wait_until(lambda: readyz(bridged.url)["version"] == new, 30, "the new database")
            fresh.admin.wait_applied(new)
            assert chat_through_bridged(bridged, created.token) == "hello from B"
        finally:
            fresh.stop()


def test_a_restored_backup_is_taken_though_its_revision_is_lower(
    controlplane: Controlplane, bridged: Bridged, token: str, secrets: Secrets,
    tmp_path: Path, upstream_a: MockUpstream,
) -> None:  # fmt: skip
    """Restored from a backup, the database has its old identity and a revision below what
    bridged holds: the controlplane moves its revision past bridged's, so bridged takes
    the restored state instead of ignoring every change until the counter catches up."""
    created = controlplane.admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY])
    controlplane.admin.wait_applied(created.revision)
    controlplane.stop()
    with backup_of(controlplane.database_url, tmp_path) as backup:
        controlplane.start()
        admin = controlplane.admin  # a new client: the old one went with the process
        for n in range(3):
            admin.create_provider(f"later-{n}", upstream_a.url + "/v1", keys=[KEY])
        ahead = admin.revision()
        wait_until(lambda: readyz(bridged.url)["version"] == ahead, 30, "bridged ahead")
        controlplane.stop()

        restored = Controlplane(backup, tmp_path, secrets, name="restored", port=controlplane.port)
        restored.start()
        try:
            wait_until(lambda: readyz(bridged.url)["version"] > ahead, 30, "the restored state")
            restored.admin.wait_applied(restored.admin.revision())
            assert chat_through_bridged(bridged, token) == "hello from A"
            gone = httpx.post(
                bridged.provider_url("later-0") + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {token}"}, json={}, timeout=15,
            )  # fmt: skip
            assert gone.status_code == 404  # created after the backup: not in the restored state
            audit = restored.admin.ListAudit(admin_pb2.ListAuditRequest(limit=1)).entries
            assert audit[0].action == "revision.advance"
            assert "went back in time" in restored.log()
        finally:
            restored.stop()


def test_a_start_removes_the_temporary_files_of_interrupted_writes(
    controlplane: Controlplane, tmp_path: Path, secrets: Secrets
) -> None:
    """A data plane killed while saving its cache leaves `.bridged.snapshot.XXXX` behind."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    stale = [state / ".bridged.snapshot.k3j2x9", state / ".bridged.snapshot.q8w1z0"]
    fresh = state / ".bridged.snapshot.a1b2c3"  # another writer's, in progress
    others = [state / ".proxyd.snapshot.k3j2x9", state / "notes.bridged.snapshot.tmp"]
    old = time.time() - 3600
    for path in [*stale, fresh, *others]:
        path.write_bytes(b"half a snapshot")
        if path is not fresh:
            os.utime(path, (old, old))
    bridged = Bridged([controlplane.address], tmp_path, secrets).start()
    try:
        assert not any(path.exists() for path in stale)
        assert fresh.exists() and all(path.exists() for path in others)
        assert "removed 2 temporary files left by an interrupted write" in bridged.log()
    finally:
        bridged.stop()


def test_removing_temporaries_of_a_cache_whose_directory_is_not_there_yet(tmp_path: Path) -> None:
    cache = SnapshotFile(tmp_path / "new" / "bridged.snapshot", "abb_credential")
    assert cache.remove_stale_temporaries() == 0
