"""Governance end to end: users, tokens and limit sets made through the admin API, calls
made with the real SDKs (no retries: a refusal must reach the test as the client sees it),
and what the upstream and the interception records saw of them."""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import anthropic
import httpx
import openai

from aibridge.v1 import admin_pb2
from common.scopes import next_month_start
from mockupstream import MockUpstream
from tests.harness import Bridged, Controlplane, Proxyd, wait_until

PROVIDER_KEY = "sk-governance-provider-key-0001"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
# Each call's cost at this price (USD per million tokens, every kind): the mock upstream's
# OpenAI usage (11 in, 3 of them cached, 7 out) costs $1.08; its Anthropic usage (13 in,
# 5 out, 4 cache read, 2 cache write) $1.44. One call crosses a budget of $1.
EXPENSIVE = 60_000.0
OPENAI_CALL_USD = 18 * EXPENSIVE / 1e6
ANTHROPIC_CALL_USD = 24 * EXPENSIVE / 1e6


# --- the admin side -------------------------------------------------------------------


def create_user(cp: Controlplane, name: str, teams: Iterable[str] = ()) -> int:
    """A user, in `teams` (made if they do not exist); the revision it ends at."""
    revision = cp.admin.CreateUser(admin_pb2.CreateUserRequest(name=name)).revision
    existing = {t.name for t in cp.admin.ListTeams(admin_pb2.ListTeamsRequest()).teams}
    for team in teams:
        if team not in existing:
            cp.admin.CreateTeam(admin_pb2.CreateTeamRequest(name=team))
        request = admin_pb2.TeamMemberRequest(team=team, user=name)
        revision = cp.admin.AddTeamMember(request).revision
    return revision


def create_token(cp: Controlplane, name: str, user: str = "") -> str:
    """A gateway token (of `user`, if given), applied by every data plane."""
    created = cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name=name, user=user))
    cp.admin.wait_applied(created.revision)
    return created.token


def set_limits(cp: Controlplane, scope: str, **fields: Any) -> int:
    """SetLimits on `scope` (lists as Python lists), applied by every data plane."""
    for name in ("providers", "models"):
        if name in fields:
            fields[name] = admin_pb2.StringList(values=fields[name])
    revision = cp.admin.SetLimits(admin_pb2.SetLimitsRequest(scope=scope, **fields)).revision
    cp.admin.wait_applied(revision)
    return revision


def set_price(cp: Controlplane, model: str, usd_per_million: float = EXPENSIVE) -> None:
    request = admin_pb2.SetPriceRequest(model=model, input=usd_per_million, output=usd_per_million)
    cp.admin.wait_applied(cp.admin.SetPrice(request).revision)


def records(cp: Controlplane, token_name: str, count: int) -> list[admin_pb2.InterceptionRecord]:
    """The token's interceptions once `count` are stored (newest first)."""
    request = admin_pb2.ListInterceptionsRequest(
        filter=admin_pb2.InterceptionFilter(token=token_name), limit=1000
    )

    def stored() -> list[admin_pb2.InterceptionRecord] | None:
        found = list(cp.admin.ListInterceptions(request).interceptions)
        return found if len(found) >= count else None

    found = wait_until(stored, what=f"{count} interceptions of {token_name}")
    assert len(found) == count, [(r.status, r.error_message) for r in found]
    return found


def statuses(found: list[admin_pb2.InterceptionRecord]) -> list[int]:
    return sorted(r.status for r in found)


def spent(cp: Controlplane, user: str) -> float:
    """The user's spend this month, as the controlplane has stored it."""
    rows = cp.admin.QuerySpend(admin_pb2.QuerySpendRequest(by="user")).rows
    return sum(r.spent_usd for r in rows if r.key == user)


# --- what the upstream saw ------------------------------------------------------------


def seen(upstream: MockUpstream, model: str) -> int:
    """The calls of `model` that reached `upstream` (each test uses models of its own)."""
    return sum(1 for s in upstream.seen if s.body and s.json().get("model") == model)


# --- clients --------------------------------------------------------------------------


def proxied_http_client(proxyd: Proxyd, token: str, sdk: ModuleType) -> Any:
    """The SDK's own httpx flavour, through proxyd (HTTPS_PROXY style), trusting its CA."""
    trust = ssl.create_default_context(cafile=str(proxyd.ca_path))
    return sdk.DefaultHttpxClient(proxy=proxyd.proxy_url(token), verify=trust, timeout=30)


def openai_client(bridged: Bridged, token: str, provider: str = "oai") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{bridged.provider_url(provider)}/v1", api_key=token, timeout=30, max_retries=0
    )


def anthropic_client(bridged: Bridged, token: str, provider: str = "ant") -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=bridged.provider_url(provider), api_key=token, timeout=30, max_retries=0
    )


def proxied_openai(proxyd: Proxyd, upstream: MockUpstream, token: str) -> openai.OpenAI:
    """The client thinks it talks to the provider's host; proxyd takes the token."""
    return openai.OpenAI(
        base_url=f"https://localhost:{upstream.port}/v1", api_key="sk-client-dummy",
        http_client=proxied_http_client(proxyd, token, openai), max_retries=0,
    )  # fmt: skip


def proxied_anthropic(proxyd: Proxyd, upstream: MockUpstream, token: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"https://localhost:{upstream.port}", api_key="sk-client-dummy",
        http_client=proxied_http_client(proxyd, token, anthropic), max_retries=0,
    )  # fmt: skip


def chat(client: openai.OpenAI, model: str) -> str:
    answer = client.chat.completions.create(model=model, messages=MESSAGES)
    return answer.choices[0].message.content or ""


