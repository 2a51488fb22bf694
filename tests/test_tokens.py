"""Gateway tokens through the gRPC admin API: shown once, stored and published only as a
hash, revocable by name or id, and every refused request changes nothing. Runs on SQLite
and PostgreSQL. Then the one verifier both data planes check a presented token with
(common/tokens.py).

The module's tests share a controlplane (per database): each makes tokens of its own names
and reads back only those."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa

from aibridge.v1 import admin_pb2, snapshot_pb2
from bridged.routes import RouteBuilder
from common.tokens import Caller, Callers, token_digest
from proxyd.routes import build_host_router
from tests.harness import Controlplane, RecordingSubscriber, refused, unique


def sha256(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def verifiers(recording: RecordingSubscriber, *names: str) -> dict[str, tuple[str, str, int]]:
    """The current snapshot's verifiers of the tokens named: sha256 → (id, name, expires_at)."""
    return {
        t.sha256: (t.id, t.name, t.expires_at) for t in recording.snapshot.tokens if t.name in names
    }


def listed(cp: Controlplane, *names: str, include_revoked: bool = False) -> list[admin_pb2.Token]:
    """The listing's tokens of the names given, in its order."""
    request = admin_pb2.ListTokensRequest(include_revoked=include_revoked)
    return [t for t in cp.admin.ListTokens(request).tokens if t.name in names]


def test_plaintext_is_returned_once_and_only_its_hash_is_kept(
    shared_controlplane: Controlplane,
) -> None:
    controlplane, ci = shared_controlplane, unique("ci")
    admin = controlplane.admin
    start = admin.revision()

    created = admin.CreateToken(admin_pb2.CreateTokenRequest(name=ci))
    plaintext, info = created.token, created.info
    assert created.revision == start + 1
    assert plaintext.startswith("abt_") and len(plaintext) >= 40
    assert info.id.startswith("tok_") and info.name == ci
    shown = info.hint.rstrip("…")
    assert shown.startswith("abt_") and plaintext.startswith(shown)
    assert len(shown) <= 12, "the hint must not give away the token"
    assert info.HasField("created_at") and not info.HasField("expires_at")
    assert not info.HasField("revoked_at")

    listing = admin.ListTokens(admin_pb2.ListTokensRequest(include_revoked=True))
    mine = [(t.id, t.name, t.hint) for t in listing.tokens if t.name == ci]
    assert mine == [(info.id, ci, info.hint)]
    assert listing.revision == created.revision
    assert plaintext.encode() not in listing.SerializeToString()
    audit = admin.ListAudit(admin_pb2.ListAuditRequest())
    assert audit.entries[0].action == "token.create"
    assert plaintext.encode() not in audit.SerializeToString()

    engine = sa.create_engine(controlplane.database_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT id, sha256 FROM gateway_tokens WHERE name = :name"), {"name": ci}
            ).fetchall()
            dump = repr(
                [conn.execute(sa.text(f"SELECT * FROM {t}")).fetchall()
                 for t in ("gateway_tokens", "audit_log")]
            )  # fmt: skip
    finally:
        engine.dispose()
    assert [tuple(row) for row in stored] == [(info.id, sha256(plaintext))]
    assert plaintext not in dump
    assert plaintext[len("abt_") :] not in dump

    assert plaintext[len("abt_") :] not in controlplane.log()


