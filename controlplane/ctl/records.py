"""Interceptions for a reader: one record whole (`interceptions show`), or as a step of
a session's timeline (`sessions show`)."""

from __future__ import annotations

import json
import textwrap

from aibridge.v1 import admin_pb2, usage_pb2
from controlplane.ctl.output import (
    cost_text,
    fmt_time,
    key_values,
    one_line,
    printable,
    yes_no,
)

TRUNCATED = "[truncated]"
INDENT = "    "


def status_text(record: admin_pb2.InterceptionRecord) -> str:
    # 0: the call got no answer (upstream unreachable, client gone).
    return str(record.status) if record.status else "-"


def token_text(record: admin_pb2.InterceptionRecord | admin_pb2.SessionSummary) -> str:
    return record.token_name or record.token_id or "-"


def marked(text: str, truncated: bool) -> str:
    """A block of recorded text, safe to print, its cut marked."""
    text = printable(text, lines=True)
    return f"{text}\n{TRUNCATED}" if truncated else text


def pretty_arguments(call: usage_pb2.ToolCall) -> str:
    """The arguments indented when they are JSON (a cut text is not), else as they came."""
    try:
        text = json.dumps(json.loads(call.arguments), indent=2, ensure_ascii=False)
    except ValueError:
        text = call.arguments
    return marked(text, call.arguments_truncated)


def tool_call_line(call: usage_pb2.ToolCall, width: int) -> str:
    return one_line(f"{call.name} {call.arguments}", width)


def tool_result_text(result: usage_pb2.ToolResult) -> str:
    return f"{printable(result.tool_call_id)} {'error' if result.is_error else 'ok'}"


def _about(record: admin_pb2.InterceptionRecord) -> list[tuple[str, str]]:
    provider = f"{record.provider_name or '-'} ({record.provider_id}, {record.provider_type})"
    return [
        ("id", record.id),
        ("started", fmt_time(record, "started_at")),
        ("token", f"{token_text(record)} ({record.token_id or '-'})"),
        ("user", f"{record.user_name} ({record.user_id})" if record.user_id else "-"),
        ("client", record.client or "-"),
        ("session", record.session_id or "-"),
        ("user agent", record.user_agent or "-"),
        ("provider", provider),
        ("model", record.model or "-"),
        ("route", record.route or "-"),
        ("status", status_text(record)),
        ("streaming", yes_no(record.streaming)),
        (
            "tokens",
            f"in {record.input_tokens}, out {record.output_tokens}, cache read "
            f"{record.cache_read_tokens}, cache write {record.cache_write_tokens}",
        ),
        ("cost", cost_text(record) if record.HasField("cost_usd") else "- (no price)"),
        ("time", f"first byte {record.ttfb_ms:g} ms, total {record.duration_ms:g} ms"),
        ("stop reason", record.stop_reason or "-"),
        ("error", record.error_message or "-"),
        ("partial", yes_no(record.partial)),
    ]


def interception_text(record: admin_pb2.InterceptionRecord) -> str:
    """The whole record: who, what, when, then its texts in full."""
    parts = [key_values(_about(record))]
    prompt = marked(record.prompt, record.prompt_truncated)
    parts.append("prompt:\n" + textwrap.indent(prompt, INDENT) if prompt else "prompt: -")
    if record.tool_calls:
        calls = [
            f"  {printable(f'{c.name} (id {c.id})')}\n"
            + textwrap.indent(pretty_arguments(c), INDENT)
            for c in record.tool_calls
        ]
        parts.append(f"tool calls ({len(record.tool_calls)}):\n" + "\n".join(calls))
    if record.tool_results:
        results = [f"  {tool_result_text(r)}" for r in record.tool_results]
        parts.append(f"tool results ({len(record.tool_results)}):\n" + "\n".join(results))
    reasoning = marked(record.reasoning, record.reasoning_truncated)
    if reasoning:
        parts.append("reasoning:\n" + textwrap.indent(reasoning, INDENT))
    return "\n\n".join(parts)


def _labelled(label: str, text: str) -> str:
    """`  label: first line`, the other lines under the first."""
    head = f"  {label}: "
    first, *rest = text.splitlines() or [""]
    return "\n".join([head + first, *(" " * len(head) + line for line in rest)])


def timeline_entry(record: admin_pb2.InterceptionRecord, width: int, token: bool = False) -> str:
    """One call of a session: when (and with which `token`, when several used the session
    id), what, its cost, then what went in and came out."""
    who = f"token {token_text(record)}  " if token else ""
    head = (
        f"{fmt_time(record, 'started_at')}  {who}{record.model or '-'}  {status_text(record)}  "
        f"in {record.input_tokens} out {record.output_tokens}  ({record.id})"
    )
    lines = [printable(head)]
    if record.prompt:
        lines.append(_labelled("prompt", marked(record.prompt, record.prompt_truncated)))
    lines += [_labelled("tool result", tool_result_text(r)) for r in record.tool_results]
    room = width - len("  tool call: ")
    lines += [_labelled("tool call", tool_call_line(c, room)) for c in record.tool_calls]
    if record.error_message:
        lines.append(_labelled("error", printable(record.error_message, lines=True)))
    if record.stop_reason:
        lines.append(_labelled("stop", printable(record.stop_reason)))
    return "\n".join(lines)
