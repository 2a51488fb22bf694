"""The real Claude Code and Codex CLI, set up as the README says, through bridged and
through proxyd: each answers from the upstream, which sees the provider's key and only
the headers the gateway forwards, and each call is recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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

    wait_until(
        lambda: usage_requests(controlplane, "claude") >= 1, what="Claude Code's call recorded"
    )
    wait_until(lambda: usage_requests(controlplane, "gpt") >= 1, what="Codex's call recorded")
