"""The real Claude Code and Codex CLI, set up as the README says, through bridged and
through proxyd: each answers from the upstream, which sees the provider's key and only
the headers the gateway forwards, and each call is recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from aibridge.v1 import admin_pb2
from bridged.headers import FORWARDED_REQUEST_HEADERS, FORWARDED_REQUEST_PREFIXES
from mockupstream import MockUpstream, Seen
from tests.agents import AgentRun, claude_code, codex
from tests.conftest import UpstreamPKI
from tests.harness import Bridged, Controlplane, Proxyd, usage_requests, wait_until

ANTHROPIC_KEY = "sk-ant-agents-provider-key-0001"
OPENAI_KEY = "sk-openai-agents-provider-key-02"
CLIENTS_OWN_KEY = "sk-the-clients-own-key-000000003"
# What the gateway adds or sets itself, beside the client's allowlisted headers.
GATEWAY_HEADERS = {"authorization", "x-api-key", "host", "content-length", "accept-encoding"}


def forwarded_only(seen: list[Seen], gateway_token: str) -> None:
    for request in seen:
        for name in request.headers:
            assert (
                name in FORWARDED_REQUEST_HEADERS
                or name.startswith(FORWARDED_REQUEST_PREFIXES)
                or name in GATEWAY_HEADERS
            ), name
        assert gateway_token not in repr(request.headers)
        assert CLIENTS_OWN_KEY not in repr(request.headers)


def sent_directly(run: Callable[..., AgentRun], home: Path, path: str) -> set[str]:
    """The header names an agent sends when it talks to a provider itself."""
    direct = MockUpstream("direct").start()
    try:
        run("say hi", home, base_url=direct.url + path, token=CLIENTS_OWN_KEY)
        assert direct.seen, "the agent sent nothing"
        return {name for request in direct.seen for name in request.headers}
    finally:
        direct.stop()


def reached(upstream: MockUpstream) -> set[str]:
    return {name for request in upstream.seen for name in request.headers}


# What the agents send that the gateway replaces (their credential: the provider's key
# goes the provider's way) or that is about their own hop.
NOT_PASSED_ON = {"authorization", "x-api-key", "connection"}


def test_claude_code_and_codex_through_bridged(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream,
    upstream_b: MockUpstream, tmp_path: Path,
) -> None:  # fmt: skip
    admin = controlplane.admin
    admin.create_provider("claude", upstream_a.url, type="anthropic", keys=[ANTHROPIC_KEY])
    created = admin.create_provider("gpt", upstream_b.url + "/v1", keys=[OPENAI_KEY])
    admin.wait_applied(created.revision)

    run = claude_code(
        "say hi", tmp_path / "claude", base_url=bridged.provider_url("claude"), token=token
    )
    assert run.returncode == 0, run.output
    assert "hello from A" in run.output
    assert upstream_a.seen and {s.key for s in upstream_a.seen} == {ANTHROPIC_KEY}
    assert upstream_a.seen[-1].headers["anthropic-version"] == "2023-06-01"
    assert "claude-code" in upstream_a.seen[-1].headers["anthropic-beta"]
    forwarded_only(upstream_a.seen, token)
    # Everything Claude Code sends a provider itself reaches it through the gateway too.
    assert sent_directly(claude_code, tmp_path / "claude-direct", "") - reached(upstream_a) <= (
        NOT_PASSED_ON
    )

    run = codex(
        "say hi", tmp_path / "codex", base_url=bridged.provider_url("gpt") + "/v1", token=token
    )
    assert run.returncode == 0, run.output
    assert "hello from B" in run.output, run.output
    assert upstream_b.seen and {s.key for s in upstream_b.seen} == {OPENAI_KEY}
    assert upstream_b.seen[-1].headers["originator"] == "codex_exec"
    forwarded_only(upstream_b.seen, token)
    assert sent_directly(codex, tmp_path / "codex-direct", "/v1") - reached(upstream_b) <= (
        NOT_PASSED_ON
    )

    wait_until(
        lambda: usage_requests(controlplane, "claude") >= 1, what="Claude Code's call recorded"
    )
    wait_until(lambda: usage_requests(controlplane, "gpt") >= 1, what="Codex's call recorded")


def test_claude_code_and_codex_through_proxyd(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str, pki: UpstreamPKI,
    tls_upstream_a: MockUpstream, tls_upstream_b: MockUpstream, tmp_path: Path,
) -> None:  # fmt: skip
    """Tools pointed at the provider's own host, their own key in hand, with proxyd as
    HTTPS_PROXY: the key is swapped for the provider's on the way."""
    _bridged, proxyd = mitm
    admin = controlplane.admin
    anthropic_url = f"https://localhost:{tls_upstream_a.port}"
    openai_url = f"https://localhost:{tls_upstream_b.port}/v1"
    admin.create_provider("claude", anthropic_url, type="anthropic", keys=[ANTHROPIC_KEY])
    admin.wait_applied(admin.create_provider("gpt", openai_url, keys=[OPENAI_KEY]).revision)
    ca = str(proxyd.ca_path)
    proxy = {"HTTPS_PROXY": proxyd.proxy_url(token), "NO_PROXY": ""}

    # Node's variable for Claude Code; Codex is a native binary: CODEX_CA_CERTIFICATE.
    run = claude_code(
        "say hi", tmp_path / "claude", base_url=anthropic_url, token=CLIENTS_OWN_KEY,
        extra_env=proxy | {"NODE_EXTRA_CA_CERTS": ca},
    )  # fmt: skip
    assert run.returncode == 0, run.output
    assert "hello from A" in run.output
    assert {s.key for s in tls_upstream_a.seen} == {ANTHROPIC_KEY}
    forwarded_only(tls_upstream_a.seen, token)

    run = codex(
        "say hi", tmp_path / "codex", base_url=openai_url, token=CLIENTS_OWN_KEY,
        extra_env=proxy | {"CODEX_CA_CERTIFICATE": ca},
    )  # fmt: skip
    assert run.returncode == 0, run.output
    assert "hello from B" in run.output, run.output
    assert {s.key for s in tls_upstream_b.seen} == {OPENAI_KEY}
    forwarded_only(tls_upstream_b.seen, token)

    # Recorded as through bridged alone: each agent, its session, its prompt.
    for client, upstream, header in (
        ("claude-code", tls_upstream_a, "x-claude-code-session-id"),
        ("codex", tls_upstream_b, "session-id"),
    ):
        calls = session_calls(controlplane, client, 2)
        assert {c.session_id for c in calls} == {upstream.seen[-1].headers[header]}
        assert "say hi" in calls[0].prompt


