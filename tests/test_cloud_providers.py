"""bedrock and vertex providers in the controlplane and aibridgectl: a region read from
the base_url's host or given, vertex's project taken from its service account, model
maps made and changed, credential JSON keys checked, stored compact and never shown
again (only their hints), and what a subscriber's snapshot carries of it all. Runs on
SQLite and PostgreSQL; tests on the module's shared controlplane use names of their own."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from aibridge.v1 import admin_pb2
from common.clouds import cloud_key_hint, stored_key
from controlplane.store import Database
from tests.cloud_keys import aws_credential, service_account
from tests.harness import Controlplane, RecordingSubscriber, ctl, refused, unique

BEDROCK_URL = "https://bedrock-runtime.us-west-2.amazonaws.com"
VERTEX_URL = "https://europe-west4-aiplatform.googleapis.com"
LOCAL_URL = "http://127.0.0.1:9"  # a local stand-in for the cloud: its host names no region
MIGRATIONS = Path(__file__).parent.parent / "controlplane" / "store" / "migrations"


def secret_parts(credential: dict[str, str]) -> list[str]:
    """What must never be shown: the secret key and session token, or a line from the
    middle of the private key's PEM."""
    if "private_key" in credential:
        return [credential["private_key"].splitlines()[5]]
    return [credential[k] for k in ("secret_access_key", "session_token") if k in credential]


def key_file(tmp_path: Path, credential: dict[str, str]) -> str:
    """The credential as a file, pretty-printed over many lines as the clouds' tools
    write it."""
    path = tmp_path / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(credential, indent=2) + "\n")
    return str(path)


def field_of(error: grpc.RpcError) -> str:
    trailing: Any = error.trailing_metadata()
    return dict((str(k), str(v)) for k, v in trailing or ())["aibridge-field"]


def refused_field(cp: Controlplane, call: Any, request: object, field: str) -> str:
    """Calls a mutation that must be INVALID_ARGUMENT about `field` (in its message and
    its trailing metadata) and change nothing; its message."""
    details = refused(cp, grpc.StatusCode.INVALID_ARGUMENT, call, request, field)
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    assert field_of(caught.value) == field
    return details


def shown_as(output: str, label: str) -> str:
    """The value `providers get` prints on its `label:` line."""
    (line,) = [x for x in output.splitlines() if x.startswith(label + ":")]
    return line.removeprefix(label + ":").strip()


def get_json(cp: Controlplane, ref: str) -> dict[str, Any]:
    provider: dict[str, Any] = json.loads(
        ctl(cp, "--json", "providers", "get", ref, check=True).stdout
    )
    return provider


def assert_nothing_shows(cp: Controlplane, hidden: list[str], *outputs: str) -> None:
    """None of `hidden` in `outputs`, the listing, the audit log or the controlplane's log."""
    listing = cp.admin.ListProviders(admin_pb2.ListProvidersRequest())
    audit = cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=10000))
    shown = [*outputs, str(listing), str(audit), cp.log()]
    for part in hidden:
        assert part and all(part not in text for text in shown), "a secret is shown"


# --- region ---------------------------------------------------------------------------------


def test_bedrock_reads_its_region_from_the_host_or_is_given_one(
    shared_controlplane: Controlplane, tmp_path: Path
) -> None:
    cp = shared_controlplane
    credential = aws_credential(session_token=secrets.token_urlsafe(48))
    on_aws, local = unique("bedrock"), unique("bedrock-local")

    created = ctl(
        cp, "providers", "create", on_aws, "--type", "bedrock", "--base-url", BEDROCK_URL,
        "--key-file", key_file(tmp_path, credential), check=True,
    )  # fmt: skip
    assert f"created provider {on_aws} (" in created.stdout and "with 1 key(s)" in created.stdout
    shown = ctl(cp, "providers", "get", on_aws, check=True).stdout
    assert shown_as(shown, "region") == "us-west-2 (from base_url)", shown
    assert "project" not in shown  # vertex's alone
    provider = get_json(cp, on_aws)
    assert (provider["region"], provider["effective_region"]) == ("", "us-west-2")
    hint = cloud_key_hint("bedrock", stored_key("bedrock", json.dumps(credential)))
    assert hint == f"{credential['access_key_id'][:4]}…{credential['access_key_id'][-4:]}"
    assert [k["hint"] for k in provider["keys"]] == [hint]
    assert hint in shown

    ctl(
        cp, "providers", "create", local, "--type", "bedrock", "--base-url", LOCAL_URL,
        "--region", "eu-central-1", "--key-file", key_file(tmp_path, aws_credential()),
        check=True,
    )  # fmt: skip
    shown = ctl(cp, "providers", "get", local, check=True).stdout
    assert shown_as(shown, "region") == "eu-central-1", shown
    provider = get_json(cp, local)
    assert (provider["region"], provider["effective_region"]) == ("eu-central-1", "eu-central-1")

    # A region the host contradicts is refused: signed for one region and sent to
    # another's endpoint, every call would fail. The host's own may be given; "" reads
    # the host's again.
    refused = ctl(cp, "providers", "update", on_aws, "--region", "us-east-1")
    assert refused.returncode == 1
    assert "region: is us-east-1, but the base_url's host is us-west-2's" in refused.stderr
    ctl(cp, "providers", "update", on_aws, "--region", "us-west-2", check=True)
    assert get_json(cp, on_aws)["region"] == "us-west-2"
    ctl(cp, "providers", "update", on_aws, "--region", "", check=True)
    assert (get_json(cp, on_aws)["region"], get_json(cp, on_aws)["effective_region"]) == (
        "", "us-west-2",
    )  # fmt: skip
    assert_nothing_shows(cp, secret_parts(credential), created.stdout, shown)


