"""A local stand-in for the LLM providers: answers like OpenAI (chat completions,
responses, models) and Anthropic (messages, count_tokens), streaming or not, and
records every request it sees. A request that offers tools (and is not answering them)
gets an agent's turn instead of text: two tool calls, and reasoning if it asks for it
(replies.py). Runs its own event loop in a thread, so that both sync
and async code can use it: the tests and benchmarks play the providers with it, and a
newcomer tries the gateway with it (`make demo-upstream`)."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from mockupstream import replies

LISTEN_BACKLOG = 4096
OPENAI_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "cached_tokens": 3}
RESPONSES_USAGE = {"input_tokens": 21, "output_tokens": 9, "cached_tokens": 5}
ANTHROPIC_USAGE = {"input_tokens": 13, "output_tokens": 5, "cache_write": 2, "cache_read": 4}


@dataclass
class Seen:
    method: str
    path: str
    query: str
    body: bytes
    header_list: list[tuple[str, str]]  # lowercased names, every one in the order they came

    @property
    def headers(self) -> dict[str, str]:
        """The headers by lowercased name; a repeated header's last value."""
        return dict(self.header_list)

    @property
    def key(self) -> str:
        auth = self.headers.get("authorization", "")
        return auth.removeprefix("Bearer ") if auth else self.headers.get("x-api-key", "")

    def json(self) -> Any:
        return json.loads(self.body.decode(errors="replace"))  # a prompt may not be UTF-8


