"""bridged --otel-endpoint: a span per request reaches an OTLP/HTTP collector (the
receiver the test starts). Given a caller's traceparent, the span continues its trace and
the upstream gets the span's context in its place; an intercepted call's span carries
the GenAI attributes (provider, models, token counts); a collector that is down changes
nothing for the callers, and its failures do not flood the log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import httpx
import openai
import pytest
from aiohttp import web
from opentelemetry.trace import Span

from aibridge.v1 import admin_pb2, snapshot_pb2, usage_pb2
from bridged import config as bridged_config
from bridged.app import PREFIX
from bridged.bodies import RequestBodies
from bridged.forward import Exchange, Forwarder
from bridged.keys import KeyHealth
from bridged.reload import LiveRouteTable
from bridged.tracing import Tracing
from bridged.upstreams import UpstreamPools
from bridged.usage import Usage
from bridged.usage_reporter import UsageReporter
from common.tokens import token_digest
from mockupstream import ANTHROPIC_USAGE, OPENAI_USAGE, RESPONSES_USAGE, MockUpstream, Seen
from tests.harness import Bridged, Controlplane, Secrets, free_port, wait_until
from tests.otlp_receiver import OTLPReceiver, ReceivedSpan

OPENAI_KEY = "sk-tracing-openai-key-0001"
ANTHROPIC_KEY = "sk-ant-tracing-key-0002"
BROKEN_KEY = "sk-tracing-key-the-upstream-fails-0003"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
REQUEST_ID = "x-aibridge-request-id"
CHAT = {"model": "gpt-test", "messages": MESSAGES}


@dataclass
class Traced:
    """bridged with --otel-endpoint on the receiver, before providers "oai" (OpenAI, on
    upstream A), "ant" (Anthropic, on B) and "broken" (OpenAI, on A, whose key A answers
    500)."""

    controlplane: Controlplane
    secrets: Secrets
    bridged: Bridged
    receiver: OTLPReceiver
    token: str
    openai_upstream: MockUpstream
    anthropic_upstream: MockUpstream

    def openai(self) -> openai.OpenAI:
        url = f"{self.bridged.provider_url('oai')}/v1"
        return openai.OpenAI(base_url=url, api_key=self.token, timeout=15, max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        url = self.bridged.provider_url("ant")
        return anthropic.Anthropic(base_url=url, api_key=self.token, timeout=15, max_retries=0)

    def bridged_to(self, endpoint: str, workdir: Path) -> Bridged:
        """Another bridged on the same controlplane, sending its spans to `endpoint`."""
        return Bridged(
            [self.controlplane.address], workdir, self.secrets,
            extra_args=("--otel-endpoint", endpoint),
        ).start()  # fmt: skip

    def post(self, bridged: Bridged, provider: str, headers: dict[str, str]) -> httpx.Response:
        """A chat completion sent with httpx: no SDK headers, only `headers`."""
        return httpx.post(
            f"{bridged.provider_url(provider)}/v1/chat/completions", json=CHAT, timeout=15,
            headers={"Authorization": f"Bearer {self.token}", **headers},
        )  # fmt: skip

    def span_of(self, request_id: str) -> ReceivedSpan:
        return self._the_span(lambda s: s.attributes["aibridge.request_id"] == request_id)

    def span_in(self, trace_id: str) -> ReceivedSpan:
        return self._the_span(lambda s: s.trace_id == trace_id)

    def _the_span(self, matches: Callable[[ReceivedSpan], bool]) -> ReceivedSpan:
        found = wait_until(lambda: [s for s in self.receiver.spans if matches(s)], what="a span")
        assert len(found) == 1, found
        return found[0]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """Tracing keeps nothing in the database: one SQLite controlplane serves the module."""
    directory = tmp_path_factory.mktemp("tracing")
    secrets = Secrets()
    with contextlib.ExitStack() as stack:
        cp = Controlplane(f"sqlite:///{directory / 'aibridge.db'}", directory, secrets).start()
        stack.callback(cp.stop)
        receiver = OTLPReceiver().start()
        stack.callback(receiver.stop)
        upstream_a = MockUpstream("A", key_status={BROKEN_KEY: 500}).start()
        stack.callback(upstream_a.stop)
        upstream_b = MockUpstream("B").start()
        stack.callback(upstream_b.stop)
        bridged = Bridged(
            [cp.address], directory, secrets, extra_args=("--otel-endpoint", receiver.url)
        ).start()
        stack.callback(bridged.stop)
        cp.admin.create_provider("oai", upstream_a.url + "/v1", keys=[OPENAI_KEY])
        cp.admin.create_provider("broken", upstream_a.url + "/v1", keys=[BROKEN_KEY])
        cp.admin.create_provider("ant", upstream_b.url, type="anthropic", keys=[ANTHROPIC_KEY])
        created = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name="tester"))
        cp.admin.wait_applied(created.revision)
        yield Traced(cp, secrets, bridged, receiver, created.token, upstream_a, upstream_b)


@pytest.fixture(autouse=True)
def no_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_CUSTOM_HEADERS", "OPENAI_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)  # the SDKs would pick them up


SESSION_HEADER = "x-aibridge-session-id"  # any client may name its session so


def caller_context() -> tuple[str, str, dict[str, str]]:
    """A caller's trace id, span id, and the W3C headers that carry them."""
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    headers = {
        "traceparent": f"00-{trace_id}-{span_id}-01",
        "tracestate": "caller=kept",
        "baggage": "team=tracing",
    }
    return trace_id, span_id, headers


