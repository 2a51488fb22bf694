"""aibridgectl reading what the agents did, and changing what is recorded: records reported
through the real Usage service, then `interceptions list|show`, `sessions list|show` and
`usage --by client` as tables, as JSON under the API's field names, filtered and across
pages; `settings list|set` with `--wait` while a real bridged is subscribed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aibridge.v1 import admin_pb2, usage_pb2
from tests.harness import Bridged, Controlplane, ctl, interception, printed_revision, report

MINUTE = timedelta(minutes=1)
PROMPT = "What is the weather in Paris?\nAnswer in one word."
WEATHER = usage_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
# Wide enough that no table cell is cut, unless a test narrows it.
WIDE = {"COLUMNS": "250"}


def agent_calls(now: datetime) -> list[usage_pb2.Interception]:
    """Alice's Claude Code session s-1 (a tool call, then its result), Bob's failed Codex
    call in session s-2, and a curl call of Bob's with no session that was refused."""
    return [
        interception(
            "r1", 10 * MINUTE, now, tokens=(10, 20, 0, 0), client="claude-code",
            session_id="s-1", prompt=PROMPT, tool_calls=[WEATHER], stop_reason="tool_use",
        ),
        interception(
            "r2", 8 * MINUTE, now, tokens=(30, 5, 0, 0), client="claude-code", session_id="s-1",
            tool_results=[usage_pb2.ToolResult(tool_call_id="call_1")], stop_reason="end_turn",
        ),
        interception(
            "r3", 3 * MINUTE, now, provider="anthropic", model="claude-sonnet-4", token="bob",
            status=500, client="codex", session_id="s-2", prompt="fix the build",
            error_message="upstream exploded",
        ),
        interception(
            "r4", MINUTE, now, token="bob", status=429, client="curl", prompt="x" * 400,
        ),
    ]  # fmt: skip


def listed(cp: Controlplane, *args: str) -> list[str]:
    """The ids `interceptions list ARGS --json` prints, in its order."""
    result = ctl(cp, "interceptions", "list", *args, "--json", check=True)
    return [i["id"] for i in json.loads(result.stdout)["interceptions"]]


def rows(stdout: str) -> dict[str, list[str]]:
    """A table's rows by their first cell (the header row under its first header)."""
    return {line.split()[0]: line.split() for line in stdout.splitlines()}