def test_verifier_is_published_on_create_and_withdrawn_on_revoke(
    shared_controlplane: Controlplane,
) -> None:
    controlplane, alice, bob = shared_controlplane, unique("alice"), unique("bob")
    admin = controlplane.admin

    async def scenario() -> None:
        recording = RecordingSubscriber(
            [controlplane.address], "bridged", controlplane.secrets.bridged,
            subscriber_id="bridged-tokens",
        ).start()  # fmt: skip
        try:
            first = await asyncio.to_thread(
                admin.CreateToken, admin_pb2.CreateTokenRequest(name=alice)
            )
            second = await asyncio.to_thread(
                admin.CreateToken, admin_pb2.CreateTokenRequest(name=bob)
            )
            await recording.wait_version(second.revision)
            assert verifiers(recording, alice, bob) == {
                sha256(first.token): (first.info.id, alice, 0),
                sha256(second.token): (second.info.id, bob, 0),
            }
            raw = recording.snapshot.SerializeToString()
            assert first.token.encode() not in raw and second.token.encode() not in raw

            by_name = await asyncio.to_thread(
                admin.RevokeToken, admin_pb2.RevokeTokenRequest(ref=alice)
            )
            assert by_name.revision == second.revision + 1
            assert by_name.info.id == first.info.id and by_name.info.HasField("revoked_at")
            await recording.wait_version(by_name.revision)
            assert list(verifiers(recording, alice, bob)) == [sha256(second.token)]

            by_id = await asyncio.to_thread(
                admin.RevokeToken, admin_pb2.RevokeTokenRequest(ref=second.info.id)
            )
            assert by_id.info.name == bob
            await recording.wait_version(by_id.revision)
            assert verifiers(recording, alice, bob) == {}
        finally:
            await recording.stop()

    asyncio.run(scenario())


def test_revoked_tokens_are_listed_only_on_request(shared_controlplane: Controlplane) -> None:
    controlplane, laptop, server = shared_controlplane, unique("laptop"), unique("server")
    admin = controlplane.admin
    old = admin.CreateToken(admin_pb2.CreateTokenRequest(name=laptop))
    kept = admin.CreateToken(admin_pb2.CreateTokenRequest(name=server))
    admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref=laptop))

    assert [t.id for t in listed(controlplane, laptop, server)] == [kept.info.id]
    everything = {t.id: t for t in listed(controlplane, laptop, server, include_revoked=True)}
    assert set(everything) == {old.info.id, kept.info.id}
    assert everything[old.info.id].HasField("revoked_at")
    assert not everything[kept.info.id].HasField("revoked_at")

    # The name of a revoked token is free again; revoking by name finds the live one.
    again = admin.CreateToken(admin_pb2.CreateTokenRequest(name=laptop))
    assert again.info.id != old.info.id and again.token != old.token
    assert sorted(t.name for t in listed(controlplane, laptop, server)) == [laptop, server]
    # A revoked token cannot be revoked again, by id.
    refused(
        controlplane, grpc.StatusCode.NOT_FOUND, admin.RevokeToken,
        admin_pb2.RevokeTokenRequest(ref=old.info.id),
    )  # fmt: skip
    revoked = admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref=laptop))
    assert revoked.info.id == again.info.id


def test_expiring_token_carries_its_expiry_to_admin_and_verifier(
    shared_controlplane: Controlplane,
) -> None:
    controlplane, temp = shared_controlplane, unique("temp")
    admin = controlplane.admin

    async def scenario() -> admin_pb2.CreateTokenResponse:
        recording = RecordingSubscriber(
            [controlplane.address], "bridged", controlplane.secrets.bridged,
            subscriber_id="bridged-expiry",
        ).start()  # fmt: skip
        try:
            expected = datetime.now(UTC) + timedelta(seconds=3600)
            created = await asyncio.to_thread(
                admin.CreateToken,
                admin_pb2.CreateTokenRequest(name=temp, expires_in_seconds=3600),
            )
            expires_at = created.info.expires_at.ToDatetime(tzinfo=UTC)
            assert abs((expires_at - expected).total_seconds()) < 5
            await recording.wait_version(created.revision)
            (verifier,) = [t for t in recording.snapshot.tokens if t.name == temp]
            assert verifier.sha256 == sha256(created.token)
            assert abs(verifier.expires_at - (time.time() + 3600)) < 5
            assert abs(verifier.expires_at - expires_at.timestamp()) < 1
            # What the data planes make of it: the caller, until it expires.
            callers = Callers(recording.snapshot.tokens)
            assert callers.verify(created.token) == Caller(
                created.info.id, temp, verifier.expires_at
            )
            assert callers.verify(created.token, now=verifier.expires_at) is None
            return created
        finally:
            await recording.stop()

    created = asyncio.run(scenario())
    (token,) = listed(controlplane, temp)
    assert token.expires_at == created.info.expires_at