def trace_headers(upstream: MockUpstream, trace_id: str) -> dict[str, list[str]]:
    """The trace headers of the one request `upstream` saw in trace `trace_id`."""
    (seen,) = [s for s in upstream.seen if trace_id in s.headers.get("traceparent", "")]
    return _trace_headers(seen)


def _trace_headers(seen: Seen) -> dict[str, list[str]]:
    names = ("traceparent", "tracestate", "baggage")
    return {n: [v for k, v in seen.header_list if k == n] for n in names}


@dataclass(frozen=True)
class Call:
    provider: str
    gen_ai_provider: str
    model: str
    tokens: tuple[int, int]  # input, output: the mock's usage
    finish: str  # the mock's stop reason, as the API names it
    send: Callable[[Traced, dict[str, str]], str]  # the text the SDK got


def chat(t: Traced, headers: dict[str, str]) -> str:
    answer = t.openai().chat.completions.create(
        model="gpt-test", messages=MESSAGES, extra_headers=headers
    )
    return answer.choices[0].message.content or ""


def chat_streamed(t: Traced, headers: dict[str, str]) -> str:
    stream = t.openai().chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
        extra_headers=headers,
    )  # fmt: skip
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def responses_streamed(t: Traced, headers: dict[str, str]) -> str:
    events = t.openai().responses.create(
        model="gpt-test", input="hi", stream=True, extra_headers=headers
    )
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def messages(t: Traced, headers: dict[str, str]) -> str:
    answer = t.anthropic().messages.create(
        model="claude-test", max_tokens=10, messages=MESSAGES, extra_headers=headers
    )
    return "".join(block.text for block in answer.content if block.type == "text")


def messages_streamed(t: Traced, headers: dict[str, str]) -> str:
    with t.anthropic().messages.stream(
        model="claude-test", max_tokens=10, messages=MESSAGES, extra_headers=headers
    ) as stream:
        return "".join(stream.text_stream)


CHAT_TOKENS = (OPENAI_USAGE["prompt_tokens"], OPENAI_USAGE["completion_tokens"])
CALLS = {
    "chat": Call("oai", "openai", "gpt-test", CHAT_TOKENS, "stop", chat),
    "chat-streamed": Call("oai", "openai", "gpt-test", CHAT_TOKENS, "stop", chat_streamed),
    "responses-streamed": Call(
        "oai",
        "openai",
        "gpt-test",
        (RESPONSES_USAGE["input_tokens"], RESPONSES_USAGE["output_tokens"]),
        "completed",
        responses_streamed,
    ),  # fmt: skip
    "messages": Call(
        "ant",
        "anthropic",
        "claude-test",
        (ANTHROPIC_USAGE["input_tokens"], ANTHROPIC_USAGE["output_tokens"]),
        "end_turn",
        messages,
    ),  # fmt: skip
    "messages-streamed": Call(
        "ant",
        "anthropic",
        "claude-test",
        (ANTHROPIC_USAGE["input_tokens"], ANTHROPIC_USAGE["output_tokens"]),
        "end_turn",
        messages_streamed,
    ),  # fmt: skip
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_an_intercepted_call_is_a_genai_span_in_the_callers_trace(
    traced: Traced, call: Call
) -> None:
    upstream = traced.anthropic_upstream if call.provider == "ant" else traced.openai_upstream
    trace_id, caller_span, headers = caller_context()
    session = f"session-{trace_id[:8]}"

    assert call.send(traced, headers | {SESSION_HEADER: session}) == f"hello from {upstream.name}"

    span = traced.span_in(trace_id)
    assert span.parent_span_id == caller_span
    # The upstream's parent is our span, in the caller's trace: one traceparent, ours.
    assert trace_headers(upstream, trace_id) == {
        "traceparent": [f"00-{trace_id}-{span.span_id}-01"],
        "tracestate": ["caller=kept"],
        "baggage": ["team=tracing"],
    }
    assert (span.name, span.kind, span.error) == (f"chat {call.model}", "CLIENT", False)
    attributes = dict(span.attributes)
    assert re.fullmatch("[0-9a-f]{32}", attributes.pop("aibridge.request_id"))
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": call.gen_ai_provider,
        "gen_ai.request.model": call.model,
        "gen_ai.response.model": f"{call.model}-2026",
        "gen_ai.usage.input_tokens": call.tokens[0],
        "gen_ai.usage.output_tokens": call.tokens[1],
        "gen_ai.response.finish_reasons": [call.finish],
        "gen_ai.conversation.id": session,
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "server.address": "127.0.0.1",
        "server.port": upstream.port,
        "aibridge.provider": call.provider,
        "aibridge.token": "tester",
    }
    assert span.resource["service.name"] == "aibridge-bridged"
    assert span.resource["service.instance.id"].startswith("bridged-")
    # Given its base URL, the collector is sent spans on its traces path.
    assert traced.receiver.paths == {"/v1/traces"}


