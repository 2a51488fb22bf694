"""What bridged records follows the gateway's settings, changed at run time: after
`aibridgectl settings set KEY VALUE --wait` returns, the very next call is recorded the
new way, with no restart."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import grpc
from anthropic.types import ToolParam

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream, replies
from tests.harness import Bridged, Controlplane, ctl, wait_until

ANTHROPIC_KEY = "sk-ant-recording-settings-0001"
TOOLS: list[ToolParam] = [
    {"name": name, "description": name, "input_schema": {"type": "object"}}
    for name, _ in replies.TOOL_CALLS
]
PROMPT = "é" * 20_000  # 40,000 bytes of UTF-8: more than the default 32 KiB


def call(cp: Controlplane, bridged: Bridged, token: str) -> admin_pb2.InterceptionRecord:
    """One agent turn (thinking, then tool calls) through bridged; its record, once stored."""
    client = anthropic.Anthropic(base_url=bridged.provider_url("claude"), api_key=token)
    raw = client.messages.with_raw_response.create(
        model="claude-test", max_tokens=2048, tools=TOOLS,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": PROMPT}],
    )  # fmt: skip
    assert raw.http_response.status_code == 200
    request_id = raw.headers["x-aibridge-request-id"]
    return wait_until(lambda: _record(cp, request_id), what="the record")


def _record(cp: Controlplane, request_id: str) -> admin_pb2.InterceptionRecord | None:
    try:
        return cp.admin.GetInterception(admin_pb2.GetInterceptionRequest(id=request_id))
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def set_and_wait(cp: Controlplane, key: str, value: str) -> None:
    ctl(cp, "settings", "set", key, value, "--wait", check=True)


def recorded(record: admin_pb2.InterceptionRecord) -> dict[str, Any]:
    return {
        "prompt bytes": len(record.prompt.encode()),
        "prompt truncated": record.prompt_truncated,
        "tool calls": [(t.id, t.name, json.loads(t.arguments)) for t in record.tool_calls],
        "reasoning": record.reasoning,
        "partial": record.partial,
    }


def test_settings_changed_at_run_time_apply_to_the_next_call(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream
) -> None:
    admin = controlplane.admin
    created = admin.create_provider(
        "claude", upstream_a.url, type="anthropic", keys=[ANTHROPIC_KEY]
    )
    admin.wait_applied(created.revision)
    calls = [(f"toolu_0{n}", name, args) for n, (name, args) in enumerate(replies.TOOL_CALLS, 1)]

    # The defaults: the prompt cut to 32 KiB, tool calls whole, no reasoning.
    assert recorded(call(controlplane, bridged, token)) == {
        "prompt bytes": 32768, "prompt truncated": True, "tool calls": calls, "reasoning": "",
        "partial": True,
    }  # fmt: skip

    set_and_wait(controlplane, "record.reasoning", "on")
    set_and_wait(controlplane, "record.max_text_bytes", "1024")
    assert recorded(call(controlplane, bridged, token)) == {
        "prompt bytes": 1024, "prompt truncated": True, "tool calls": calls,
        "reasoning": "\n\n".join(replies.REASONING), "partial": True,
    }  # fmt: skip

    set_and_wait(controlplane, "record.prompts", "off")
    set_and_wait(controlplane, "record.tool_calls", "off")
    assert recorded(call(controlplane, bridged, token)) == {
        "prompt bytes": 0, "prompt truncated": False, "tool calls": [],
        "reasoning": "\n\n".join(replies.REASONING), "partial": False,
    }  # fmt: skip