def test_a_region_is_required_when_the_host_names_none(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    admin = cp.admin
    for provider_type in ("bedrock", "vertex"):
        details = refused_field(
            cp, admin.CreateProvider,
            admin_pb2.CreateProviderRequest(
                name=unique(provider_type), type=provider_type, base_url=LOCAL_URL,
                project="gateway-proj-1" if provider_type == "vertex" else "",
            ),
            "region",
        )  # fmt: skip
        assert details == "region: is required: the base_url's host names no region"

    on_aws, local = unique("on-aws"), unique("local")
    admin.create_provider(on_aws, BEDROCK_URL, type="bedrock")
    admin.create_provider(local, LOCAL_URL, type="bedrock", region="ap-south-1")
    update = admin.UpdateProvider
    # Moving to a host that names no region, with none given; forgetting the given one.
    refused_field(cp, update, admin_pb2.UpdateProviderRequest(ref=on_aws, base_url=LOCAL_URL),
                  "region")  # fmt: skip
    refused_field(cp, update, admin_pb2.UpdateProviderRequest(ref=local, region=""), "region")
    # Both at once is fine.
    moved = update(admin_pb2.UpdateProviderRequest(ref=on_aws, base_url=LOCAL_URL, region="x-1"))
    assert moved.provider.effective_region == "x-1"

    for bad in ("US-EAST-1", "us_east_1", "-us", "a" * 65):
        refused_field(
            cp, admin.CreateProvider,
            admin_pb2.CreateProviderRequest(
                name=unique("b"), type="bedrock", base_url=BEDROCK_URL, region=bad
            ),
            "region",
        )  # fmt: skip


def test_cloud_settings_are_refused_for_other_types(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    admin = cp.admin
    mapping = [admin_pb2.ModelMapping(model="a", upstream_model="b")]
    for fields, field, problem in (
        ({"region": "us-east-1"}, "region", "only for bedrock and vertex providers"),
        ({"project": "gateway-proj-1"}, "project", "only for vertex providers"),
        ({"model_map": mapping}, "model_map", "only for bedrock and vertex providers"),
    ):
        details = refused_field(
            cp, admin.CreateProvider,
            admin_pb2.CreateProviderRequest(
                name=unique("o"), type="openai", base_url="https://api.openai.com/v1", **fields
            ),
            field,
        )  # fmt: skip
        assert details == f"{field}: {problem}"
    bedrock = unique("bedrock")
    admin.create_provider(bedrock, BEDROCK_URL, type="bedrock")
    details = refused_field(
        cp, admin.UpdateProvider,
        admin_pb2.UpdateProviderRequest(ref=bedrock, project="gateway-proj-1"), "project",
    )  # fmt: skip
    assert details == "project: only for vertex providers"
    openai = unique("openai")
    admin.create_provider(openai)
    refused_field(cp, admin.UpdateProvider,
                  admin_pb2.UpdateProviderRequest(ref=openai, region=""), "region")  # fmt: skip
    refused_field(cp, admin.UpdateProvider,
                  admin_pb2.UpdateProviderRequest(ref=openai, model_map=mapping),
                  "model_map")  # fmt: skip
    # aibridgectl passes the API's refusal on.
    result = ctl(cp, "providers", "update", openai, "--model-map", "a=b")
    assert result.returncode == 1
    assert "model_map: only for bedrock and vertex providers" in result.stderr


# --- credentials ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider_type", "credential", "message"),
    [
        ("bedrock", {"access_key_id": "AKIAABCDEFGHIJKLMNOP", "session_token": "tok-SECRET-1"},
         'a key is missing "secret_access_key"'),
        ("bedrock", {"secret_access_key": "wJalr-SECRET-EXAMPLEKEY-0123456789abcdefgh"},
         'a key is missing "access_key_id"'),
        ("bedrock", "AKIAABCDEFGHIJKLMNOP:wJalr-SECRET-EXAMPLEKEY",
         "a key must be an AWS credential as a JSON object"),
        ("vertex", {"type": "service_account", "client_email": "a@b.iam.gserviceaccount.com",
                    "token_uri": "https://oauth2.googleapis.com/token",
                    "private_key": "-----BEGIN PRIVATE KEY-----\nSECRET-not-a-key\n"},
         'a key\'s "private_key" is not a PEM RSA private key'),
        ("vertex", {"type": "authorized_user", "refresh_token": "1//SECRET-refresh"},
         'a key must be a service-account JSON ("type": "service_account")'),
    ],
)  # fmt: skip
def test_a_bad_credential_is_refused_without_repeating_it(
    shared_controlplane: Controlplane,
    tmp_path: Path,
    provider_type: str,
    credential: dict[str, str] | str,
    message: str,
) -> None:
    cp = shared_controlplane
    text = credential if isinstance(credential, str) else json.dumps(credential, indent=2)
    hidden = [v for v in (credential.values() if isinstance(credential, dict) else [credential])
              if "SECRET" in v]  # fmt: skip
    assert hidden
    name = unique(provider_type)
    base = admin_pb2.CreateProviderRequest(name=name, type=provider_type, base_url=BEDROCK_URL)
    if provider_type == "vertex":
        base.base_url, base.project = VERTEX_URL, "gateway-proj-1"
    with_key = admin_pb2.CreateProviderRequest()
    with_key.CopyFrom(base)
    with_key.keys.append(text)
    details = refused_field(cp, cp.admin.CreateProvider, with_key, "keys")
    assert details == f"keys: {message}"

    cp.admin.CreateProvider(base)
    added = refused_field(
        cp, cp.admin.UpdateProvider,
        admin_pb2.UpdateProviderRequest(ref=name, add_keys=[text]), "add_keys",
    )  # fmt: skip
    assert added == f"add_keys: {message}"

    path = tmp_path / "bad.json"
    path.write_text(text)
    result = ctl(cp, "providers", "update", name, "--add-key-file", str(path))
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert_nothing_shows(cp, hidden, details, added, result.stdout, result.stderr)


def test_the_api_key_rule_is_not_for_cloud_keys(shared_controlplane: Controlplane) -> None:
    """A credential JSON has spaces and newlines; another type's key still may not."""
    cp = shared_controlplane
    pretty = json.dumps(aws_credential(), indent=2)
    made = cp.admin.create_provider(unique("b"), BEDROCK_URL, type="bedrock", keys=[pretty])
    assert len(made.provider.keys) == 1
    refused_field(
        cp, cp.admin.CreateProvider,
        admin_pb2.CreateProviderRequest(
            name=unique("o"), type="openai", base_url="https://api.openai.com/v1", keys=[pretty]
        ),
        "keys",
    )  # fmt: skip


# --- vertex's project -----------------------------------------------------------------------


def test_vertex_takes_its_project_from_the_service_account(
    shared_controlplane: Controlplane, tmp_path: Path
) -> None:
    cp = shared_controlplane
    account = service_account("gateway-proj-1")
    other = service_account("")  # no project_id
    name = unique("vertex")
    created = ctl(
        cp, "providers", "create", name, "--type", "vertex", "--base-url", VERTEX_URL,
        "--key-file", key_file(tmp_path, account), "--key-file", key_file(tmp_path, other),
        check=True,
    )  # fmt: skip
    provider = get_json(cp, name)
    assert (provider["project"], provider["region"], provider["effective_region"]) == (
        "gateway-proj-1", "", "europe-west4",
    )  # fmt: skip
    # The hint of a vertex key is its service account's email, as cloud_key_hint says.
    hints = [k["hint"] for k in provider["keys"]]
    assert hints == [account["client_email"], other["client_email"]]
    assert hints[0] == cloud_key_hint("vertex", stored_key("vertex", json.dumps(account)))
    shown = ctl(cp, "providers", "get", name, check=True).stdout
    assert shown_as(shown, "project") == "gateway-proj-1" and account["client_email"] in shown
    assert shown_as(shown, "region") == "europe-west4 (from base_url)"

    # A project given wins over the key's.
    given = unique("vertex")
    ctl(
        cp, "providers", "create", given, "--type", "vertex", "--base-url", VERTEX_URL,
        "--project", "elsewhere-2", "--key-file", key_file(tmp_path, account), check=True,
    )  # fmt: skip
    assert get_json(cp, given)["project"] == "elsewhere-2"
    ctl(cp, "providers", "update", given, "--project", "third-3", check=True)
    assert get_json(cp, given)["project"] == "third-3"

    admin = cp.admin
    details = refused_field(
        cp, admin.CreateProvider,
        admin_pb2.CreateProviderRequest(
            name=unique("v"), type="vertex", base_url=VERTEX_URL, keys=[json.dumps(other)]
        ),
        "project",
    )  # fmt: skip
    assert details.startswith("project: is required")
    refused_field(
        cp, admin.CreateProvider,
        admin_pb2.CreateProviderRequest(name=unique("v"), type="vertex", base_url=VERTEX_URL),
        "project",
    )  # fmt: skip
    refused_field(
        cp, admin.CreateProvider,
        admin_pb2.CreateProviderRequest(
            name=unique("v"), type="vertex", base_url=VERTEX_URL, project="Not A Project"
        ),
        "project",
    )  # fmt: skip
    refused_field(
        cp, admin.UpdateProvider, admin_pb2.UpdateProviderRequest(ref=given, project=""),
        "project",
    )  # fmt: skip
    assert_nothing_shows(cp, secret_parts(account) + secret_parts(other), created.stdout, shown)


# --- model maps -----------------------------------------------------------------------------


def mapping_of(cp: Controlplane, name: str) -> dict[str, str]:
    return {m["model"]: m["upstream_model"] for m in get_json(cp, name)["model_map"]}


def test_model_maps_are_made_changed_and_cleared(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    name = unique("bedrock")
    sonnet = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-x:0"
    ctl(
        cp, "providers", "create", name, "--type", "bedrock", "--base-url", BEDROCK_URL,
        "--model-map", "claude-sonnet-4-5=" + sonnet,
        "--model-map", "claude-haiku-4-5=us.anthropic.claude-haiku-4-5-20251001-v1:0",
        check=True,
    )  # fmt: skip
    assert mapping_of(cp, name) == {
        "claude-haiku-4-5": "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "claude-sonnet-4-5": sonnet,
    }
    shown = ctl(cp, "providers", "get", name, check=True).stdout
    assert shown_as(shown, "model map") == "2"
    assert shown.endswith(
        "MODEL              CLOUD_MODEL\n"
        "claude-haiku-4-5   us.anthropic.claude-haiku-4-5-20251001-v1:0\n"
        f"claude-sonnet-4-5  {sonnet}\n"
    ), shown

    # Set one, remove one (MODEL=), in one update.
    ctl(
        cp, "providers", "update", name, "--model-map", "claude-sonnet-4-5=sonnet-v2",
        "--model-map", "claude-haiku-4-5=", "--model-map", "opus=opus-v1", check=True,
    )  # fmt: skip
    assert mapping_of(cp, name) == {"claude-sonnet-4-5": "sonnet-v2", "opus": "opus-v1"}
    # Cleared first, then set.
    ctl(cp, "providers", "update", name, "--clear-model-map", "--model-map", "a=b", check=True)
    assert mapping_of(cp, name) == {"a": "b"}
    ctl(cp, "providers", "update", name, "--clear-model-map", check=True)
    assert mapping_of(cp, name) == {}
    assert shown_as(ctl(cp, "providers", "get", name, check=True).stdout, "model map") == "0"

    audit = cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=4)).entries
    assert [e.action for e in audit] == ["provider.update"] * 3 + ["provider.create"]
    assert json.loads(audit[0].details)["model_map"] == {"from": {"a": "b"}, "to": {}}
    assert json.loads(audit[2].details)["model_map"]["to"] == {
        "claude-sonnet-4-5": "sonnet-v2", "opus": "opus-v1",
    }  # fmt: skip
    assert json.loads(audit[3].details)["region"] == ""


