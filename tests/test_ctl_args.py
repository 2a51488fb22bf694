"""aibridgectl's argument handling, without a controlplane."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controlplane import ctl
from controlplane.ctl.commands import providers
from controlplane.ctl.filters import interception_filter

GLOBAL_ENV = (
    "AIBRIDGE_JSON",
    "AIBRIDGE_CONTROLPLANE",
    "AIBRIDGE_ADMIN_TOKEN",
    "AIBRIDGE_STATE_DIR",
    "AIBRIDGE_TIMEOUT",
    "AIBRIDGE_CA_CERT",
    "AIBRIDGE_CLIENT_CERT",
    "AIBRIDGE_CLIENT_KEY",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in GLOBAL_ENV:
        monkeypatch.delenv(name, raising=False)


def parse(*argv: str) -> argparse.Namespace:
    return ctl.build_parser().parse_args(list(argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "providers", "list"],
        ["providers", "--json", "list"],
        ["providers", "list", "--json"],
    ],
)
def test_json_before_or_after_subcommand(argv: list[str]) -> None:
    args = parse(*argv)
    assert args.json is True
    assert args.func is providers.cmd_list


def test_global_defaults() -> None:
    args = parse("status")
    assert args.json is False
    assert args.controlplane == "127.0.0.1:50051"
    assert args.token is None
    assert args.state_dir == ".aibridge"
    assert args.timeout == 10.0


def test_global_option_after_subcommand_overrides_and_before_survives() -> None:
    args = parse("--controlplane", "cp:1", "--timeout", "3", "tokens", "list", "--token", "t")
    assert args.controlplane == "cp:1"
    assert args.timeout == 3.0
    assert args.token == "t"
    args = parse("--controlplane", "cp:1", "status", "--controlplane", "cp:2")
    assert args.controlplane == "cp:2"


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIBRIDGE_CONTROLPLANE", "env:9")
    monkeypatch.setenv("AIBRIDGE_ADMIN_TOKEN", "secret")
    monkeypatch.setenv("AIBRIDGE_CA_CERT", "/ca.pem")
    args = parse("status")
    assert (args.controlplane, args.token, args.ca_cert) == ("env:9", "secret", "/ca.pem")


def test_a_request_id_is_given_on_the_line_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key exported once would replay its first change in place of every later one."""
    monkeypatch.setenv("AIBRIDGE_REQUEST_ID", "exported")
    assert parse("teams", "create", "ml").request_id is None
    assert parse("--request-id", "r1", "teams", "create", "ml").request_id == "r1"
    assert parse("teams", "create", "ml", "--request-id", "r2").request_id == "r2"


@pytest.mark.parametrize("value", ["x" * 121, "é", "tab\there"])
def test_a_request_id_must_be_printable_ascii(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--request-id", value, "teams", "create", "ml")
    assert exited.value.code == 2
    assert "must be 1 to 120 printable ASCII characters" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "on"), [("1", True), ("yes", True), ("0", False), ("", False)])