def test_a_call_without_trace_context_starts_a_trace_the_upstream_continues(
    traced: Traced,
) -> None:
    answer = traced.post(traced.bridged, "oai", {})
    assert answer.status_code == 200

    span = traced.span_of(answer.headers[REQUEST_ID])
    assert span.parent_span_id == "" and re.fullmatch("[0-9a-f]{32}", span.trace_id)
    sent = trace_headers(traced.openai_upstream, span.trace_id)
    assert (sent["tracestate"], sent["baggage"]) == ([], [])
    (traceparent,) = sent["traceparent"]
    # Sampled; a new trace's id is random, and says so (W3C level 2 flag 02).
    assert traceparent == f"00-{span.trace_id}-{span.span_id}-03"


def test_a_pass_through_call_is_a_plain_http_span(traced: Traced) -> None:
    trace_id, caller_span, headers = caller_context()

    assert [m.id for m in traced.openai().models.list(extra_headers=headers)] == ["model-A"]

    span = traced.span_in(trace_id)
    assert span.parent_span_id == caller_span
    assert (span.name, span.kind, span.error) == ("GET", "CLIENT", False)
    assert not [name for name in span.attributes if name.startswith("gen_ai.")]
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["aibridge.provider"] == "oai"
    assert trace_headers(traced.openai_upstream, trace_id)["traceparent"] == [
        f"00-{trace_id}-{span.span_id}-01"
    ]


def test_a_failed_call_is_an_error_span(traced: Traced) -> None:
    answer = traced.post(traced.bridged, "broken", caller_context()[2])
    assert answer.status_code == 500

    span = traced.span_of(answer.headers[REQUEST_ID])
    assert span.error
    assert span.attributes["error.type"] == "500"
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["gen_ai.request.model"] == "gpt-test"
    assert "gen_ai.usage.input_tokens" not in span.attributes  # no answer, no usage


def test_stopping_bridged_delivers_the_spans_of_the_last_requests(
    traced: Traced, tmp_path: Path
) -> None:
    bridged = traced.bridged_to(f"{traced.receiver.url}/v1/traces", tmp_path)
    try:
        answer = traced.post(bridged, "oai", {})
        assert answer.status_code == 200
    finally:
        bridged.stop()
    assert bridged.proc is not None and bridged.proc.returncode == 0, bridged.log()
    traced.span_of(answer.headers[REQUEST_ID])


def spans_counted(bridged: Bridged, result: str) -> float:
    found = re.search(
        rf'^aibridge_bridged_trace_spans_total{{result="{result}"}} (\S+)$', bridged.metrics(), re.M
    )
    return float(found.group(1)) if found else 0.0


def test_a_collector_that_is_down_changes_nothing_for_the_callers(
    traced: Traced, tmp_path: Path
) -> None:
    bridged = traced.bridged_to(f"http://127.0.0.1:{free_port()}/v1/traces", tmp_path)
    try:
        for sent in (3, 6):  # two batches, at least: two failed exports
            for _ in range(3):
                answer = traced.post(bridged, "oai", caller_context()[2])
                assert answer.status_code == 200
                assert answer.json()["choices"][0]["message"]["content"] == "hello from A"
            wait_until(
                lambda: spans_counted(bridged, "failed") >= sent,  # noqa: B023
                what=f"{sent} spans failed",
            )
        assert spans_counted(bridged, "exported") == 0
    finally:
        bridged.stop()
    assert bridged.proc is not None and bridged.proc.returncode == 0, bridged.log()
    # The SDK speaks of each failed export (and each retry); the log, once a minute.
    said = [line for line in bridged.log().splitlines() if "opentelemetry" in line]
    assert len(said) == 1, said