@dataclass
class MockUpstream:
    name: str = "A"
    chunks: int = 4
    chunk_delay: float = 0.0
    # Seconds a stream stays open after its last event: a real provider's end of body can
    # come well after it.
    tail_delay: float = 0.0
    tls: ssl.SSLContext | None = None
    # key → status to answer with (429, 401, ...), and the Retry-After to send with a 429.
    key_status: dict[str, int] = field(default_factory=dict)
    # header name → status to answer a request that has it with (OpenAI answers 401 to an
    # OpenAI-Organization its key does not belong to, say).
    header_status: dict[str, int] = field(default_factory=dict)
    retry_after: str | None = "30"
    silent: bool = False  # accept the request, never answer
    seen: list[Seen] = field(default_factory=list)
    # When set, streams stop after their first chunk until it is released.
    hold: threading.Event | None = None
    record: bool = True  # benchmarks turn it off: `seen` would grow without end
    bytes_received: int = 0  # request body bytes, whether recorded or not
    # Every stream's bytes as sent, when `record`.
    streamed: list[bytes] = field(default_factory=list)
    # Streams carry a broken event (JSON cut short) after their first.
    malformed_sse: bool = False
    tool_calls: replies.Calls = replies.TOOL_CALLS  # what an agent's turn calls
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free one, known once started (bound at once: no one can take it)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def text(self) -> str:
        return f"hello from {self.name}"

    def start(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        # A provider does not drop connections in a storm (aiohttp's default backlog, 128,
        # would: a SYN retried a second later).
        site = web.TCPSite(
            self._runner, self.host, self.port, ssl_context=self.tls, backlog=LISTEN_BACKLOG
        )
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _receive(self, request: web.Request) -> Seen:
        """The request read and recorded; a `silent` upstream never gets past here."""
        body = await request.read()
        self.bytes_received += len(body)
        seen = Seen(
            request.method, request.path, request.query_string, body,
            [(k.lower(), v) for k, v in request.headers.items()],
        )  # fmt: skip
        if self.record:
            self.seen.append(seen)
        if self.silent:
            await asyncio.sleep(3600)
        return seen

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        seen = await self._receive(request)
        body = seen.body
        status = self.key_status.get(seen.key)
        for name, answer in self.header_status.items():
            if name in seen.headers:
                status = answer
        if status is not None:
            headers = (
                {"Retry-After": self.retry_after} if status == 429 and self.retry_after else {}
            )
            return web.json_response(
                {"error": {"message": f"key says {status}", "type": "upstream"}},
                status=status, headers=headers,
            )  # fmt: skip
        route = (request.method, request.path)
        handler = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/responses"): self._responses,
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/messages"): self._messages,
            ("POST", "/v1/messages/count_tokens"): self._count_tokens,
        }.get(route)
        if handler is None:
            return web.json_response({"reached": request.path, "from": self.name})
        return await handler(request, seen.json() if body else {})

    async def _sse(
        self, request: web.Request, events: list[replies.Event], tail: bytes = b""
    ) -> web.StreamResponse:
        pieces = [replies.sse([event]) for event in events]
        if self.malformed_sse and len(pieces) > 1:
            pieces[1] = MALFORMED_EVENT + pieces[1]
        return await self._stream(request, {"Content-Type": "text/event-stream"}, pieces, tail)

    async def _stream(
        self, request: web.Request, headers: dict[str, str], pieces: list[bytes], tail: bytes = b""
    ) -> web.StreamResponse:
        """`pieces` written one by one, as `chunk_delay` and `hold` say; then `tail`."""
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        sent = bytearray()
        for i, data in enumerate(pieces):
            sent += data
            await response.write(data)
            if i == 0 and self.hold is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.hold.wait)
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        if tail:
            sent += tail
            await response.write(tail)
        if self.record:
            self.streamed.append(bytes(sent))
        if self.tail_delay:
            await asyncio.sleep(self.tail_delay)
        return response

    def _pieces(self) -> list[str]:
        words = self.text().split(" ")
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)] + [
            "" for _ in range(max(0, self.chunks - len(words)))
        ]

    async def _chat(self, request: web.Request, body: dict) -> web.StreamResponse:
        model = f"{body.get('model', 'gpt')}-2026"
        usage = {
            "prompt_tokens": OPENAI_USAGE["prompt_tokens"],
            "completion_tokens": OPENAI_USAGE["completion_tokens"],
            "total_tokens": OPENAI_USAGE["prompt_tokens"] + OPENAI_USAGE["completion_tokens"],
            "prompt_tokens_details": {"cached_tokens": OPENAI_USAGE["cached_tokens"]},
        }
        base = {"id": "chatcmpl-1", "created": int(time.time()), "model": model}
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if _agent_turn(body, "chat"):
            whole, events = replies.chat_turn(base, usage, include_usage, self.tool_calls)
            if not body.get("stream"):
                return web.json_response(whole)
            return await self._sse(request, events, b"data: [DONE]\n\n")
        if not body.get("stream"):
            return web.json_response(base | {
                "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": self.text()}}],
                "usage": usage,
            })  # fmt: skip
        chunk = base | {"object": "chat.completion.chunk"}
        events = [
            ("", chunk | {"choices": [{"index": 0, "delta": {"content": piece}}], "usage": None})
            for piece in self._pieces()
        ]
        events.append(
            ("", chunk | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                          "usage": None})
        )  # fmt: skip
        if include_usage:
            events.append(("", chunk | {"choices": [], "usage": usage}))
        return await self._sse(request, events, b"data: [DONE]\n\n")

    async def _responses(self, request: web.Request, body: dict) -> web.StreamResponse:
        model = f"{body.get('model', 'gpt')}-2026"
        usage = {
            "input_tokens": RESPONSES_USAGE["input_tokens"],
            "output_tokens": RESPONSES_USAGE["output_tokens"],
            "total_tokens": RESPONSES_USAGE["input_tokens"] + RESPONSES_USAGE["output_tokens"],
            "input_tokens_details": {"cached_tokens": RESPONSES_USAGE["cached_tokens"]},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        message = {
            "id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": self.text(), "annotations": []}],
        }  # fmt: skip
        response_obj = {
            "id": "resp_1", "object": "response", "created_at": int(time.time()),
            "model": model, "status": "completed", "output": [message], "usage": usage,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        }  # fmt: skip
        if _agent_turn(body, "responses"):
            whole, turn = replies.responses_turn(
                response_obj, bool(body.get("reasoning")), self.tool_calls
            )
            if not body.get("stream"):
                return web.json_response(whole)
            return await self._sse(request, turn)
        if not body.get("stream"):
            return web.json_response(response_obj)
        # The events a real stream has, in order: Codex shows text only inside an item.
        created = response_obj | {"status": "in_progress", "output": [], "usage": None}
        part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
        events: list[tuple[str, dict]] = [
            ("response.created", {"response": created}),
            ("response.in_progress", {"response": created}),
            ("response.output_item.added", {"output_index": 0, "item": message | {
                "status": "in_progress", "content": []}}),
            ("response.content_part.added", where | {"part": part}),
        ]  # fmt: skip
        events += [("response.output_text.delta", where | {"delta": piece})
                   for piece in self._pieces()]  # fmt: skip
        events += [
            ("response.output_text.done", where | {"text": self.text()}),
            ("response.content_part.done", where | {"part": part | {"text": self.text()}}),
            ("response.output_item.done", {"output_index": 0, "item": message}),
            ("response.completed", {"response": response_obj}),
        ]
        return await self._sse(request, [
            (kind, {"type": kind, **data, "sequence_number": number})
            for number, (kind, data) in enumerate(events)
        ])  # fmt: skip

    async def _models(self, request: web.Request, body: dict) -> web.StreamResponse:
        return web.json_response(
            {"object": "list", "data": [{"id": f"model-{self.name}", "object": "model",
                                         "created": 0, "owned_by": self.name}]}
        )  # fmt: skip

    async def _messages(self, request: web.Request, body: dict) -> web.StreamResponse:
        whole, events = self.anthropic_reply(body, f"{body.get('model', 'claude')}-2026")
        if not body.get("stream"):
            return web.json_response(whole)
        return await self._sse(request, events)

    def anthropic_reply(
        self, body: dict[str, Any], model: str
    ) -> tuple[dict[str, Any], list[replies.Event]]:
        """The answer to a Messages request, whole and as its stream's events: an agent's
        turn when it offers tools, else this upstream's text. The clouds (clouds.py) wrap
        the same answer in their own envelopes."""
        usage = {
            "input_tokens": ANTHROPIC_USAGE["input_tokens"],
            "output_tokens": ANTHROPIC_USAGE["output_tokens"],
            "cache_creation_input_tokens": ANTHROPIC_USAGE["cache_write"],
            "cache_read_input_tokens": ANTHROPIC_USAGE["cache_read"],
        }
        message = {
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "stop_reason": "end_turn", "stop_sequence": None,
        }  # fmt: skip
        if _agent_turn(body, "messages"):
            thinking = (body.get("thinking") or {}).get("type") == "enabled"
            return replies.anthropic_turn(message | {"usage": usage}, thinking, self.tool_calls)
        whole = message | {"content": [{"type": "text", "text": self.text()}], "usage": usage}
        start_usage = usage | {"output_tokens": 1}
        events: list[replies.Event] = [
            ("message_start", {"type": "message_start", "message": message | {
                "content": [], "stop_reason": None, "usage": start_usage}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
        ]  # fmt: skip
        for piece in self._pieces():
            events.append(("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }))  # fmt: skip
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": usage["output_tokens"]}}),
            ("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        return whole, events

    async def _count_tokens(self, request: web.Request, body: dict) -> web.StreamResponse:
        return web.json_response({"input_tokens": 10})


# An event whose JSON is cut short: what a broken upstream (or proxy) might send.
MALFORMED_EVENT = b'event: oops\ndata: {"type": "error", "error": {"message": \n\n'


def _agent_turn(body: dict, api: str) -> bool:
    """The request offers tools and does not answer a tool call: the model calls them."""
    if not body.get("tools"):
        return False
    if api == "responses":
        items = body.get("input")
        last = items[-1] if isinstance(items, list) and items else {}
        return not (isinstance(last, dict) and last.get("type") == "function_call_output")
    last = (body.get("messages") or [{}])[-1]
    if last.get("role") == "tool":
        return False
    content = last.get("content")
    return not (
        isinstance(content, list)
        and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )
