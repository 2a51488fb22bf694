"""Provider CRUD through the gRPC admin API, every validation error, and nothing changed
by a refused mutation. Runs on SQLite and PostgreSQL. Tests on the module's shared
controlplane make providers of their own names."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from aibridge.v1 import admin_pb2
from tests.harness import Controlplane, refused, unique

KEY_A = "sk-test-AAAAAAAAAAAAAAAAAAAA-1111"
KEY_B = "sk-test-BBBBBBBBBBBBBBBBBBBB-2222"


def test_create_get_list_update_delete(controlplane: Controlplane) -> None:
    """(A controlplane of its own: it reads the whole listing and audit log.)"""
    admin = controlplane.admin
    start = admin.revision()

    created = admin.create_provider(
        "openai", "https://api.openai.com/v1/", display_name="OpenAI", keys=[KEY_A]
    )
    assert created.revision == start + 1
    p = created.provider
    assert p.id.startswith("prv_") and p.name == "openai" and p.enabled
    assert p.base_url == "https://api.openai.com/v1"  # trailing slash dropped
    assert [k.hint for k in p.keys] == ["…1111"]

    by_name = admin.GetProvider(admin_pb2.GetProviderRequest(ref="openai"))
    by_id = admin.GetProvider(admin_pb2.GetProviderRequest(ref=p.id))
    assert by_name == by_id == p

    updated = admin.UpdateProvider(
        admin_pb2.UpdateProviderRequest(
            ref="openai", name="openai-eu", base_url="https://eu.example.com/v1", enabled=False,
            display_name="OpenAI EU", add_keys=[KEY_B], remove_key_ids=[p.keys[0].id],
        )
    )  # fmt: skip
    assert updated.revision == start + 2
    u = updated.provider
    assert (u.id, u.name, u.base_url, u.enabled, u.display_name) == (
        p.id, "openai-eu", "https://eu.example.com/v1", False, "OpenAI EU",
    )  # fmt: skip
    assert [k.hint for k in u.keys] == ["…2222"]

    admin.create_provider("anthropic", "https://api.anthropic.com", type="anthropic", disabled=True)
    listing = admin.ListProviders(admin_pb2.ListProvidersRequest())
    assert listing.revision == start + 3
    assert [(x.name, x.enabled) for x in listing.providers] == [
        ("anthropic", False), ("openai-eu", False),
    ]  # fmt: skip

    deleted = admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref=p.id))
    assert (deleted.revision, deleted.name) == (start + 4, "openai-eu")
    assert [x.name for x in admin.ListProviders(admin_pb2.ListProvidersRequest()).providers] == [
        "anthropic"
    ]
    # The name is free again once its provider is deleted.
    again = admin.create_provider("openai-eu")
    assert again.provider.id != p.id

    actions = [e.action for e in admin.ListAudit(admin_pb2.ListAuditRequest()).entries]
    assert actions == [
        "provider.create", "provider.delete", "provider.create", "provider.update",
        "provider.create",
    ]  # fmt: skip


def test_keys_keep_their_order_and_are_never_returned(shared_controlplane: Controlplane) -> None:
    controlplane = shared_controlplane
    admin = controlplane.admin
    p1 = unique("p1")
    created = admin.create_provider(p1, keys=[KEY_A, KEY_B])
    third = "sk-test-CCCCCCCCCCCCCCCCCCCC-3333"
    updated = admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref=p1, add_keys=[third]))
    assert [k.hint for k in updated.provider.keys] == ["…1111", "…2222", "…3333"]
    for message in (created, updated, admin.ListProviders(admin_pb2.ListProvidersRequest())):
        raw = message.SerializeToString()
        for key in (KEY_A, KEY_B, third):
            assert key.encode() not in raw
    audit = admin.ListAudit(admin_pb2.ListAuditRequest()).SerializeToString()
    for key in (KEY_A, KEY_B, third):
        assert key.encode() not in audit
    assert KEY_A not in controlplane.log() and third not in controlplane.log()


def test_raw_database_rows_hold_no_plaintext_key(shared_controlplane: Controlplane) -> None:
    controlplane = shared_controlplane
    created = controlplane.admin.create_provider(unique("p1"), keys=[KEY_A])
    engine = sa.create_engine(controlplane.database_url)
    try:
        with engine.connect() as conn:
            dump = repr(
                [conn.execute(sa.text(f"SELECT * FROM {t}")).fetchall()
                 for t in ("providers", "provider_keys", "audit_log")]
            )  # fmt: skip
            ciphertext = conn.execute(
                sa.text("SELECT ciphertext FROM provider_keys WHERE provider_id = :id"),
                {"id": created.provider.id},
            ).scalar_one()
    finally:
        engine.dispose()
    assert KEY_A not in dump
    assert KEY_A.encode() not in bytes(ciphertext)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "Upper"}, "name"),
        ({"name": "with_underscore"}, "name"),
        ({"name": "-leading"}, "name"),
        ({"name": "trailing-"}, "name"),
        ({"name": "double--hyphen"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"type": "nope"}, "type"),
        ({"type": ""}, "type"),
        ({"base_url": ""}, "base_url"),
        ({"base_url": "api.openai.com/v1"}, "base_url"),
        ({"base_url": "ftp://api.openai.com"}, "base_url"),
        ({"base_url": "https://"}, "base_url"),
        ({"base_url": "https://host:99999/v1"}, "base_url"),
        ({"base_url": "https://user:pw@host/v1"}, "base_url"),
        ({"base_url": " https://host/v1"}, "base_url"),
        # Anthropic's base_url is the host root: …/v1 would send /v1/v1/messages upstream.
        ({"type": "anthropic", "base_url": "https://api.anthropic.com/v1"}, "base_url"),
        ({"type": "anthropic", "base_url": "https://gw.example/anthropic/v1/"}, "base_url"),
        ({"keys": [""]}, "keys"),
        ({"keys": [" sk-padded-key-1234567"]}, "keys"),
        ({"keys": ["sk-padded-key-1234567\n"]}, "keys"),
        ({"display_name": "x" * 201}, "display_name"),
    ],
)
def test_create_validation(
    shared_controlplane: Controlplane, request_fields: dict[str, Any], field: str
) -> None:
    controlplane = shared_controlplane
    fields: dict[str, Any] = {
        "name": "ok",
        "type": "openai",
        "base_url": "https://api.example.com/v1",
    }
    fields |= request_fields
    details = refused(
        controlplane, grpc.StatusCode.INVALID_ARGUMENT, controlplane.admin.CreateProvider,
        admin_pb2.CreateProviderRequest(**fields), field,
    )  # fmt: skip
    for key in fields.get("keys", []):
        if key.strip():
            assert key.strip() not in details


def test_update_validation_and_missing(shared_controlplane: Controlplane) -> None:
    controlplane = shared_controlplane
    admin = controlplane.admin
    one, two, claude = unique("one"), unique("two"), unique("claude")
    admin.create_provider(one)
    admin.create_provider(two)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    update = admin.UpdateProvider
    refused(controlplane, invalid, update, admin_pb2.UpdateProviderRequest(ref=one), "update")
    refused(
        controlplane, invalid, update,
        admin_pb2.UpdateProviderRequest(ref=one, name="Bad Name"), "name",
    )  # fmt: skip
    refused(
        controlplane, invalid, update,
        admin_pb2.UpdateProviderRequest(ref=one, base_url="nope"), "base_url",
    )  # fmt: skip
    refused(
        controlplane, invalid, update,
        admin_pb2.UpdateProviderRequest(ref=one, add_keys=["  "]), "add_keys",
    )  # fmt: skip
    admin.create_provider(claude, "https://api.anthropic.com", type="anthropic")
    details = refused(
        controlplane, invalid, update,
        admin_pb2.UpdateProviderRequest(ref=claude, base_url="https://api.anthropic.com/v1"),
        "base_url",
    )  # fmt: skip
    assert "host root without /v1 (like https://api.anthropic.com)" in details
    # The same path is right for an OpenAI-type provider, whose base_url carries the version.
    admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref=one, base_url="https://x.example/v1"))
    refused(
        controlplane, grpc.StatusCode.ALREADY_EXISTS, update,
        admin_pb2.UpdateProviderRequest(ref=one, name=two),
    )  # fmt: skip
    refused(
        controlplane, grpc.StatusCode.NOT_FOUND, update,
        admin_pb2.UpdateProviderRequest(ref=unique("missing"), enabled=False),
    )  # fmt: skip
    refused(
        controlplane, grpc.StatusCode.NOT_FOUND, update,
        admin_pb2.UpdateProviderRequest(ref=one, remove_key_ids=["key_nope"]),
    )  # fmt: skip
    # A failed step in a multi-part update undoes the parts before it.
    refused(
        controlplane, grpc.StatusCode.NOT_FOUND, update,
        admin_pb2.UpdateProviderRequest(
            ref=one, name=unique("renamed"), remove_key_ids=["key_nope"]
        ),
    )  # fmt: skip
    refused(
        controlplane, grpc.StatusCode.NOT_FOUND, admin.DeleteProvider,
        admin_pb2.DeleteProviderRequest(ref="prv_0000"),
    )  # fmt: skip
    with pytest.raises(grpc.RpcError) as caught:
        admin.GetProvider(admin_pb2.GetProviderRequest(ref="missing"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_duplicate_name_is_already_exists(shared_controlplane: Controlplane) -> None:
    controlplane, dup = shared_controlplane, unique("dup")
    controlplane.admin.create_provider(dup)
    refused(
        controlplane, grpc.StatusCode.ALREADY_EXISTS, controlplane.admin.CreateProvider,
        admin_pb2.CreateProviderRequest(name=dup, type="openai", base_url="https://x.example"),
    )  # fmt: skip


def test_expected_revision(shared_controlplane: Controlplane) -> None:
    controlplane, p = shared_controlplane, unique("p")
    admin = controlplane.admin
    revision = admin.revision()
    created = admin.create_provider(p, expected_revision=revision)
    assert created.revision == revision + 1
    stale = revision  # the revision has moved on since
    aborted = grpc.StatusCode.ABORTED
    refused(
        controlplane, aborted, admin.CreateProvider,
        admin_pb2.CreateProviderRequest(
            name=unique("q"), type="openai", base_url="https://x.example",
            expected_revision=stale,
        ),
    )  # fmt: skip
    refused(
        controlplane, aborted, admin.UpdateProvider,
        admin_pb2.UpdateProviderRequest(ref=p, enabled=False, expected_revision=stale),
    )  # fmt: skip
    refused(
        controlplane, aborted, admin.DeleteProvider,
        admin_pb2.DeleteProviderRequest(ref=p, expected_revision=stale),
    )  # fmt: skip
    refused(
        controlplane, aborted, admin.CreateToken,
        admin_pb2.CreateTokenRequest(name=unique("t"), expected_revision=stale),
    )  # fmt: skip
    ok = admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref=p, expected_revision=stale + 1))
    assert ok.revision == stale + 2


def test_audit_names_who_and_masks_keys(shared_controlplane: Controlplane) -> None:
    admin = shared_controlplane.admin
    created = admin.create_provider(unique("p"), keys=[KEY_A])
    entry = admin.ListAudit(admin_pb2.ListAuditRequest(limit=1)).entries[0]
    assert entry.action == "provider.create"
    assert entry.revision == created.revision
    assert entry.actor.startswith("tester (")
    assert "…1111" in entry.details and KEY_A not in entry.details