def test_bad_model_maps_are_refused(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    admin = cp.admin
    name = unique("bedrock")
    admin.create_provider(name, BEDROCK_URL, type="bedrock")

    def create(*pairs: tuple[str, str]) -> admin_pb2.CreateProviderRequest:
        return admin_pb2.CreateProviderRequest(
            name=unique("b"), type="bedrock", base_url=BEDROCK_URL,
            model_map=[admin_pb2.ModelMapping(model=m, upstream_model=u) for m, u in pairs],
        )  # fmt: skip

    for pairs in (
        [("a", "x"), ("a", "y")],  # twice
        [("", "x")],
        [("a", "")],  # on create, an empty id removes nothing
        [("a b", "x")],
        [("a", "x" * 201)],
        [(f"m{n}", "x") for n in range(201)],  # more than MODEL_MAP_MAX
        [("a", "..")],  # the call's path would climb out of /model/
        [("a", "arn:aws:bedrock:x//y")],
    ):
        refused_field(cp, admin.CreateProvider, create(*pairs), "model_map")
    # A Vertex model id has neither "/" nor ":" (a Bedrock profile's has).
    vertex = admin_pb2.CreateProviderRequest(
        name=unique("v"), type="vertex", base_url=LOCAL_URL, region="us-east5",
        project="p-1234",
        model_map=[admin_pb2.ModelMapping(model="a", upstream_model="us.anthropic.a-v1:0")],
    )  # fmt: skip
    refused_field(cp, admin.CreateProvider, vertex, "model_map")
    refused_field(
        cp, admin.UpdateProvider,
        admin_pb2.UpdateProviderRequest(
            ref=name, model_map=[admin_pb2.ModelMapping(model="a", upstream_model="bad id")]
        ),
        "model_map",
    )  # fmt: skip

    # A malformed --model-map is a usage error, before any call.
    before = admin.revision()
    for value in ("no-equals-sign", "=x"):
        result = ctl(cp, "providers", "update", name, "--model-map", value)
        assert result.returncode == 2, result
        assert "argument --model-map: expected MODEL=ID" in result.stderr, result.stderr
    assert admin.revision() == before


# --- the snapshot ---------------------------------------------------------------------------


def test_the_snapshot_carries_region_project_and_model_map(
    shared_controlplane: Controlplane,
) -> None:
    cp = shared_controlplane
    aws, account = aws_credential(), service_account("gateway-proj-1")
    bedrock, vertex = unique("bedrock"), unique("vertex")

    async def scenario() -> None:
        bridged = RecordingSubscriber([cp.address], "bridged", cp.secrets.bridged).start()
        proxyd = RecordingSubscriber([cp.address], "proxyd", cp.secrets.proxyd).start()
        try:
            cp.admin.create_provider(bedrock, BEDROCK_URL, type="bedrock", keys=[json.dumps(aws)])
            last = cp.admin.create_provider(
                vertex, LOCAL_URL, type="vertex", region="us-east5",
                keys=[json.dumps(account, indent=2)],
                model_map=[admin_pb2.ModelMapping(model="claude-opus-4-1",
                                                  upstream_model="claude-opus-4-1@20250805")],
            ).revision  # fmt: skip
            await bridged.wait_version(last)
            await proxyd.wait_version(last)
            for subscriber in (bridged, proxyd):
                entries = {p.name: p for p in subscriber.snapshot.providers}
                b, v = entries[bedrock], entries[vertex]
                assert (b.type, b.region, b.project, dict(b.model_map)) == (
                    "bedrock", "us-west-2", "", {},
                )  # fmt: skip
                assert (v.type, v.region, v.project, dict(v.model_map)) == (
                    "vertex", "us-east5", "gateway-proj-1",
                    {"claude-opus-4-1": "claude-opus-4-1@20250805"},
                )  # fmt: skip
            # Keys (compact, as stored_key writes them) reach bridged alone.
            entries = {p.name: p for p in bridged.snapshot.providers}
            assert [k.secret for k in entries[bedrock].keys] == [
                stored_key("bedrock", json.dumps(aws))
            ]
            (vertex_key,) = entries[vertex].keys
            assert vertex_key.secret == stored_key("vertex", json.dumps(account))
            assert vertex_key.hint == account["client_email"]
            assert json.loads(vertex_key.secret)["private_key"] == account["private_key"]
            assert all(not p.keys for p in proxyd.snapshot.providers)

            # A change of region or map reaches both.
            changed = cp.admin.UpdateProvider(
                admin_pb2.UpdateProviderRequest(
                    ref=bedrock, base_url=LOCAL_URL, region="us-east-1",
                    model_map=[admin_pb2.ModelMapping(model="a", upstream_model="b")],
                )
            ).revision  # fmt: skip
            await bridged.wait_version(changed)
            await proxyd.wait_version(changed)
            for subscriber in (bridged, proxyd):
                b = {p.name: p for p in subscriber.snapshot.providers}[bedrock]
                assert (b.region, dict(b.model_map)) == ("us-east-1", {"a": "b"})
        finally:
            await bridged.stop()
            await proxyd.stop()

    asyncio.run(scenario())


# --- secrets stay secret --------------------------------------------------------------------


def test_listings_logs_and_rows_never_show_a_credential(
    shared_controlplane: Controlplane, tmp_path: Path
) -> None:
    cp = shared_controlplane
    aws = aws_credential(session_token=secrets.token_urlsafe(64))
    account = service_account("gateway-proj-1")
    bedrock, vertex = unique("bedrock"), unique("vertex")
    outputs: list[subprocess.CompletedProcess[str]] = [
        ctl(cp, "providers", "create", bedrock, "--type", "bedrock", "--base-url", BEDROCK_URL,
            "--key-file", key_file(tmp_path, aws), check=True),
        ctl(cp, "providers", "create", vertex, "--type", "vertex", "--base-url", VERTEX_URL,
            "--project", "gateway-proj-1", check=True),
        ctl(cp, "providers", "update", vertex, "--add-key-file", key_file(tmp_path, account),
            check=True),
    ]  # fmt: skip
    for args in (("providers", "list"), ("--json", "providers", "list"), ("audit",)):
        outputs.append(ctl(cp, *args, check=True))
    for ref in (bedrock, vertex):
        outputs.append(ctl(cp, "providers", "get", ref, check=True))
        outputs.append(ctl(cp, "--json", "providers", "get", ref, check=True))
    texts = [o.stdout + o.stderr for o in outputs]
    hidden = secret_parts(aws) + secret_parts(account)
    assert_nothing_shows(cp, hidden, *texts)
    audit = cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=2)).entries
    assert json.loads(audit[0].details)["added_keys"] == [account["client_email"]]

    engine = sa.create_engine(cp.database_url)
    try:
        with engine.connect() as conn:
            dump = repr(
                [conn.execute(sa.text(f"SELECT * FROM {t}")).fetchall()
                 for t in ("providers", "provider_keys", "audit_log")]
            )  # fmt: skip
    finally:
        engine.dispose()
    assert all(part not in dump for part in hidden)


