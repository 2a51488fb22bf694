"""aibridgectl as users run it: a subprocess against a real controlplane, its output, its
JSON, its exit codes, `--wait` against real subscribers, and the first run after
`make run` with nothing configured. Tests on the module's shared controlplane use names
of their own."""

from __future__ import annotations

import asyncio
import json
import re
import stat
import subprocess
from pathlib import Path

from aibridge.v1 import admin_pb2
from tests.harness import (
    PYTHON,
    Controlplane,
    RecordingSubscriber,
    Secrets,
    admin_state,
    clean_env,
    ctl,
    lagging_line,
    printed_revision,
    unique,
)

KEY_A = "sk-test-AAAAAAAAAAAAAAAAAAAA-1111"
KEY_B = "sk-test-BBBBBBBBBBBBBBBBBBBB-2222"
KEY_C = "sk-test-CCCCCCCCCCCCCCCCCCCC-3333"
BASE_URL = "https://api.openai.com/v1"


def assert_no_keys(result: subprocess.CompletedProcess[str]) -> None:
    for key in (KEY_A, KEY_B, KEY_C):
        assert key not in result.stdout and key not in result.stderr


def test_provider_lifecycle(controlplane: Controlplane) -> None:
    """(A controlplane of its own: it ends with no providers at all.)"""
    cp = controlplane
    start = cp.admin.revision()

    created = ctl(
        cp, "providers", "create", "openai", "--type", "openai", "--base-url", BASE_URL,
        "--key", KEY_A, "--key", KEY_B, check=True,
    )  # fmt: skip
    assert_no_keys(created)
    assert re.fullmatch(
        rf"created provider openai \(prv_\w+\) with 2 key\(s\) at revision {start + 1}\n",
        created.stdout,
    ), created.stdout

    # --json before the command.
    got = ctl(cp, "--json", "providers", "get", "openai", check=True)
    assert_no_keys(got)
    provider = json.loads(got.stdout)
    assert (provider["name"], provider["type"], provider["enabled"], provider["base_url"]) == (
        "openai", "openai", True, BASE_URL,
    )  # fmt: skip
    assert provider["id"].startswith("prv_")
    assert [k["hint"] for k in provider["keys"]] == ["…1111", "…2222"]
    assert set(provider) >= {"created_at", "updated_at", "display_name"}

    # --json after it: field names are the API's, and the revision is a number.
    listing = json.loads(ctl(cp, "providers", "list", "--json", check=True).stdout)
    assert listing["revision"] == start + 1
    assert [p["id"] for p in listing["providers"]] == [provider["id"]]

    table = ctl(cp, "providers", "list", check=True).stdout.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "ENABLED", "BASE_URL", "KEYS", "ID"]
    assert table[1].split() == ["openai", "openai", "yes", BASE_URL, "2", provider["id"]]

    first_key = provider["keys"][0]["id"]
    updated = ctl(
        cp, "providers", "update", "openai", "--name", "openai-eu",
        "--base-url", "https://eu.example.com/v1", "--disable", "--add-key", KEY_C,
        "--remove-key", first_key, "--json", check=True,
    )  # fmt: skip
    assert_no_keys(updated)
    response = json.loads(updated.stdout)
    assert response["revision"] == start + 2
    u = response["provider"]
    assert (u["id"], u["name"], u["base_url"], u["enabled"]) == (
        provider["id"], "openai-eu", "https://eu.example.com/v1", False,
    )  # fmt: skip
    assert [k["hint"] for k in u["keys"]] == ["…2222", "…3333"]

    enabled = ctl(cp, "providers", "update", "openai-eu", "--enable", check=True)
    assert enabled.stdout == (
        f"updated provider openai-eu ({provider['id']}) at revision {start + 3}\n"
    )
    shown = ctl(cp, "providers", "get", provider["id"], check=True).stdout
    assert re.search(r"^enabled:\s+yes$", shown, re.M), shown
    assert re.search(r"^base url:\s+https://eu\.example\.com/v1$", shown, re.M), shown
    assert "…2222" in shown and "…3333" in shown and "…1111" not in shown

    deleted = ctl(cp, "providers", "delete", "openai-eu", check=True)
    assert deleted.stdout == (
        f"deleted provider openai-eu ({provider['id']}) at revision {start + 4}\n"
    )
    empty = ctl(cp, "providers", "list", check=True)
    assert empty.stdout == f"no providers (revision {start + 4})\n"