def test_interceptions_list_as_table_and_json(controlplane: Controlplane) -> None:
    cp = controlplane
    report(cp, agent_calls(datetime.now(UTC)), cp.secrets.bridged)

    table = ctl(cp, "interceptions", "list", env=WIDE, check=True).stdout
    lines = table.splitlines()
    assert lines[0].split() == [
        "ID", "STARTED", "TOKEN", "USER", "CLIENT", "PROVIDER", "MODEL", "STATUS", "IN", "OUT",
        "COST", "TOOLS", "PROMPT",
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == ["r4", "r3", "r2", "r1"]  # newest first
    r1 = rows(table)["r1"]
    # No user; 10 input and 20 output tokens of gpt-4o: (10 * 2.5 + 20 * 10) / 1e6 USD.
    assert r1[2:12] == [
        "alice", "-", "claude-code", "openai", "gpt-4o", "200", "10", "20", "$0.000225", "1",
    ]  # fmt: skip
    # The prompt on one line.
    assert " ".join(r1[12:]) == "What is the weather in Paris? Answer in one word."
    assert rows(table)["r2"][11:] == ["0", "-"]  # no prompt
    assert rows(table)["r3"][2:8] == ["bob", "-", "codex", "anthropic", "claude-sonnet-4", "500"]

    # The prompt is cut to fit the screen; every line fits it, without USER and COST
    # when they would not leave the prompt room.
    narrow = ctl(cp, "interceptions", "list", env={"COLUMNS": "120"}, check=True).stdout
    assert all(len(line) <= 120 for line in narrow.splitlines()), narrow
    assert rows(narrow)["r4"][-1].endswith("…")
    assert "USER" not in rows(narrow)["ID"] and "COST" not in rows(narrow)["ID"]

    document = json.loads(ctl(cp, "--json", "interceptions", "list", check=True).stdout)
    assert set(document) == {"interceptions", "next_cursor"}
    first = document["interceptions"][-1]
    assert {
        k: first[k]
        for k in ("id", "client", "session_id", "prompt", "stop_reason", "token_name")
    } == {
        "id": "r1", "client": "claude-code", "session_id": "s-1", "prompt": PROMPT,
        "stop_reason": "tool_use", "token_name": "alice",
    }  # fmt: skip
    assert (first["provider_name"], first["model"]) == ("openai", "gpt-4o")
    assert (first["input_tokens"], first["output_tokens"]) == (10, 20)  # numbers, not strings
    (call,) = first["tool_calls"]
    assert (call["id"], call["name"], json.loads(call["arguments"])) == (
        "call_1", "get_weather", {"city": "Paris"},
    )  # fmt: skip
    assert document["interceptions"][-2]["tool_results"] == [
        {"tool_call_id": "call_1", "is_error": False}
    ]


def test_interceptions_list_filters(controlplane: Controlplane) -> None:
    cp = controlplane
    report(cp, agent_calls(datetime.now(UTC)), cp.secrets.bridged)

    assert listed(cp, "--token", "bob") == ["r4", "r3"]
    assert listed(cp, "--token", "tok_alice") == ["r2", "r1"]
    assert listed(cp, "--provider", "anthropic") == ["r3"]
    assert listed(cp, "--model", "gpt-4o") == ["r4", "r2", "r1"]
    assert listed(cp, "--client", "claude-code") == ["r2", "r1"]
    assert listed(cp, "--session", "s-2") == ["r3"]
    assert listed(cp, "--status", "2xx") == ["r2", "r1"]
    assert listed(cp, "--status", "4xx") == ["r4"]
    assert listed(cp, "--status", "error") == ["r4", "r3"]
    assert listed(cp, "--since", "5m") == ["r4", "r3"]
    assert listed(cp, "--until", "5m") == ["r2", "r1"]
    assert listed(cp, "--since", "9m", "--until", "2m", "--client", "claude-code") == ["r2"]
    assert listed(cp, "--client", "unknown") == []
    assert ctl(cp, "interceptions", "list", "--client", "nobody", check=True).stdout == (
        "no interceptions match\n"
    )

    # --limit: the newest N, and the cursor to go on from.
    limited = json.loads(ctl(cp, "interceptions", "list", "--limit", "3", "--json").stdout)
    assert [i["id"] for i in limited["interceptions"]] == ["r4", "r3", "r2"]
    assert limited["next_cursor"]


def test_interceptions_list_follows_pages(controlplane: Controlplane) -> None:
    """More records than the API gives in one page (1,000): --limit collects them."""
    cp = controlplane
    now = datetime.now(UTC)
    records = [interception(f"r{n:04}", n * timedelta(seconds=1), now) for n in range(1, 1201)]
    assert report(cp, records, cp.secrets.bridged) == 1200

    def ids(*args: str) -> list[str]:
        return listed(cp, *args)

    assert ids() == [f"r{n:04}" for n in range(1, 51)]  # 50 by default
    assert ids("--limit", "1100") == [f"r{n:04}" for n in range(1, 1101)]
    assert ids("--limit", "5000") == [f"r{n:04}" for n in range(1, 1201)]
    table = ctl(cp, "interceptions", "list", "--limit", "1001", check=True).stdout
    assert len(table.splitlines()) == 1 + 1001


def test_interceptions_show(controlplane: Controlplane) -> None:
    cp = controlplane
    cut = usage_pb2.ToolCall(
        id="call_2", name="write_file", arguments='{"path": "a.txt", "text": "ab',
        arguments_truncated=True,
    )  # fmt: skip
    record = interception(
        "r1", MINUTE, tokens=(12, 34, 5, 6), client="claude-code", session_id="s-1",
        prompt=PROMPT, prompt_truncated=True, tool_calls=[WEATHER, cut],
        tool_results=[
            usage_pb2.ToolResult(tool_call_id="call_0", is_error=True),
            usage_pb2.ToolResult(tool_call_id="call_9"),
        ],
        stop_reason="tool_use", reasoning="The user wants weather.", partial=True,
    )  # fmt: skip
    report(cp, [record], cp.secrets.bridged)

    shown = ctl(cp, "interceptions", "show", "r1", check=True).stdout
    fields = dict(re.findall(r"^([a-z ]+):\s+(.+)$", shown, re.M))
    assert fields["id"] == "r1"
    assert fields["token"] == "alice (tok_alice)"
    assert (fields["client"], fields["session"]) == ("claude-code", "s-1")
    assert fields["provider"] == "openai (prv_openai, openai)"
    assert fields["tokens"] == "in 12, out 34, cache read 5, cache write 6"
    assert (fields["stop reason"], fields["partial"], fields["error"]) == ("tool_use", "yes", "-")
    # The prompt whole, its lines kept, marked as cut.
    prompt = "    What is the weather in Paris?\n    Answer in one word.\n    [truncated]\n"
    assert f"prompt:\n{prompt}" in shown
    # Each tool call: JSON arguments indented, cut ones as they came and marked.
    assert '  get_weather (id call_1)\n    {\n      "city": "Paris"\n    }\n' in shown
    assert '  write_file (id call_2)\n    {"path": "a.txt", "text": "ab\n    [truncated]\n' in shown
    assert "tool results (2):\n  call_0 error\n  call_9 ok\n" in shown
    assert "reasoning:\n    The user wants weather.\n" in shown

    document = json.loads(ctl(cp, "interceptions", "show", "r1", "--json", check=True).stdout)
    assert document["id"] == "r1" and document["prompt"] == PROMPT
    assert document["prompt_truncated"] is True and document["partial"] is True
    assert [c["name"] for c in document["tool_calls"]] == ["get_weather", "write_file"]
    assert document["tool_calls"][1]["arguments_truncated"] is True
    assert document["tool_results"][0] == {"tool_call_id": "call_0", "is_error": True}
    assert document["reasoning"] == "The user wants weather."


def test_unknown_ids_are_not_found(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    for command in (("interceptions", "show", "nope"), ("sessions", "show", "nope")):
        missing = ctl(cp, *command)
        assert missing.returncode == 1, (command, missing.stdout)
        assert missing.stdout == ""
        assert missing.stderr.startswith("error: NOT_FOUND: "), missing.stderr


def session_calls(now: datetime) -> list[usage_pb2.Interception]:
    """Session s-1: a prompt, the model's tool call, its result and the answer; reported
    out of order. Bob uses the same session id under his own token."""
    arguments = json.dumps({"dir": "d" * 300})
    listing = usage_pb2.ToolCall(id="c1", name="list_files", arguments=arguments)
    return [
        interception(
            "t3", 2 * MINUTE, now, tokens=(300, 30, 0, 0), client="claude-code", session_id="s-1",
            tool_results=[usage_pb2.ToolResult(tool_call_id="c1", is_error=True)],
            stop_reason="end_turn",
        ),
        interception(
            "t1", 9 * MINUTE, now, tokens=(100, 10, 0, 0), client="claude-code",
            session_id="s-1", prompt="tidy the repo\nplease", tool_calls=[listing],
            stop_reason="tool_use",
        ),
        interception(
            "t2", 5 * MINUTE, now, status=500, client="claude-code", session_id="s-1",
            error_message="overloaded",
        ),
        interception("b1", 7 * MINUTE, now, token="bob", client="codex", session_id="s-1"),
        interception("o1", MINUTE, now, client="codex", session_id="s-2", tokens=(1, 2, 0, 0)),
    ]  # fmt: skip


def test_sessions_list(controlplane: Controlplane) -> None:
    cp = controlplane
    report(cp, session_calls(datetime.now(UTC)), cp.secrets.bridged)

    table = ctl(cp, "sessions", "list", env=WIDE, check=True).stdout
    lines = table.splitlines()
    assert lines[0].split() == [
        "SESSION", "CLIENT", "TOKEN", "FIRST", "LAST", "CALLS", "IN", "OUT", "TOOLS", "ERRORS",
    ]  # fmt: skip
    by_token = {(line.split()[0], line.split()[2]): line.split() for line in lines[1:]}
    assert set(by_token) == {("s-2", "alice"), ("s-1", "alice"), ("s-1", "bob")}
    assert lines[1].split()[0] == "s-2"  # most recently active first
    assert by_token[("s-1", "alice")][5:] == ["3", "400", "40", "1", "1"]
    assert by_token[("s-1", "alice")][1] == "claude-code"

    document = json.loads(ctl(cp, "sessions", "list", "--client", "codex", "--json").stdout)
    assert set(document) == {"sessions", "next_cursor"}
    assert [(s["session_id"], s["token_name"]) for s in document["sessions"]] == [
        ("s-2", "alice"), ("s-1", "bob"),
    ]  # fmt: skip
    assert document["sessions"][0]["input_tokens"] == 1
    bobs = json.loads(ctl(cp, "sessions", "list", "--token", "bob", "--json").stdout)
    assert [(s["session_id"], s["interceptions"]) for s in bobs["sessions"]] == [("s-1", 1)]
    first = json.loads(ctl(cp, "sessions", "list", "--limit", "1", "--json").stdout)
    assert [s["session_id"] for s in first["sessions"]] == ["s-2"] and first["next_cursor"]


def test_session_timeline(controlplane: Controlplane) -> None:
    cp = controlplane
    report(cp, session_calls(datetime.now(UTC)), cp.secrets.bridged)

    narrow = {"COLUMNS": "80"}
    shown = ctl(cp, "sessions", "show", "s-1", "--token", "alice", env=narrow, check=True).stdout
    summary, *calls = shown.split("\n\n")
    assert summary.splitlines()[1].split()[:3] == ["s-1", "claude-code", "alice"]
    assert [call.split("(")[-1].split(")")[0] for call in calls] == ["t1", "t2", "t3"]  # in order
    t1, t2, t3 = (call.splitlines() for call in calls)
    assert t1[0].split()[1:] == ["gpt-4o", "200", "in", "100", "out", "10", "(t1)"]
    assert t1[1:3] == ["  prompt: tidy the repo", "          please"]
    assert t1[3].startswith('  tool call: list_files {"dir": "ddd') and t1[3].endswith("…")
    assert len(t1[3]) <= 80
    assert t1[4] == "  stop: tool_use"
    assert t2[0].split()[1:3] == ["gpt-4o", "500"] and "  error: overloaded" in t2
    assert t3[1:] == ["  tool result: c1 error", "  stop: end_turn"]

    # Without --token: every token's calls under that session id, each call with its token
    # (anyone may send any session id), one summary each.
    merged = ctl(cp, "sessions", "show", "s-1", env=WIDE, check=True).stdout
    summary, *calls = merged.split("\n\n")
    several = "2 tokens used this session id: each call shows its token"
    assert summary.splitlines()[-1] == several
    assert [c.splitlines()[0].split()[1:3] for c in calls] == [
        ["token", "alice"], ["token", "bob"], ["token", "alice"], ["token", "alice"],
    ]  # fmt: skip
    assert calls[1].splitlines()[0].endswith("(b1)")
    document = json.loads(ctl(cp, "sessions", "show", "s-1", "--json", check=True).stdout)
    assert sorted(s["token_name"] for s in document["sessions"]) == ["alice", "bob"]
    assert [i["id"] for i in document["interceptions"]] == ["t1", "b1", "t2", "t3"]
    assert document["interceptions"][0]["tool_calls"][0]["name"] == "list_files"

    first_two = json.loads(ctl(cp, "sessions", "show", "s-1", "--limit", "2", "--json").stdout)
    assert [i["id"] for i in first_two["interceptions"]] == ["t1", "b1"]


# A terminal takes these for commands: retitle the window, clear the screen, CSI (C1).
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m\x7f"
SHOWN = "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\x7f"
RAW_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_recorded_control_characters_are_shown_not_obeyed(controlplane: Controlplane) -> None:
    """Whoever calls through the gateway writes the records: every text in them may hold
    terminal escapes, which aibridgectl shows as \\xNN (keeping newlines and tabs in a
    block of text) and never writes to the terminal."""
    cp = controlplane
    e = ESCAPES
    record = interception(
        "evil", MINUTE, model=f"gpt{e}", client="curl",
        session_id="s-1", prompt=f"first{e}\n\tsecond\r", stop_reason=f"end{e}",
        error_message=f"boom{e}\nagain", reasoning=f"think{e}",
        tool_calls=[
            usage_pb2.ToolCall(id=f"c{e}", name=f"run{e}", arguments=f"not json {e}"),
            usage_pb2.ToolCall(id="c2", name="run", arguments=json.dumps({"cmd": e})),
        ],
        tool_results=[usage_pb2.ToolResult(tool_call_id=f"r{e}")],
    )  # fmt: skip
    record.user_agent = f"ua{e}"
    # A session id that cannot be looked up (control characters), but is listed.
    report(cp, [record, interception("odd", MINUTE, session_id=f"s{e}")], cp.secrets.bridged)

    outputs = {
        "list": ctl(cp, "interceptions", "list", env=WIDE, check=True).stdout,
        "show": ctl(cp, "interceptions", "show", "evil", check=True).stdout,
        "sessions": ctl(cp, "sessions", "list", env=WIDE, check=True).stdout,
        "timeline": ctl(cp, "sessions", "show", "s-1", env=WIDE, check=True).stdout,
        "json": ctl(cp, "interceptions", "show", "evil", "--json", check=True).stdout,
    }
    for name, stdout in outputs.items():
        assert not RAW_CONTROLS.search(stdout), (name, stdout)
    show = outputs["show"]
    fields = dict(re.findall(r"^([a-z ]+):\s+(.+)$", show, re.M))
    assert (fields["model"], fields["user agent"]) == (f"gpt{SHOWN}", f"ua{SHOWN}")
    assert (fields["error"], fields["stop reason"]) == (f"boom{SHOWN}\\x0aagain", f"end{SHOWN}")
    assert f"prompt:\n    first{SHOWN}\n    \tsecond\\x0d\n" in show
    assert f"  run{SHOWN} (id c{SHOWN})\n    not json {SHOWN}\n" in show
    assert '    {\n      "cmd": "\\u001b]0;owned\\u0007' in show  # JSON escapes its own
    assert f"  r{SHOWN} ok" in show and f"reasoning:\n    think{SHOWN}" in show
    assert f"gpt{SHOWN}" in outputs["list"] and f"first{SHOWN} \tsecond" not in outputs["list"]
    assert f"first{SHOWN} second" in outputs["list"]  # on one line
    assert f"s{SHOWN}" in outputs["sessions"]
    timeline = outputs["timeline"].splitlines()
    assert f"  prompt: first{SHOWN}" in timeline and f"  error: boom{SHOWN}" in timeline
    assert f"  tool call: run{SHOWN} not json {SHOWN}" in timeline
    assert json.loads(outputs["json"])["prompt"] == f"first{e}\n\tsecond\r"


def test_usage_by_client(controlplane: Controlplane) -> None:
    cp = controlplane
    report(cp, agent_calls(datetime.now(UTC)), cp.secrets.bridged)

    table = ctl(cp, "usage", "--by", "client", check=True).stdout
    got = rows(table)
    assert got["CLIENT"] == [
        "CLIENT", "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "CACHE_READ", "CACHE_WRITE", "COST",
    ]  # fmt: skip
    # gpt-4o: 40 input tokens at 2.5 USD per million, 25 output at 10.
    assert got["claude-code"] == ["claude-code", "2", "0", "40", "25", "0", "0", "$0.00035"]
    assert got["codex"][1:3] == ["1", "1"] and got["curl"][1:3] == ["1", "1"]
    assert got["TOTAL"][1:3] == ["4", "2"]

    document = json.loads(ctl(cp, "usage", "--by", "client", "--json", check=True).stdout)
    assert document["group_by"] == "client"
    assert {r["key"]: r["requests"] for r in document["rows"]} == {
        "claude-code": 2, "codex": 1, "curl": 1,
    }  # fmt: skip


def settings_json(cp: Controlplane) -> dict[str, Any]:
    listing = json.loads(ctl(cp, "settings", "list", "--json", check=True).stdout)
    return {s["key"]: s for s in listing["settings"]}


def test_settings_list_and_set_with_wait(controlplane: Controlplane, bridged: Bridged) -> None:
    cp = controlplane
    table = ctl(cp, "settings", "list", env=WIDE, check=True).stdout.splitlines()
    assert table[0].split() == ["KEY", "VALUE", "DEFAULT", "DESCRIPTION"]
    values = {line.split()[0]: line.split()[1:3] for line in table[1:]}
    assert values == {
        "record.prompts": ["on", "on"], "record.tool_calls": ["on", "on"],
        "record.reasoning": ["off", "off"], "record.max_text_bytes": ["32768", "32768"],
        "limits.redis_unavailable": ["open", "open"],
    }  # fmt: skip

    made = ctl(cp, "settings", "set", "record.prompts", "off", "--wait", check=True).stdout
    revision = printed_revision(made)
    assert made.splitlines() == [
        f"set record.prompts to off at revision {revision}",
        f"revision {revision} applied by every subscriber",
    ]
    status = cp.admin.GetStatus(admin_pb2.GetStatusRequest())
    (subscriber,) = [s for s in status.subscribers if s.role == "bridged"]
    assert subscriber.applied_version >= revision  # applied when the command returned

    listed = settings_json(cp)
    assert (listed["record.prompts"]["value"], listed["record.prompts"]["default_value"]) == (
        "off", "on",
    )  # fmt: skip
    assert listed["record.prompts"]["updated_at"] and listed["record.prompts"]["description"]

    response = json.loads(
        ctl(cp, "settings", "set", "record.max_text_bytes", "4096", "--json", check=True).stdout
    )
    assert response["revision"] == revision + 1
    assert response["setting"]["value"] == "4096"

    stale = ctl(cp, "settings", "set", "record.reasoning", "on", "--expect-revision", str(revision))
    assert stale.returncode == 1 and stale.stderr.startswith("error: ABORTED: "), stale.stderr
    for key, value in (("record.nothing", "on"), ("record.prompts", "maybe")):
        refused = ctl(cp, "settings", "set", key, value)
        assert refused.returncode == 1, refused.stdout
        assert refused.stderr.startswith("error: INVALID_ARGUMENT: "), refused.stderr
    assert settings_json(cp)["record.reasoning"]["value"] == "off"
    assert cp.admin.revision() == revision + 1