# --- the migration --------------------------------------------------------------------------


def test_providers_made_before_the_migration_get_its_defaults(database_url: str) -> None:
    """0009 on a database with providers in it: each gets no region, no project and an
    empty map; and it goes back down."""
    db = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with db.engine.connect() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0008")
            conn.execute(
                sa.text(
                    "INSERT INTO providers (id, name, type, display_name, enabled, base_url, "
                    "created_at, updated_at) VALUES ('prv_old', 'old', 'anthropic', '', true, "
                    "'https://api.anthropic.com', :now, :now)"
                ),
                {"now": datetime(2026, 1, 1, tzinfo=UTC)},
            )
            conn.commit()
            command.upgrade(config, "head")
            conn.commit()
            row = conn.execute(
                sa.text("SELECT region, project, model_map FROM providers WHERE id = 'prv_old'")
            ).one()
            assert tuple(row) == ("", "", "{}")
            command.downgrade(config, "0008")
            conn.commit()
            assert "region" not in {c["name"] for c in sa.inspect(conn).get_columns("providers")}
    finally:
        db.dispose()


def test_a_service_account_email_too_long_for_a_hint_is_refused(
    shared_controlplane: Controlplane,
) -> None:
    cp = shared_controlplane
    account = service_account() | {"client_email": "a" * 240 + "@p.iam.gserviceaccount.com"}
    details = refused_field(
        cp, cp.admin.CreateProvider,
        admin_pb2.CreateProviderRequest(
            name=unique("v"), type="vertex", base_url=VERTEX_URL, keys=[json.dumps(account)]
        ),
        "keys",
    )  # fmt: skip
    assert details == 'keys: a key\'s "client_email" is longer than 254 characters'
    # At the limit, it is the hint.
    account["client_email"] = "a" * 228 + "@p.iam.gserviceaccount.com"
    made = cp.admin.create_provider(
        unique("v"), VERTEX_URL, type="vertex", keys=[json.dumps(account)]
    )
    assert [k.hint for k in made.provider.keys] == [account["client_email"]]