def message(client: anthropic.Anthropic, model: str) -> str:
    answer = client.messages.create(model=model, max_tokens=5, messages=MESSAGES)
    block = answer.content[0]
    assert block.type == "text"
    return block.text


def refusal(call: Callable[[], object], kind: type[Exception]) -> Any:
    """The `kind` error `call` raises (an SDK's APIStatusError subclass)."""
    try:
        call()
    except kind as exc:
        return exc
    raise AssertionError(f"expected {kind.__name__}, the call succeeded")


def refused_now(call: Callable[[], object], kind: type[Exception]) -> Any:
    """For wait_until: `call`'s `kind` error, or None when it was served."""
    try:
        call()
    except kind as exc:
        return exc
    return None


# --- streams held open ----------------------------------------------------------------


@dataclass
class Background:
    """A streaming call in a thread: `first` is set once its first chunk arrived."""

    thread: threading.Thread
    first: threading.Event
    result: dict[str, Any] = field(default_factory=dict)

    def wait_first(self) -> None:
        wait_until(
            lambda: self.first.is_set() or "error" in self.result,
            what="the stream's first chunk",
        )
        assert "error" not in self.result, self.result["error"]

    def finish(self, timeout: float = 30) -> Any:
        """The call's return value, once it ended."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stream did not end"
        assert "error" not in self.result, self.result["error"]
        return self.result["value"]


def in_background(run: Callable[[threading.Event], Any]) -> Background:
    first = threading.Event()
    background = Background(threading.Thread(target=lambda: None), first)

    def target() -> None:
        try:
            background.result["value"] = run(first)
        except Exception as exc:  # the test reads it: it must not vanish in the thread
            background.result["error"] = exc
        background.result["ended"] = time.monotonic()

    background.thread = threading.Thread(target=target, daemon=True)
    background.thread.start()
    return background


def openai_stream(client: openai.OpenAI, model: str) -> Background:
    """A chat stream with usage; its value is (text, prompt tokens of its usage chunk)."""

    def run(first: threading.Event) -> tuple[str, int]:
        text, prompt_tokens = "", 0
        chunks = client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        for chunk in chunks:
            first.set()
            text += "".join(c.delta.content or "" for c in chunk.choices)
            if chunk.usage is not None:
                prompt_tokens = chunk.usage.prompt_tokens
        return text, prompt_tokens

    return in_background(run)


def anthropic_stream(client: anthropic.Anthropic, model: str) -> Background:
    """A messages stream; its value is (text, output tokens of the final message)."""

    def run(first: threading.Event) -> tuple[str, int]:
        with client.messages.stream(model=model, max_tokens=5, messages=MESSAGES) as stream:
            for _event in stream:  # the first is message_start, before any text
                first.set()
            final = stream.get_final_message()
        text = "".join(b.text for b in final.content if b.type == "text")
        return text, final.usage.output_tokens

    return in_background(run)


class Held:
    """An upstream's streams stop after their first chunk until `release`."""

    def __init__(self, upstream: MockUpstream) -> None:
        self.upstream = upstream
        self.event = threading.Event()

    def __enter__(self) -> Held:
        self.upstream.hold = self.event
        return self

    def release(self) -> None:
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        self.event.set()
        self.upstream.hold = None


# --- the refusal's headers ------------------------------------------------------------

_RESET = re.compile(r"^(?:(\d+)m)?(\d+)s$")


def reset_seconds(value: str) -> int:
    """An x-ratelimit-reset-* value as OpenAI writes it ("12s", "1m0s"), in seconds."""
    found = _RESET.match(value)
    assert found, f"not a reset like '12s' or '1m0s': {value!r}"
    return int(found.group(1) or 0) * 60 + int(found.group(2))


def budget_resets_at() -> str:
    """When this month's budgets reset, as refusals name it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(next_month_start()))


def raw_calls(urls: list[str], token: str, model: str, count: int) -> list[httpx.Response]:
    """`count` chat calls at once, spread over `urls` in turn (chat completions URLs)."""

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            timeout=30, limits=httpx.Limits(max_connections=count)
        ) as client:
            calls = [
                client.post(
                    urls[i % len(urls)],
                    headers={"Authorization": f"Bearer {token}"},
                    json={"model": model, "messages": MESSAGES},
                )  # fmt: skip
                for i in range(count)
            ]
            return list(await asyncio.gather(*calls))

    return asyncio.run(all_at_once())


class StreamsAtOnce:
    """`count` streaming chat calls started together, spread over `urls` in turn; each
    one's status is known as soon as its answer begins (a held upstream keeps the admitted
    ones open)."""

    def __init__(self, urls: list[str], token: str, model: str, count: int) -> None:
        self.statuses: list[int] = []
        self.bodies: list[bytes] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(urls[i % len(urls)], token, model))
            for i in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, url: str, token: str, model: str) -> None:
        try:
            with httpx.stream(
                "POST", url, headers={"Authorization": f"Bearer {token}"},
                json={"model": model, "messages": MESSAGES, "stream": True}, timeout=60,
            ) as response:  # fmt: skip
                with self._lock:
                    self.statuses.append(response.status_code)
                body = response.read()
            with self._lock:
                self.bodies.append(body)
        except httpx.HTTPError as exc:
            with self._lock:
                self.errors.append(repr(exc))

    def wait_answered(self) -> list[int]:
        """Every call's status, once each has one."""
        wait_until(
            lambda: len(self.statuses) + len(self.errors) == len(self.threads),
            what="every stream to be answered",
        )
        assert not self.errors, self.errors
        return sorted(self.statuses)

    def finish(self) -> None:
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), "a stream did not end"
        assert not self.errors, self.errors