def test_duplicate_live_name_is_already_exists(shared_controlplane: Controlplane) -> None:
    controlplane, dup = shared_controlplane, unique("dup")
    admin = controlplane.admin
    created = admin.CreateToken(admin_pb2.CreateTokenRequest(name=dup))
    details = refused(
        controlplane, grpc.StatusCode.ALREADY_EXISTS, admin.CreateToken,
        admin_pb2.CreateTokenRequest(name=dup),
    )  # fmt: skip
    assert created.token not in details
    refused(
        controlplane, grpc.StatusCode.ABORTED, admin.RevokeToken,
        admin_pb2.RevokeTokenRequest(ref=dup, expected_revision=created.revision - 1),
    )  # fmt: skip


@pytest.mark.parametrize("ref", ["nobody", "tok_0000000000000000", ""])
def test_revoke_unknown(shared_controlplane: Controlplane, ref: str) -> None:
    code = grpc.StatusCode.INVALID_ARGUMENT if not ref else grpc.StatusCode.NOT_FOUND
    refused(
        shared_controlplane, code, shared_controlplane.admin.RevokeToken,
        admin_pb2.RevokeTokenRequest(ref=ref), "ref" if not ref else "",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"expires_in_seconds": -1}, "expires_in_seconds"),
        ({"expires_in_seconds": 11 * 365 * 86400}, "expires_in_seconds"),
        ({"name": ""}, "name"),
        ({"name": "Upper"}, "name"),
        ({"name": "with space"}, "name"),
        ({"name": "under_score"}, "name"),
        ({"name": "x" * 64}, "name"),
    ],
)
def test_create_validation(
    shared_controlplane: Controlplane, request_fields: dict, field: str
) -> None:
    fields = {"name": "ok"} | request_fields
    refused(
        shared_controlplane, grpc.StatusCode.INVALID_ARGUMENT,
        shared_controlplane.admin.CreateToken, admin_pb2.CreateTokenRequest(**fields), field,
    )  # fmt: skip


def test_a_digest_is_the_sha256_the_snapshot_carries() -> None:
    assert token_digest("abt_ü-token") == hashlib.sha256("abt_ü-token".encode()).hexdigest()


def test_the_verifier_knows_each_token_until_it_expires() -> None:
    callers = Callers([
        snapshot_pb2.TokenVerifier(id="tok_1", name="forever", sha256=sha256("abt_one")),
        snapshot_pb2.TokenVerifier(
            id="tok_2", name="brief", sha256=sha256("abt_two"), expires_at=1_000
        ),
    ])  # fmt: skip
    assert callers.verify("abt_one", now=4e9) == Caller("tok_1", "forever", 0)
    assert callers.verify("abt_two", now=999.5) == Caller("tok_2", "brief", 1_000)
    assert callers.verify("abt_two", now=1_000) is None  # expired at its second
    assert callers.verify("abt_two") is None  # the clock says so too, long since
    assert callers.verify("abt_three", now=0) is None
    assert callers.verify("", now=0) is None
    # A header value that was not UTF-8 reaches the verifier as lone surrogates.
    assert callers.verify("abt_\udcff", now=0) is None


def test_both_data_planes_let_in_the_same_callers() -> None:
    snapshot = snapshot_pb2.ProviderSnapshot(
        version=7,
        tokens=[
            snapshot_pb2.TokenVerifier(id="tok_1", name="a", sha256=sha256("abt_a")),
            snapshot_pb2.TokenVerifier(id="tok_2", name="b", sha256=sha256("abt_b"), expires_at=5),
        ],
    )
    table, _ = RouteBuilder().build(snapshot)
    router, _ = build_host_router(snapshot)
    for presented, now in [("abt_a", 0), ("abt_b", 4), ("abt_b", 5), ("abt_c", 0)]:
        assert table.callers.verify(presented, now) == router.callers.verify(presented, now)
    assert table.callers.verify("abt_b", 4) == Caller("tok_2", "b", 5)
