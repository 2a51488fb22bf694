"""The real Claude Code and Codex CLI meet the gateway's refusals as a user would: a
spent budget (403) stops them at once with the gateway's reason, rather than having them
retry, and the provider never sees the call."""

from __future__ import annotations

from pathlib import Path

from mockupstream import MockUpstream
from tests.agents import claude_code, codex
from tests.governance import create_token, create_user, set_limits
from tests.harness import Bridged, Controlplane

ANTHROPIC_KEY = "sk-ant-agents-provider-key-0001"
OPENAI_KEY = "sk-openai-agents-provider-key-02"


def test_the_agents_stop_at_a_spent_budget_and_say_why(
    controlplane: Controlplane, bridged: Bridged, upstream_a: MockUpstream,
    upstream_b: MockUpstream, tmp_path: Path,
) -> None:  # fmt: skip
    admin = controlplane.admin
    admin.create_provider("claude", upstream_a.url, type="anthropic", keys=[ANTHROPIC_KEY])
    admin.create_provider("gpt", upstream_b.url + "/v1", keys=[OPENAI_KEY])
    create_user(controlplane, "dana")
    token = create_token(controlplane, "dana-laptop", user="dana")
    set_limits(controlplane, "user:dana", monthly_budget_usd=0)

    # A 403 is not retried: each agent gives up within its timeout, saying why.
    run = claude_code(
        "say hi", tmp_path / "claude", base_url=bridged.provider_url("claude"), token=token
    )
    assert run.returncode != 0, run.output
    assert "budget of user:dana" in run.output, run.output
    run = codex(
        "say hi", tmp_path / "codex", base_url=bridged.provider_url("gpt") + "/v1", token=token
    )
    assert run.returncode != 0, run.output
    assert "budget of user:dana" in run.output, run.output
    assert not upstream_a.seen and not upstream_b.seen