def session_calls(cp: Controlplane, client: str, calls: int) -> list[admin_pb2.InterceptionRecord]:
    """The calls of the one session `client` was recorded under, once there are `calls`."""

    def recorded() -> list[admin_pb2.InterceptionRecord] | None:
        listed = cp.admin.ListSessions(
            admin_pb2.ListSessionsRequest(filter=admin_pb2.InterceptionFilter(client=client))
        )
        if len(listed.sessions) != 1 or listed.sessions[0].interceptions < calls:
            return None
        request = admin_pb2.GetSessionRequest(session_id=listed.sessions[0].session_id)
        return list(cp.admin.GetSession(request).interceptions)

    return wait_until(recorded, what=f"{client}'s session recorded")


def test_an_agent_loop_is_recorded_as_one_session_in_order(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream,
    upstream_b: MockUpstream, tmp_path: Path,
) -> None:  # fmt: skip
    """Each agent asks, the model calls tools, the agent sends their results back and the
    model answers: one session, under the id the agent sent, its calls in order."""
    admin = controlplane.admin
    admin.create_provider("claude", upstream_a.url, type="anthropic", keys=[ANTHROPIC_KEY])
    admin.wait_applied(
        admin.create_provider("gpt", upstream_b.url + "/v1", keys=[OPENAI_KEY]).revision
    )
    home = tmp_path / "claude"
    home.mkdir()
    (home / "notes.txt").write_text("the notes\n")
    # Two of Claude Code's own tools: a read that works, and one that fails.
    upstream_a.tool_calls = (
        ("Read", {"file_path": str(home / "notes.txt")}),
        ("Read", {"file_path": str(home / "missing.txt")}),
    )

    run = claude_code("read my notes", home, base_url=bridged.provider_url("claude"), token=token)
    assert run.returncode == 0, run.output
    assert "hello from A" in run.output
    sent = {
        s.headers["x-claude-code-session-id"] for s in upstream_a.seen if s.path == "/v1/messages"
    }
    assert len(sent) == 1, sent  # one session id for the whole run
    calls = session_calls(controlplane, "claude-code", 2)
    assert {c.session_id for c in calls} == sent
    asked = next(i for i, c in enumerate(calls) if c.tool_calls)
    assert "read my notes" in calls[asked].prompt
    assert [(t.id, t.name, json.loads(t.arguments)) for t in calls[asked].tool_calls] == [
        ("toolu_01", "Read", {"file_path": str(home / "notes.txt")}),
        ("toolu_02", "Read", {"file_path": str(home / "missing.txt")}),
    ]
    assert calls[asked].stop_reason == "tool_use"
    answered = calls[asked + 1]
    # Claude Code runs both at once and sends their results as they come.
    assert sorted((r.tool_call_id, r.is_error) for r in answered.tool_results) == [
        ("toolu_01", False), ("toolu_02", True),
    ]  # fmt: skip
    assert (answered.prompt, answered.stop_reason) == ("", "end_turn")

    run = codex(
        "say hi", tmp_path / "codex", base_url=bridged.provider_url("gpt") + "/v1", token=token
    )
    assert run.returncode == 0, run.output
    assert "hello from B" in run.output, run.output
    sent = {s.headers["session-id"] for s in upstream_b.seen if s.path == "/v1/responses"}
    assert len(sent) == 1, sent
    calls = session_calls(controlplane, "codex", 2)
    assert {c.session_id for c in calls} == sent
    assert [c.prompt for c in calls] == ["say hi", ""]
    assert [t.id for t in calls[0].tool_calls] == ["call_1", "call_2"]
    assert [r.tool_call_id for r in calls[1].tool_results] == ["call_1", "call_2"]
    assert [c.stop_reason for c in calls] == ["completed", "completed"]
