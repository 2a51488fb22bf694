"""A disabled provider is refused at once, in a way no client retries (403), and its host
never becomes a tunnel to the provider that would bypass the gateway."""

from __future__ import annotations

from pathlib import Path

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream
from tests.agents import claude_code, codex
from tests.conftest import UpstreamPKI, proxyd_before_bridged
from tests.harness import Bridged, Controlplane, Proxyd, Secrets
from tests.proxy_client import Reply, request_through

KEY = "sk-disabled-provider-key-0000001"
CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}


def test_claude_code_and_codex_stop_at_once_on_a_disabled_provider(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream,
    tmp_path: Path,
) -> None:  # fmt: skip
    admin = controlplane.admin
    admin.create_provider("claude", upstream_a.url, type="anthropic", keys=[KEY], disabled=True)
    created = admin.create_provider("gpt", upstream_a.url + "/v1", keys=[KEY], disabled=True)
    admin.wait_applied(created.revision)

    # A 503 (overloaded) made Claude Code retry silently for minutes.
    run = claude_code(
        "say hi", tmp_path / "claude", base_url=bridged.provider_url("claude"), token=token
    )
    assert run.returncode != 0, run.output
    assert "provider 'claude' is disabled" in run.output, run.output
    assert run.seconds < 10, f"Claude Code took {run.seconds:.1f}s to give up"

    # Codex retries any failed turn a few times, then prints the gateway's message.
    run = codex("say hi", tmp_path / "codex", base_url=bridged.provider_url("gpt") + "/v1",
                token=token)  # fmt: skip
    assert run.returncode != 0, run.output
    assert "403" in run.output and "provider 'gpt' is disabled" in run.output, run.output
    assert run.seconds < 15, f"Codex took {run.seconds:.1f}s to give up"

    assert upstream_a.seen == []


def test_a_disabled_providers_host_stays_intercepted(
    controlplane: Controlplane, token: str, tmp_path: Path, secrets: Secrets,
    pki: UpstreamPKI, tls_upstream_a: MockUpstream,
) -> None:  # fmt: skip
    """With loopback tunnels allowed, a host that proxyd stops intercepting would be
    reachable directly, with the client's own key and no record."""
    loopback_tunnels = ("--allow-private-cidrs", "127.0.0.0/8",
                        "--tunnel-ports", str(tls_upstream_a.port))  # fmt: skip
    with proxyd_before_bridged(controlplane, tmp_path, secrets, pki, loopback_tunnels) as pair:
        _bridged, proxyd = pair
        admin = controlplane.admin
        host = f"localhost:{tls_upstream_a.port}"
        base_url = f"https://{host}/v1"
        admin.wait_applied(admin.create_provider("llm", base_url, keys=[KEY]).revision)
        assert post_through(proxyd, host, token, proxyd.ca_path).status == 200

        disable = admin_pb2.UpdateProviderRequest(ref="llm", enabled=False)
        admin.wait_applied(admin.UpdateProvider(disable).revision)
        # Still decrypted by proxyd (its CA verifies the leaf), and refused as disabled.
        reply = post_through(proxyd, host, token, proxyd.ca_path)
        assert reply.status == 403, reply.body
        assert reply.json()["error"]["code"] == "provider_disabled"
        assert "'llm'" in reply.json()["error"]["message"]
        assert len(tls_upstream_a.seen) == 1

        # An enabled provider on the same host wins over the disabled one, whatever the
        # names' order.
        created = admin.create_provider("zz-enabled", base_url, keys=[KEY])
        admin.wait_applied(created.revision)
        assert post_through(proxyd, host, token, proxyd.ca_path).status == 200
        assert len(tls_upstream_a.seen) == 2
        status = admin.GetStatus(admin_pb2.GetStatusRequest())
        assert not [s for s in status.subscribers if s.skipped], status

        # Deleted providers' hosts are ordinary hosts again: tunnelled, end to end with the
        # upstream's own certificate.
        for name in ("llm", "zz-enabled"):
            deleted = admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref=name))
        admin.wait_applied(deleted.revision)
        assert post_through(proxyd, host, token, pki.ca.cert_path).status == 200
        assert len(tls_upstream_a.seen) == 3


def post_through(proxyd: Proxyd, host: str, token: str, ca: Path) -> Reply:
    """A chat completion over a fresh CONNECT, trusting `ca` for the TLS inside."""
    return request_through(proxyd.port, host, token, ca, "POST", "/v1/chat/completions", CHAT)