class StartFails(Tracing):
    def start(self, request: web.Request, x: Exchange) -> Span:
        raise RuntimeError("the tracer broke")


class EndFails(Tracing):
    @staticmethod
    def end_span(
        span: Span, status: int, usage: Usage | None, finish_reasons: Sequence[str],
        session_id: str = "",
    ) -> None:  # fmt: skip
        raise RuntimeError("the tracer broke")


@pytest.mark.parametrize(
    ("broken", "said"), [(StartFails, "not traced"), (EndFails, "span of request")],
    ids=["start", "end"],
)  # fmt: skip
def test_a_tracer_that_fails_fails_neither_the_call_nor_its_record(
    upstream_a: MockUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    broken: type[Tracing], said: str,
) -> None:  # fmt: skip
    """bridged's request path in this process, with a tracer that raises as a span starts
    or ends: the caller gets its answer, the body it sent is no longer held, and the usage
    record of the call is made (and the log says why there is no span)."""
    config = bridged_config.parse(["--state-dir", str(tmp_path)], {})
    token = "abt_" + os.urandom(16).hex()
    provider = snapshot_pb2.SnapshotProvider(
        id="prv_1", name="oai", type="openai", enabled=True, base_url=upstream_a.url + "/v1",
        keys=[snapshot_pb2.SnapshotKey(id="key_1", secret=OPENAI_KEY, hint="…0001")],
    )  # fmt: skip
    verifier = snapshot_pb2.TokenVerifier(id="tok_1", name="tester", sha256=token_digest(token))
    snapshot = snapshot_pb2.ProviderSnapshot(version=1, providers=[provider], tokens=[verifier])

    async def call() -> tuple[int, str, int, list[usage_pb2.Interception]]:
        pools = UpstreamPools(config.connect_timeout, config.idle_read_timeout, None)
        keys = KeyHealth(config.default_cooldown, config.unauthorized_cooldown)
        state = LiveRouteTable(pools, keys)
        state.apply(snapshot)
        reporter = UsageReporter(
            ("127.0.0.1:1",), "unused", None, batch_size=config.usage_batch_size,
            flush_interval=config.usage_flush_interval, capacity=config.usage_buffer,
        )  # fmt: skip  # never run: its buffer is read
        bodies = RequestBodies(
            config.max_body_bytes, config.max_buffered_bytes, config.keepalive_timeout
        )
        tracing = broken(f"http://127.0.0.1:{free_port()}/v1/traces", "test")
        app = web.Application()
        forwarder = Forwarder(state, pools, keys, reporter, bodies, tracing)
        app.router.add_route("*", PREFIX + "/{provider}/{tail:.*}", forwarder.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with (
                aiohttp.ClientSession() as client,
                client.post(
                    f"http://127.0.0.1:{port}{PREFIX}/oai/v1/chat/completions", json=CHAT,
                    headers={"Authorization": f"Bearer {token}"},
                ) as answer,
            ):  # fmt: skip
                status, text = answer.status, await answer.text()
        finally:
            await runner.cleanup()  # waits for the handler, whose record is then made
            await tracing.close()
            await pools.close()
        return status, text, bodies.held, reporter.take_pending()

    status, text, held, records = asyncio.run(call())
    assert status == 200 and "hello from A" in text
    assert held == 0
    assert [(r.provider_name, r.status, r.model) for r in records] == [
        ("oai", 200, "gpt-test-2026")
    ]
    assert said in caplog.text


def test_the_endpoint_is_the_collectors_base_url_or_its_traces_url(tmp_path: Path) -> None:
    def endpoint(argv: list[str], env: dict[str, str]) -> str | None:
        return bridged_config.parse(["--state-dir", str(tmp_path), *argv], env).otel_endpoint

    assert endpoint([], {}) is None
    for given, used in (
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example.com/otlp", "https://otel.example.com/otlp/v1/traces"),
        ("http://collector:4318/v1/traces", "http://collector:4318/v1/traces"),
    ):
        assert endpoint(["--otel-endpoint", given], {}) == used
        assert endpoint([], {"AIBRIDGE_OTEL_ENDPOINT": given}) == used


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("collector:4318", "expected an http:// or https:// URL"),
        ("http://collector:99999", "expected an http:// or https:// URL"),
        ("http://user:secret@collector:4318", "no credentials in the URL"),
    ],
)
def test_a_bad_endpoint_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str, says: str
) -> None:
    with pytest.raises(SystemExit) as exit:
        bridged_config.parse(["--state-dir", str(tmp_path), "--otel-endpoint", given], {})
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "secret" not in err, err