def test_keys_from_files_and_standard_input(
    shared_controlplane: Controlplane, tmp_path: Path
) -> None:
    """Keys kept off the command line (process list, shell history), in the given order."""
    cp, p = shared_controlplane, unique("p")
    first, third = tmp_path / "first.key", tmp_path / "third.key"
    first.write_text(KEY_A + "\n")
    third.write_text(f"  {KEY_C}\n\n")
    created = ctl(
        cp, "--json", "providers", "create", p, "--type", "openai", "--base-url", BASE_URL,
        "--key-file", str(first), "--key", "-", "--key-file", str(third),
        stdin=KEY_B + "\n", check=True,
    )  # fmt: skip
    assert_no_keys(created)
    assert [k["hint"] for k in json.loads(created.stdout)["provider"]["keys"]] == [
        "…1111", "…2222", "…3333",
    ]  # fmt: skip
    added = ctl(cp, "--json", "providers", "update", p, "--add-key", "-", stdin=KEY_C,
                check=True)  # fmt: skip
    assert [k["hint"] for k in json.loads(added.stdout)["provider"]["keys"]][-1] == "…3333"
    added = ctl(cp, "--json", "providers", "update", p, "--add-key-file", str(first),
                check=True)  # fmt: skip
    assert [k["hint"] for k in json.loads(added.stdout)["provider"]["keys"]][-1] == "…1111"

    revision = cp.admin.revision()
    for args, stdin, message in (
        (("--key-file", str(tmp_path / "missing.key")), "", "cannot read a key from"),
        (("--key", "-"), "  \n", "standard input holds no key"),
        (("--key", "-", "--key", "-"), KEY_A, "only one key can come from standard input"),
    ):
        refused = ctl(cp, "providers", "create", unique("q"), "--type", "openai", "--base-url",
                      BASE_URL, *args, stdin=stdin)  # fmt: skip
        assert refused.returncode == 1, refused
        assert refused.stderr.startswith("error: ") and message in refused.stderr, refused.stderr
        assert_no_keys(refused)
    assert cp.admin.revision() == revision


def test_tokens_through_the_command(shared_controlplane: Controlplane) -> None:
    cp, ci, deploy_name = shared_controlplane, unique("ci"), unique("deploy")
    created = ctl(cp, "tokens", "create", ci, check=True).stdout
    (laptop,) = re.findall(r"^    (abt_\S+)$", created, re.M)
    assert f"created token {ci} (tok_" in created and "expires never" in created
    assert "will not be shown again" in created

    deployed = ctl(cp, "--json", "tokens", "create", deploy_name, "--expires-in", "1h", check=True)
    response = json.loads(deployed.stdout)
    deploy = response["token"]
    assert deploy.startswith("abt_") and deploy != laptop
    assert isinstance(response["revision"], int)
    assert response["info"]["name"] == deploy_name and response["info"]["expires_at"]

    listing = ctl(cp, "tokens", "list", check=True).stdout
    assert laptop not in listing and deploy not in listing
    rows = {line.split()[0]: line.split() for line in listing.splitlines()[1:]}
    assert {ci, deploy_name} <= set(rows)
    assert laptop.startswith(rows[ci][2].rstrip("…"))
    assert rows[ci][4] == "never" and rows[deploy_name][4] != "never"

    revoked = ctl(cp, "tokens", "revoke", ci, check=True).stdout
    assert revoked.startswith(f"revoked token {ci} (tok_")
    everything = json.loads(ctl(cp, "tokens", "list", "--all", "--json", check=True).stdout)
    mine = (ci, deploy_name)
    state = {t["name"]: "revoked_at" in t for t in everything["tokens"] if t["name"] in mine}
    assert state == {ci: True, deploy_name: False}


