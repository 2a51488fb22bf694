"""Gateway settings (what bridged records): an administrator lists and sets them through
the Admin API; a change is a mutation like a provider's (revision, audit) and reaches
bridged in its snapshot, never proxyd. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from aibridge.v1 import admin_pb2, snapshot_pb2
from tests.harness import Controlplane, RecordingSubscriber, refused

DEFAULTS = {
    "record.prompts": "on",
    "record.tool_calls": "on",
    "record.reasoning": "off",
    "record.max_text_bytes": "32768",
    "limits.redis_unavailable": "open",
}


def listed(cp: Controlplane) -> dict[str, admin_pb2.Setting]:
    return {s.key: s for s in cp.admin.ListSettings(admin_pb2.ListSettingsRequest()).settings}


def set_setting(
    cp: Controlplane, key: str, value: str, expected_revision: int | None = None
) -> admin_pb2.SetSettingResponse:
    request = admin_pb2.SetSettingRequest(key=key, value=value, expected_revision=expected_revision)
    return cp.admin.SetSetting(request)


def test_list_set_and_audit(controlplane: Controlplane) -> None:
    cp = controlplane
    before = listed(cp)
    assert list(before) == list(DEFAULTS)
    assert {k: (s.value, s.default_value) for k, s in before.items()} == {
        k: (v, v) for k, v in DEFAULTS.items()
    }
    assert all(s.description and not s.HasField("updated_at") for s in before.values())

    start = cp.admin.revision()
    changed = set_setting(cp, "record.reasoning", " Yes ")
    assert changed.revision == start + 1
    assert (changed.setting.key, changed.setting.value) == ("record.reasoning", "on")
    assert changed.setting.default_value == "off" and changed.setting.HasField("updated_at")
    assert set_setting(cp, "record.max_text_bytes", "4096").setting.value == "4096"
    assert set_setting(cp, "record.prompts", "0").setting.value == "off"
    # The same value again is still a change of its own: a revision to wait for, audited.
    again = set_setting(cp, "record.prompts", "false")
    assert again.revision == start + 4

    after = cp.admin.ListSettings(admin_pb2.ListSettingsRequest())
    assert after.revision == start + 4
    values = {s.key: s.value for s in after.settings}
    assert values == DEFAULTS | {
        "record.reasoning": "on", "record.max_text_bytes": "4096", "record.prompts": "off",
    }  # fmt: skip
    assert not listed(cp)["record.tool_calls"].HasField("updated_at")

    entries = cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=4)).entries
    assert [(e.action, e.target, e.revision, e.actor.split()[0]) for e in entries] == [
        ("setting.set", "record.prompts", start + 4, "tester"),
        ("setting.set", "record.prompts", start + 3, "tester"),
        ("setting.set", "record.max_text_bytes", start + 2, "tester"),
        ("setting.set", "record.reasoning", start + 1, "tester"),
    ]
    assert [json.loads(e.details) for e in entries[1:]] == [
        {"key": "record.prompts", "old": "on", "new": "off"},
        {"key": "record.max_text_bytes", "old": "32768", "new": "4096"},
        {"key": "record.reasoning", "old": "off", "new": "on"},
    ]

    with pytest.raises(grpc.RpcError) as caught:
        set_setting(cp, "record.prompts", "on", expected_revision=start)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert listed(cp)["record.prompts"].value == "off"


@pytest.mark.parametrize(
    ("key", "value", "field", "accepts"),
    [
        ("record.everything", "on", "key", "record.prompts, record.tool_calls"),
        ("", "on", "key", "record.prompts"),
        ("record.prompts", "maybe", "record.prompts", "on or off"),
        ("record.prompts", "", "record.prompts", "on or off"),
        ("record.max_text_bytes", "1023", "record.max_text_bytes", "from 1024 to 262144"),
        ("record.max_text_bytes", "262145", "record.max_text_bytes", "from 1024 to 262144"),
        ("record.max_text_bytes", "32k", "record.max_text_bytes", "a whole number of bytes"),
        ("record.max_text_bytes", "-2048", "record.max_text_bytes", "a whole number of bytes"),
        ("record.max_text_bytes", "on", "record.max_text_bytes", "a whole number of bytes"),
        # Digits to str.isdigit(), not to int().
        ("record.max_text_bytes", "2²", "record.max_text_bytes", "a whole number of bytes"),
    ],
)
def test_bad_key_or_value_is_refused(
    shared_controlplane: Controlplane, key: str, value: str, field: str, accepts: str
) -> None:
    cp = shared_controlplane
    request = admin_pb2.SetSettingRequest(key=key, value=value)
    details = refused(cp, grpc.StatusCode.INVALID_ARGUMENT, cp.admin.SetSetting, request, field)
    assert accepts in details
    assert {s.key: s.value for s in listed(cp).values()} == DEFAULTS


@pytest.mark.parametrize("role", ["bridged", "proxyd"])
def test_only_the_admin_credential_may_read_or_set(
    shared_controlplane: Controlplane, role: str
) -> None:
    cp = shared_controlplane
    metadata = (("authorization", f"Bearer {getattr(cp.secrets, role)}"),)
    calls = [
        (cp.admin.stub.SetSetting, admin_pb2.SetSettingRequest(key="record.prompts", value="off")),
        (cp.admin.stub.ListSettings, admin_pb2.ListSettingsRequest()),
    ]
    for call, request in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call(request, metadata=metadata, timeout=15)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert listed(cp)["record.prompts"].value == "on"


def test_settings_reach_bridged_in_its_snapshot_and_never_proxyd(
    controlplane: Controlplane,
) -> None:
    cp = controlplane

    async def scenario() -> None:
        bridged = RecordingSubscriber([cp.address], "bridged", cp.secrets.bridged).start()
        proxyd = RecordingSubscriber([cp.address], "proxyd", cp.secrets.proxyd).start()
        try:
            start = cp.admin.revision()
            await bridged.wait_version(start)
            await proxyd.wait_version(start)
            assert bridged.snapshot.settings == snapshot_pb2.GatewaySettings(
                record_prompts=True, record_tool_calls=True, record_reasoning=False,
                record_max_text_bytes=32768, limits_redis_unavailable="open",
            )  # fmt: skip
            assert not proxyd.snapshot.HasField("settings")

            set_setting(cp, "record.prompts", "off")
            set_setting(cp, "record.reasoning", "on")
            last = set_setting(cp, "record.max_text_bytes", "2048").revision
            # WaitForRevision covers a settings change as it does a provider change.
            await asyncio.to_thread(cp.admin.wait_applied, last)
            assert bridged.version == proxyd.version == last
            assert bridged.snapshot.settings == snapshot_pb2.GatewaySettings(
                record_prompts=False, record_tool_calls=True, record_reasoning=True,
                record_max_text_bytes=2048, limits_redis_unavailable="open",
            )  # fmt: skip
            assert not proxyd.snapshot.HasField("settings")
        finally:
            await bridged.stop()
            await proxyd.stop()

    asyncio.run(scenario())
