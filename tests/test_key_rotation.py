"""Rotating the encryption key ring (issue 18): a new key first in the ring, `aibridgectl
keys reencrypt` in audited batches (an interrupted run finishes on the next), `status`
counting the stored keys each entry protects, the old key removed, and every provider
still served, with traffic flowing throughout. A ring missing a key still needed refuses
to start, saying how many keys it cannot decrypt."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream
from tests.harness import Bridged, Controlplane, Secrets, ctl

NEW_KEY = Fernet.generate_key().decode()
PROVIDERS = 5  # two keys each


def with_ring(cp: Controlplane, ring: str) -> None:
    """Restarts the controlplane with AIBRIDGE_ENCRYPTION_KEYS set to `ring`."""
    cp.stop()
    cp.secrets = dataclasses.replace(cp.secrets, encryption_key=ring)
    cp.start()


def stored_keys_by_entry(cp: Controlplane) -> list[int]:
    status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
    assert status.undecryptable_keys == 0
    assert [e.position for e in status.key_ring] == list(range(1, len(status.key_ring) + 1))
    return [e.stored_keys for e in status.key_ring]


class Traffic:
    """Calls every provider in turn, one after another, until stopped."""

    def __init__(self, bridged: Bridged, token: str) -> None:
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(bridged, token))
        self._thread.start()

    def _run(self, bridged: Bridged, token: str) -> None:
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
            n = 0
            while not self._stop.is_set():
                url = f"{bridged.provider_url(f'p{n % PROVIDERS}')}/v1/chat/completions"
                reply = client.post(url, json={"model": "gpt", "messages": []})
                self.statuses.append(reply.status_code)
                n += 1

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(30)
        return self.statuses


def test_rotation_with_traffic_flowing(
    database_url: str, tmp_path: Path, secrets: Secrets, upstream_a: MockUpstream
) -> None:
    old_key = secrets.encryption_key
    cp = Controlplane(database_url, tmp_path, secrets).start()
    bridged = Bridged([cp.address], tmp_path, secrets).start()
    traffic = None
    try:
        for i in range(PROVIDERS):
            cp.admin.create_provider(
                f"p{i}", f"{upstream_a.url}/v1", keys=[f"sk-{i}-a", f"sk-{i}-b"]
            )
        token = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="agent"))
        cp.admin.wait_applied(token.revision)
        traffic = Traffic(bridged, token.token)

        with_ring(cp, f"{NEW_KEY},{old_key}")
        assert stored_keys_by_entry(cp) == [0, 2 * PROVIDERS]
        revision = cp.admin.revision()
        # A run cut short after its first batch...
        batch = admin_pb2.ReencryptKeysRequest(batch_size=3, request_id="rotate-1")
        first = cp.admin.ReencryptKeys(batch)
        assert (first.reencrypted, first.remaining) == (3, 2 * PROVIDERS - 3)
        # Sent again (its answer lost, say): the first answer, and no other key moves.
        assert cp.admin.ReencryptKeys(batch) == first
        assert stored_keys_by_entry(cp) == [3, 2 * PROVIDERS - 3]
        # ...and the next finishes it.
        finish = ("--request-id", "finish", "keys", "reencrypt", "--batch-size", "4")
        run = ctl(cp, *finish, check=True)
        assert run.stdout.splitlines() == [
            "re-encrypted 4 (3 left)",
            "re-encrypted 3 (0 left)",
            "every stored key is under the ring's first key (7 re-encrypted now)",
        ]
        # The same command again: each batch (finish, finish/2) replays its first answer.
        rerun = ctl(cp, *finish, check=True)
        assert rerun.stdout == run.stdout
        assert [line for line in rerun.stderr.splitlines() if line.startswith("note:")] == [
            f"note: request id {request_id} was applied already: these counts are its first "
            "answer's"
            for request_id in ("finish", "finish/2")
        ]
        assert stored_keys_by_entry(cp) == [2 * PROVIDERS, 0]
        again = ctl(cp, "keys", "reencrypt", check=True)
        assert "(0 re-encrypted now)" in again.stdout
        assert cp.admin.revision() == revision  # the keys did not change: nothing to apply
        audit = cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=10)).entries
        batches = [e for e in audit if e.action == "keys.reencrypt"]
        assert sorted(e.details for e in batches) == sorted(
            f'{{"keys": {n}, "to_entry": "{fingerprint(cp)}"}}' for n in (3, 4, 3)
        )
        shown = ctl(cp, "status", check=True).stdout
        assert f"1         {fingerprint(cp)}  {2 * PROVIDERS}" in shown, shown

        with_ring(cp, NEW_KEY)  # the old key is gone
        assert stored_keys_by_entry(cp) == [2 * PROVIDERS]
        # A change makes a new snapshot, every key decrypted with the new key alone.
        changed = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="after"))
        cp.admin.wait_applied(changed.revision)
        statuses = traffic.stop()
        traffic = None
        assert statuses and set(statuses) == {200}
        for i in range(PROVIDERS):  # each with its own first key
            reply = httpx.post(
                f"{bridged.provider_url(f'p{i}')}/v1/chat/completions",
                headers={"Authorization": f"Bearer {changed.token}"},
                json={"model": "gpt", "messages": []}, timeout=30,
            )  # fmt: skip
            assert reply.status_code == 200, reply.text
            assert upstream_a.seen[-1].key == f"sk-{i}-a"
        log = cp.log()
        assert NEW_KEY not in log and old_key not in log
    finally:
        if traffic is not None:
            traffic.stop()
        bridged.stop()
        cp.stop()


def fingerprint(cp: Controlplane) -> str:
    return cp.admin.GetStatus(admin_pb2.GetStatusRequest()).key_ring[0].fingerprint


def test_a_ring_missing_a_key_still_needed_refuses_to_start(
    database_url: str, tmp_path: Path, secrets: Secrets, upstream_a: MockUpstream
) -> None:
    cp = Controlplane(database_url, tmp_path, secrets).start()
    try:
        cp.admin.create_provider("p", f"{upstream_a.url}/v1", keys=["sk-1", "sk-2", "sk-3"])
        cp.stop()
        cp.secrets = dataclasses.replace(secrets, encryption_key=NEW_KEY)
        cp.start(wait=False)
        assert cp.proc is not None
        assert cp.proc.wait(30) == 1
        assert (
            "cannot start: 3 stored provider keys cannot be decrypted with any key of the "
            "encryption key ring (AIBRIDGE_ENCRYPTION_KEYS)" in cp.log()
        )
        assert NEW_KEY not in cp.log() and secrets.encryption_key not in cp.log()
        # With the key put back (after the new one), it starts and can rotate.
        with_ring(cp, f"{NEW_KEY},{secrets.encryption_key}")
        assert stored_keys_by_entry(cp) == [0, 3]
    finally:
        cp.stop()