def test_a_switch_from_its_variable(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv("AIBRIDGE_JSON", value)
    assert parse("status").json is on
    assert parse("status", "--json").json is True


def test_a_bad_variable_is_a_usage_error_and_a_good_flag_overrides_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read like every process's flags (common/flags.py): once a traceback."""
    monkeypatch.setenv("AIBRIDGE_TIMEOUT", "soon")
    with pytest.raises(SystemExit) as exit:
        parse("status")
    assert exit.value.code == 2
    assert "argument --timeout: invalid number 'soon'" in capsys.readouterr().err
    assert parse("status", "--timeout", "4").timeout == 4.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("12h", 43200),
        ("30d", 2592000),
        ("2w", 1209600),
        ("3600", 3600),
        ("1H", 3600),
        ("36500d", 36500 * 86400),  # 100 years, the most
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert ctl.parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0", "0s", "-5", "1.5h", "3y", "h", "12 h", "1h30m", "36501d", "99999999999w"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        ctl.parse_duration(text)


def test_expires_in_parsed_and_bad_value_is_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse("tokens", "create", "ci", "--expires-in", "30d").expires_in == 30 * 86400
    assert parse("tokens", "create", "ci").expires_in is None
    with pytest.raises(SystemExit) as exc:
        parse("tokens", "create", "ci", "--expires-in", "soon")
    assert exc.value.code == 2
    assert "invalid duration 'soon'" in capsys.readouterr().err


def test_parse_time_iso() -> None:
    assert ctl.parse_time("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert ctl.parse_time("2026-11-01T10:00:00Z") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    # Naive means UTC, and offsets are converted to UTC.
    assert ctl.parse_time("2026-11-01T10:00:00") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert ctl.parse_time("2026-11-01T12:00:00+02:00") == datetime(2026, 11, 1, 10, tzinfo=UTC)


def test_parse_time_duration_means_ago() -> None:
    now = datetime(2026, 11, 2, 12, tzinfo=UTC)
    assert ctl.parse_time("24h", now=now) == now - timedelta(hours=24)
    assert ctl.parse_time("90", now=now) == now - timedelta(seconds=90)


# Durations too long for a date (before the year 1) are refused too, not a traceback.
@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "24x", "1000000w", "99999999999w"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        ctl.parse_time(text)


def test_to_timestamp() -> None:
    ts = ctl.to_timestamp(datetime(2026, 11, 1, 10, tzinfo=UTC))
    assert ts.ToJsonString() == "2026-11-01T10:00:00Z"


def test_usage_options() -> None:
    args = parse("usage", "--since", "2026-11-01", "--by", "model", "--provider", "openai")
    assert args.since == datetime(2026, 11, 1, tzinfo=UTC)
    assert args.until is None
    assert (args.by, args.provider) == ("model", "openai")
    assert parse("usage").by == "provider"
    assert parse("usage", "--by", "client").by == "client"
    assert parse("usage").bucket is None
    assert parse("usage", "--since", "1d", "--bucket", "15m").bucket == 900
    with pytest.raises(SystemExit):
        parse("usage", "--by", "day")


def test_enable_and_disable_together_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse("providers", "update", "openai", "--enable", "--disable")
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_update_options() -> None:
    args = parse(
        "providers",
        "update",
        "openai",
        "--disable",
        "--add-key",
        "k1",
        "--add-key",
        "k2",
        "--remove-key",
        "key_1",
        "--expect-revision",
        "7",
        "--wait",
    )
    assert args.enabled is False
    assert args.add_keys == [ctl.KeySource(key="k1"), ctl.KeySource(key="k2")]
    assert args.remove_key_ids == ["key_1"]
    assert args.expect_revision == 7
    assert args.wait is True
    assert args.wait_timeout == 30.0
    assert parse("providers", "update", "openai", "--enable").enabled is True
    assert parse("providers", "update", "openai", "--name", "x").enabled is None


MUTATION_COMMANDS = [
    ["providers", "create", "p", "--type", "openai", "--base-url", "https://x.example/v1"],
    ["providers", "update", "p", "--disable"],
    ["providers", "delete", "p"],
    ["tokens", "create", "t"],
    ["tokens", "revoke", "t"],
    ["settings", "set", "record.prompts", "off"],
]


@pytest.mark.parametrize("command", MUTATION_COMMANDS, ids=" ".join)
def test_every_mutation_takes_the_same_options(command: list[str]) -> None:
    defaults = parse(*command)
    assert (defaults.expect_revision, defaults.wait) == (None, False)
    assert (defaults.wait_timeout, defaults.fleet_grace) == (30.0, 30.0)
    given = parse(
        *command, "--expect-revision", "7", "--wait", "--wait-timeout", "2", "--fleet-grace", "0"
    )
    assert (given.expect_revision, given.wait) == (7, True)
    assert (given.wait_timeout, given.fleet_grace) == (2.0, 0.0)


READS = [
    ["status"],
    ["providers", "list"],
    ["tokens", "list"],
    ["usage"],
    ["audit"],
    ["settings", "list"],
    ["interceptions", "list"],
    ["interceptions", "show", "r1"],
    ["sessions", "list"],
    ["sessions", "show", "s1"],
]


@pytest.mark.parametrize("command", READS, ids=" ".join)
def test_reads_take_no_mutation_options(command: list[str]) -> None:
    for option in (["--wait"], ["--expect-revision", "1"]):
        with pytest.raises(SystemExit) as exc:
            parse(*command, *option)
        assert exc.value.code == 2


def test_update_with_nothing_to_change_is_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        ctl.run(["--token", "t", "providers", "update", "openai"])
    assert exc.value.code == 2


def test_create_options() -> None:
    args = parse(
        "providers",
        "create",
        "openai",
        "--type",
        "openai",
        "--base-url",
        "https://api.openai.com/v1",
        "--key",
        "a",
        "--key",
        "b",
        "--disabled",
    )
    assert (args.name, args.type, args.base_url) == (
        "openai",
        "openai",
        "https://api.openai.com/v1",
    )
    assert args.keys == [ctl.KeySource(key="a"), ctl.KeySource(key="b")]
    assert args.disabled is True
    assert args.expect_revision is None
    assert args.wait is False
    with pytest.raises(SystemExit):
        parse("providers", "create", "openai", "--type", "openai")  # no --base-url


def test_keys_keep_their_order_whatever_their_source() -> None:
    args = parse(
        "providers", "create", "p", "--type", "openai", "--base-url", "https://x.example/v1",
        "--key-file", "first.key", "--key", "second", "--key", "-", "--key-file", "fourth.key",
    )  # fmt: skip
    assert args.keys == [
        ctl.KeySource(path="first.key"), ctl.KeySource(key="second"), ctl.KeySource(path="-"),
        ctl.KeySource(path="fourth.key"),
    ]  # fmt: skip
    update = parse("providers", "update", "p", "--add-key-file", "a.key", "--add-key", "-")
    assert update.add_keys == [ctl.KeySource(path="a.key"), ctl.KeySource(path="-")]
    assert "second" not in repr(args.keys)  # a key is never in a repr


def test_tokens_and_audit_options() -> None:
    assert parse("tokens", "list", "--all").all is True
    assert parse("tokens", "list").all is False
    assert parse("tokens", "revoke", "tok_1").ref == "tok_1"
    assert parse("audit").limit == 50
    assert parse("audit", "--limit", "5").limit == 5
    with pytest.raises(SystemExit):
        parse("audit", "--limit", "0")


def test_subcommand_required() -> None:
    with pytest.raises(SystemExit) as exc:
        parse()
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        parse("providers")


def test_unreachable_controlplane(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ctl.main(
            ["--controlplane", "127.0.0.1:1", "--token", "t", "--timeout", "5", "providers", "list"]
        )
    assert exc.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: UNAVAILABLE: ")
    assert "controlplane at 127.0.0.1:1 is unreachable" in captured.err


def test_missing_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ctl.main(["--state-dir", str(tmp_path), "--controlplane", "127.0.0.1:1", "status"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "no admin token" in err
    assert "make run" in err
    assert "AIBRIDGE_ADMIN_TOKEN" in err


def test_token_read_from_state_dir(tmp_path: Path) -> None:
    (tmp_path / "admin.token").write_text("adm_secret\n")
    args = parse("--state-dir", str(tmp_path), "status")
    assert ctl.resolve_token(args) == "adm_secret"
    assert ctl.resolve_token(parse("--token", "given", "status")) == "given"


def test_interception_filters() -> None:
    args = parse(
        "interceptions", "list", "--since", "2026-11-01", "--until", "2026-11-02",
        "--token", "alice", "--provider", "openai", "--model", "gpt-4o", "--client", "codex",
        "--session", "s-1", "--status", "error", "--limit", "5",
    )  # fmt: skip
    selected = interception_filter(args)
    assert selected.since.ToJsonString() == "2026-11-01T00:00:00Z"
    assert selected.until.ToJsonString() == "2026-11-02T00:00:00Z"
    assert (selected.token, selected.provider, selected.model) == ("alice", "openai", "gpt-4o")
    assert (selected.client, selected.session_id, selected.status_class) == (
        "codex",
        "s-1",
        "error",
    )
    assert args.limit == 5
    assert parse("interceptions", "list").limit == 50
    assert parse("sessions", "list").limit == 50
    assert parse("sessions", "show", "s-1").limit is None  # the whole session
    unset = interception_filter(parse("sessions", "list"))
    assert not unset.HasField("since") and not unset.HasField("until") and unset.token == ""


def test_token_filters_and_the_admin_token_goes_before() -> None:
    """Under interceptions and sessions, --token names the gateway token to filter by; the
    admin token is given before the command group."""
    args = parse("--token", "aba_admin", "sessions", "show", "s-1", "--token", "tok_123")
    assert (args.token, args.token_filter) == ("aba_admin", "tok_123")
    args = parse("--token", "aba_admin", "interceptions", "list", "--token", "ci-bot")
    assert (args.token, args.token_filter) == ("aba_admin", "ci-bot")
    assert ctl.resolve_token(args) == "aba_admin"


@pytest.mark.parametrize("secret", ["aba_s3cret-admin", "abt_s3cret-gateway"])
def test_a_secret_given_as_token_filter_is_refused_unechoed(
    secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        ctl.run(["interceptions", "list", "--token", secret])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --token: expects a gateway token's name or id" in err
    assert "s3cret" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["interceptions", "list", "--status", "6xx"], "argument --status: invalid choice"),
        (["sessions", "list", "--status", "ok"], "argument --status: invalid choice"),
        (["interceptions", "list", "--since", "yesterday"], "invalid time 'yesterday'"),
        (["sessions", "list", "--until", "2026-13-01"], "invalid time '2026-13-01'"),
        (["interceptions", "list", "--limit", "0"], "argument --limit: must be positive"),
        (["sessions", "show", "s", "--limit", "-1"], "argument --limit: must not be negative"),
        (
            ["interceptions", "list", "--since", "1h", "--until", "2h"],
            "interceptions list: --since is after --until",
        ),
        (
            ["sessions", "list", "--since", "2026-11-02", "--until", "2026-11-01"],
            "sessions list: --since is after --until",
        ),
        (["interceptions", "show"], "the following arguments are required: ID"),
        (["settings", "set", "record.prompts"], "the following arguments are required: VALUE"),
    ],
)
def test_bad_arguments_are_usage_errors_before_any_call(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No controlplane listens at port 1: a call would exit 1, not 2.
    with pytest.raises(SystemExit) as exc:
        ctl.run(["--controlplane", "127.0.0.1:1", "--token", "t", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