def test_errors_exit_1_and_never_print_the_key(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    before = cp.admin.revision()

    bad_name = ctl(
        cp, "providers", "create", "Bad_Name", "--type", "openai", "--base-url", BASE_URL,
        "--key", KEY_A,
    )  # fmt: skip
    assert bad_name.returncode == 1
    assert bad_name.stdout == ""
    assert bad_name.stderr.startswith("error: INVALID_ARGUMENT: name: "), bad_name.stderr
    assert_no_keys(bad_name)

    bad_key = ctl(
        cp, "providers", "create", "ok", "--type", "openai", "--base-url", BASE_URL,
        "--key", f" {KEY_B}",
    )  # fmt: skip
    assert bad_key.returncode == 1
    assert bad_key.stderr.startswith("error: INVALID_ARGUMENT: keys"), bad_key.stderr
    assert_no_keys(bad_key)

    missing = ctl(cp, "providers", "get", "missing")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: NOT_FOUND: "), missing.stderr

    wrong = ctl(cp, "status", env={"AIBRIDGE_ADMIN_TOKEN": "aba_wrong"})
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("error: UNAUTHENTICATED: "), wrong.stderr
    assert "aba_wrong" not in wrong.stderr

    assert cp.admin.revision() == before


def test_stale_expect_revision_is_aborted(shared_controlplane: Controlplane) -> None:
    cp, p = shared_controlplane, unique("p")
    current = cp.admin.create_provider(p).revision
    stale = ctl(cp, "providers", "update", p, "--disable", "--expect-revision", str(current - 1))
    assert stale.returncode == 1
    assert stale.stderr.startswith("error: ABORTED: "), stale.stderr
    assert cp.admin.revision() == current
    assert cp.admin.GetProvider(admin_pb2.GetProviderRequest(ref=p)).enabled

    fresh = ctl(cp, "providers", "update", p, "--disable", "--expect-revision", str(current))
    assert fresh.returncode == 0, fresh.stderr
    assert printed_revision(fresh.stdout) == current + 1


# Every mutation command, each twice (--json, then readable), in an order where each
# finds what it changes: they share one path for --expect-revision, --json and --wait.
MUTATIONS = [
    ("providers", "create", "a", "--type", "openai", "--base-url", BASE_URL, "--key", KEY_A),
    ("providers", "create", "b", "--type", "openai", "--base-url", BASE_URL),
    ("providers", "update", "a", "--disable"),
    ("providers", "update", "b", "--display-name", "B"),
    ("tokens", "create", "ta"),
    ("tokens", "create", "tb", "--expires-in", "1h"),
    ("tokens", "revoke", "ta"),
    ("tokens", "revoke", "tb"),
    ("providers", "delete", "a"),
    ("providers", "delete", "b"),
]


def test_every_mutation_expects_a_revision_and_waits(
    controlplane: Controlplane, secrets: Secrets
) -> None:
    """A stale --expect-revision refuses the change and changes nothing; the current one
    makes it, and --wait returns once the subscriber applied it, with --json or without."""
    cp = controlplane

    async def scenario() -> None:
        recording = RecordingSubscriber(
            [cp.address], "bridged", secrets.bridged, subscriber_id="bridged-mutations"
        ).start()
        try:
            await recording.subscriber.wait_ready(15)
            for i, command in enumerate(MUTATIONS):
                as_json = i % 2 == 0
                before = await asyncio.to_thread(admin_state, cp)
                current = before[0]
                stale = await asyncio.to_thread(
                    ctl, cp, *command, "--expect-revision", str(current - 1), "--wait"
                )
                assert stale.returncode == 1, (command, stale.stdout, stale.stderr)
                assert stale.stdout == "" and stale.stderr.startswith("error: ABORTED: "), command
                assert await asyncio.to_thread(admin_state, cp) == before, command

                flags = ["--expect-revision", str(current), "--wait", "--wait-timeout", "15"]
                made = await asyncio.to_thread(
                    ctl, cp, *command, *flags, *(["--json"] if as_json else [])
                )
                assert made.returncode == 0, (command, made.stderr)
                if as_json:  # one JSON document, nothing after it
                    revision = json.loads(made.stdout)["revision"]
                else:
                    revision = printed_revision(made.stdout)
                    last = made.stdout.splitlines()[-1]
                    assert last == f"revision {revision} applied by every subscriber", command
                assert revision == current + 1, command
                assert recording.version >= revision, command
        finally:
            await recording.stop()

    asyncio.run(scenario())


def test_status_lists_a_connected_subscriber(controlplane: Controlplane, secrets: Secrets) -> None:
    cp = controlplane

    async def scenario() -> None:
        revision = (await asyncio.to_thread(cp.admin.create_provider, "p")).revision
        recording = RecordingSubscriber(
            [cp.address], "bridged", secrets.bridged, subscriber_id="bridged-status"
        ).start()
        try:
            await recording.wait_version(revision)
            await asyncio.to_thread(cp.admin.wait_applied, revision)

            readable = await asyncio.to_thread(ctl, cp, "status", check=True)
            assert re.search(rf"^revision:\s+{revision}$", readable.stdout, re.M)
            assert re.search(r"^subscribers:\s+1$", readable.stdout, re.M)
            fields = lagging_line(readable.stdout, "bridged-status").split()
            assert fields[:2] == ["bridged-status", "bridged"] and fields[4] == str(revision)

            status = json.loads((await asyncio.to_thread(ctl, cp, "status", "--json")).stdout)
            assert status["revision"] == revision
            (subscriber,) = status["subscribers"]
            assert (subscriber["id"], subscriber["role"], subscriber["applied_version"]) == (
                "bridged-status", "bridged", revision,
            )  # fmt: skip
        finally:
            await recording.stop()

    asyncio.run(scenario())


def test_wait_returns_once_every_subscriber_applied(
    controlplane: Controlplane, secrets: Secrets
) -> None:
    cp = controlplane

    async def scenario() -> None:
        bridged = RecordingSubscriber(
            [cp.address], "bridged", secrets.bridged, subscriber_id="bridged-wait"
        ).start()
        proxyd = RecordingSubscriber(
            [cp.address], "proxyd", secrets.proxyd, subscriber_id="proxyd-wait"
        ).start()
        try:
            for recording in (bridged, proxyd):
                await recording.subscriber.wait_ready(15)

            created = await asyncio.to_thread(
                ctl, cp, "providers", "create", "p", "--type", "openai", "--base-url", BASE_URL,
                "--key", KEY_A, "--wait",
            )  # fmt: skip
            assert created.returncode == 0, created.stderr
            revision = printed_revision(created.stdout)
            assert bridged.version >= revision and proxyd.version >= revision
            assert f"revision {revision} applied by every subscriber" in created.stdout

            # With --json the output stays one JSON document.
            token = await asyncio.to_thread(
                ctl, cp, "tokens", "create", "t", "--wait", "--json", check=True
            )
            revision = json.loads(token.stdout)["revision"]
            assert bridged.version >= revision and proxyd.version >= revision
        finally:
            await bridged.stop()
            await proxyd.stop()

    asyncio.run(scenario())


def test_wait_names_the_subscriber_that_rejects(
    controlplane: Controlplane, secrets: Secrets
) -> None:
    cp = controlplane

    async def scenario() -> None:
        good = RecordingSubscriber(
            [cp.address], "bridged", secrets.bridged, subscriber_id="bridged-good"
        ).start()
        stubborn = RecordingSubscriber(
            [cp.address], "proxyd", secrets.proxyd, subscriber_id="proxyd-stubborn"
        ).start()
        try:
            for recording in (good, stubborn):
                await recording.subscriber.wait_ready(15)
            current = await asyncio.to_thread(cp.admin.revision)
            stubborn.reject = lambda s: "nope" if s.version > current else None

            result = await asyncio.to_thread(
                ctl, cp, "providers", "create", "p", "--type", "openai", "--base-url", BASE_URL,
                "--wait", "--wait-timeout", "2",
            )  # fmt: skip
            assert result.returncode == 3, (result.stdout, result.stderr)
            revision = printed_revision(result.stdout)  # the change itself was made
            assert revision == current + 1
            assert f"revision {revision} not applied" in result.stderr
            assert "proxyd-stubborn" in result.stderr and "nope" in result.stderr
            assert "bridged-good" not in result.stderr
            assert good.version >= revision and stubborn.version == current
        finally:
            await good.stop()
            await stubborn.stop()

    asyncio.run(scenario())


def test_first_run_with_nothing_configured(tmp_path: Path) -> None:
    """Right after `make run`: no credentials anywhere but the generated state dir."""
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    cp = Controlplane("", workdir, Secrets(), generated_secrets=True).start()
    try:
        state = workdir / ".aibridge"
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        for name in ("admin.token", "bridged.token", "proxyd.token", "encryption.keys"):
            path = state / name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
            assert path.read_text().strip(), name
        assert (state / "aibridge.db").exists()  # the default database
        assert cp.secrets.admin.startswith("aba_")

        result = subprocess.run(
            [PYTHON, "-m", "controlplane.ctl", "status"],
            env=clean_env() | {"AIBRIDGE_CONTROLPLANE": cp.address},
            cwd=workdir, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        revision = re.search(r"^revision:\s+(\d+)$", result.stdout, re.M)
        assert revision, result.stdout
        assert cp.admin.revision() == int(revision.group(1))  # with the generated token

        log = cp.log()
        for secret in (cp.secrets.admin, cp.secrets.bridged, cp.secrets.proxyd):
            assert secret not in log
    finally:
        cp.stop()
