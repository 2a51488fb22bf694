"""bridged's refusals and failures: honest status codes, in the provider's own error shape,
and the process keeps serving after every one of them. The module's tests share a
controlplane and bridged (per database), each with providers and tokens of its own."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream
from tests.harness import Bridged, Controlplane, Secrets, free_port, unique, wait_until

KEY = "sk-errors-provider-key-000000000001"
MAX_BODY = 64 * 1024
WRONG_TOKEN = "abt_wrong_token_0000000000000000000000"


@pytest.fixture(scope="module")
def gateway(
    shared_controlplane: Controlplane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bridged]:
    """bridged with a short idle-read timeout, a small body limit and debug logs."""
    cp = shared_controlplane
    process = Bridged(
        [cp.address], tmp_path_factory.mktemp("gateway"), cp.secrets, name="gateway",
        extra_args=("--idle-read-timeout", "1", "--max-body-bytes", str(MAX_BODY),
                    "--log-level", "debug"),
    ).start()  # fmt: skip
    try:
        yield process
    finally:
        process.stop()


def chat(
    gateway: Bridged, provider: str, token: str | None, body: bytes | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if body is None:
        body = b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}'
    return httpx.post(
        f"{gateway.provider_url(provider)}/v1/chat/completions",
        headers=headers | {"Content-Type": "application/json"},
        content=body,
        timeout=30,
    )


def messages(gateway: Bridged, provider: str, token: str | None) -> httpx.Response:
    headers = {"x-api-key": token} if token is not None else {}
    return httpx.post(
        f"{gateway.provider_url(provider)}/v1/messages",
        headers=headers | {"anthropic-version": "2023-06-01"},
        json={"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def openai_error(response: httpx.Response, status: int, code: str) -> dict:
    """OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"] and error["type"], error
    assert "param" in error
    assert response.headers["x-aibridge-error"] == code
    return error


def anthropic_error(response: httpx.Response, status: int, code: str, kind: str) -> dict:
    """Anthropic's shape: {"type": "error", "error": {"type", "message"}}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["type"] == "error", body
    assert body["error"]["type"] == kind, body
    assert body["error"]["message"], body
    assert response.headers["x-aibridge-error"] == code
    return body["error"]


def still_serving(gateway: Bridged, llm: str, token: str, secrets: tuple[str, ...]) -> None:
    """The process is up, a normal call through `llm` succeeds, and no secret was ever
    logged."""
    gateway.check_alive()
    ok = chat(gateway, llm, token)
    assert ok.status_code == 200, ok.text
    assert ok.json()["choices"][0]["message"]["content"] == "hello from A"
    log = gateway.log()
    assert "applied snapshot" in log  # the log is the one being written
    for secret in secrets:
        assert secret not in log


def test_callers_without_a_valid_token_get_401(
    shared_controlplane: Controlplane, gateway: Bridged, shared_token: str,
    upstream_a: MockUpstream,
) -> None:  # fmt: skip
    admin, token = shared_controlplane.admin, shared_token
    llm, claude = unique("llm"), unique("claude")
    admin.wait_applied(admin.create_provider(llm, upstream_a.url + "/v1", keys=[KEY]).revision)
    created = admin.create_provider(claude, upstream_a.url, type="anthropic", keys=[KEY])
    admin.wait_applied(created.revision)

    # Wrong and missing tokens, by either header, in either family's shape.
    openai_error(chat(gateway, llm, WRONG_TOKEN), 401, "invalid_token")
    openai_error(chat(gateway, llm, None), 401, "invalid_token")
    not_bearer = httpx.post(
        f"{gateway.provider_url(llm)}/v1/chat/completions", json={}, timeout=30,
        headers={"Authorization": f"Basic {token}"},
    )  # fmt: skip
    openai_error(not_bearer, 401, "invalid_token")
    anthropic_error(messages(gateway, claude, WRONG_TOKEN), 401, "invalid_token",
                    "authentication_error")  # fmt: skip
    anthropic_error(messages(gateway, claude, None), 401, "invalid_token",
                    "authentication_error")  # fmt: skip
    # Authentication comes before routing: an unknown provider does not tell a stranger.
    openai_error(chat(gateway, "nosuch", WRONG_TOKEN), 401, "invalid_token")

    # Revoked: it works, then stops working once the revocation is applied.
    revocable_name = unique("revocable")
    revocable = admin.CreateToken(admin_pb2.CreateTokenRequest(name=revocable_name))
    admin.wait_applied(revocable.revision)
    assert chat(gateway, llm, revocable.token).status_code == 200
    revoked = admin.RevokeToken(admin_pb2.RevokeTokenRequest(ref=revocable_name))
    admin.wait_applied(revoked.revision)
    openai_error(chat(gateway, llm, revocable.token), 401, "invalid_token")
    anthropic_error(messages(gateway, claude, revocable.token), 401, "invalid_token",
                    "authentication_error")  # fmt: skip

    # Expired: no new snapshot is needed, bridged checks the expiry itself.
    brief = admin.CreateToken(
        admin_pb2.CreateTokenRequest(name=unique("brief"), expires_in_seconds=1)
    )
    admin.wait_applied(brief.revision)
    statuses: list[int] = []

    def expired() -> bool:
        statuses.append(chat(gateway, llm, brief.token).status_code)
        return statuses[-1] == 401

    wait_until(expired, 10, "the token to expire")
    assert set(statuses) <= {200, 401}, statuses
    openai_error(chat(gateway, llm, brief.token), 401, "invalid_token")

    # Only the successful calls ever reached the upstream.
    assert len(upstream_a.seen) == 1 + statuses.count(200)
    still_serving(gateway, llm, token, (token, revocable.token, brief.token, WRONG_TOKEN, KEY))


def raw_get(gateway: Bridged, path: str, token: str) -> tuple[int, bytes]:
    """A request with the path exactly as written: httpx would resolve dot segments."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.putheader("Authorization", f"Bearer {token}")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_refusals_are_honest_and_never_reach_the_upstream(
    shared_controlplane: Controlplane, gateway: Bridged, shared_token: str,
    upstream_a: MockUpstream,
) -> None:  # fmt: skip
    admin, token = shared_controlplane.admin, shared_token
    llm, claude, off, claudeoff = unique("llm"), unique("claude"), unique("off"), unique("cloff")
    keyless = unique("keyless")
    admin.wait_applied(admin.create_provider(llm, upstream_a.url + "/v1", keys=[KEY]).revision)
    created = admin.create_provider(claude, upstream_a.url, type="anthropic", keys=[KEY])
    admin.wait_applied(created.revision)
    admin.create_provider(off, upstream_a.url + "/v1", keys=[KEY], disabled=True)
    admin.create_provider(claudeoff, upstream_a.url, type="anthropic", keys=[KEY], disabled=True)
    admin.wait_applied(admin.create_provider(keyless, upstream_a.url + "/v1").revision)

    # Unknown provider: 404, in the shape of the API the client speaks.
    openai_error(chat(gateway, "nosuch", token), 404, "unknown_provider")
    anthropic_error(messages(gateway, "nosuch", token), 404, "unknown_provider", "not_found_error")

    # Routes off the allowlist: the injected key may be privileged.
    base = gateway.provider_url(llm)
    auth = {"Authorization": f"Bearer {token}"}
    for method, path in [
        ("POST", "/v1/files"),
        ("GET", "/v1/assistants"),
        ("POST", "/v1/embeddings"),
        ("DELETE", "/v1/models/x"),
        ("GET", "/v1/chat/completions"),  # stored completions: not a pass-through
        ("POST", "/v1/messages"),  # the other family's endpoint
    ]:
        refused = httpx.request(method, base + path, headers=auth, json={}, timeout=30)
        openai_error(refused, 404, "route_not_allowed")
    for method, path in [("POST", "/v1/messages/batches"), ("POST", "/v1/complete"),
                         ("POST", "/v1/chat/completions")]:  # fmt: skip
        refused = httpx.request(
            method, gateway.provider_url(claude) + path, headers=auth, json={}, timeout=30
        )
        anthropic_error(refused, 404, "route_not_allowed", "not_found_error")
    # A model id may not climb out of the allowlist with dot segments.
    for path in ("/v1/models/../files", "/v1/models/%2e%2e/files", "/v1/models/x/../../files",
                 "/v1/models/%2E%2E%2Ffiles", "/v1/models//files"):  # fmt: skip
        status, body = raw_get(gateway, f"/api/v2/aibridge/{llm}" + path, token)
        assert status == 404, (path, body)
        assert b"route_not_allowed" in body

    # Disabled: 403 in both shapes, with each provider's permission type and the name, so
    # that no client retries it.
    error = openai_error(chat(gateway, off, token), 403, "provider_disabled")
    assert error["type"] == "request_forbidden" and f"'{off}'" in error["message"], error
    error = anthropic_error(
        messages(gateway, claudeoff, token), 403, "provider_disabled", "permission_error"
    )
    assert f"'{claudeoff}'" in error["message"], error
    # A provider without keys cannot be called: 502.
    openai_error(chat(gateway, keyless, token), 502, "no_keys")

    # Outside /api/v2/aibridge/{provider}/: a JSON 404, whatever the method.
    for method, url in [
        ("GET", gateway.url + "/"),
        ("POST", gateway.url + "/v1/chat/completions"),
        ("GET", gateway.url + "/api/v2/aibridge"),
        ("GET", gateway.url + f"/api/v2/aibridge/{llm}"),
        ("PUT", gateway.url + f"/api/v1/aibridge/{llm}/v1/models"),
    ]:
        openai_error(httpx.request(method, url, headers=auth, timeout=30), 404, "not_found")
    anthropic_error(
        httpx.post(gateway.url + "/v1/messages", headers=auth, timeout=30),
        404, "not_found", "not_found_error",
    )  # fmt: skip

    assert upstream_a.seen == [], [(s.method, s.path) for s in upstream_a.seen]
    still_serving(gateway, llm, token, (token, KEY))


def test_upstream_failures(
    shared_controlplane: Controlplane, gateway: Bridged, shared_token: str,
    upstream_a: MockUpstream, upstream_b: MockUpstream,
) -> None:  # fmt: skip
    admin, token = shared_controlplane.admin, shared_token
    llm, down, claudedown = unique("llm"), unique("down"), unique("claudedown")
    quiet, stalls = unique("quiet"), unique("stalls")
    silent = MockUpstream("silent", silent=True).start()
    try:
        admin.create_provider(llm, upstream_a.url + "/v1", keys=[KEY])
        admin.create_provider(down, f"http://127.0.0.1:{free_port()}/v1", keys=[KEY])
        admin.create_provider(claudedown, f"http://127.0.0.1:{free_port()}", type="anthropic",
                              keys=[KEY])  # fmt: skip
        admin.create_provider(quiet, silent.url + "/v1", keys=[KEY])
        admin.wait_applied(admin.create_provider(stalls, upstream_b.url + "/v1", keys=[KEY])
                           .revision)  # fmt: skip

        # Nothing listens: 502 in both shapes.
        openai_error(chat(gateway, down, token), 502, "upstream_unreachable")
        anthropic_error(
            messages(gateway, claudedown, token), 502, "upstream_unreachable", "api_error"
        )

        # Accepts and never answers: 504 after --idle-read-timeout.
        openai_error(chat(gateway, quiet, token), 504, "upstream_timeout")
        assert [s.path for s in silent.seen] == ["/v1/chat/completions"]

        # Goes silent mid-stream: the status is already sent, so the stream is cut short.
        upstream_b.hold = threading.Event()
        with pytest.raises(httpx.RemoteProtocolError):
            with httpx.stream(
                "POST", f"{gateway.provider_url(stalls)}/v1/chat/completions",
                headers={"Authorization": f"Bearer {token}"},
                json={"model": "gpt", "messages": [], "stream": True}, timeout=30,
            ) as response:  # fmt: skip
                assert response.status_code == 200
                for _ in response.iter_raw():
                    pass
        upstream_b.hold.set()

        # A body over --max-body-bytes: 413, and it never reaches the upstream.
        big = b'{"model": "gpt", "messages": [], "pad": "' + b"x" * MAX_BODY + b'"}'
        openai_error(chat(gateway, llm, token, big), 413, "request_too_large")
        assert upstream_a.seen == []
        just_fits = b'{"model": "gpt", "pad": "' + b"x" * (MAX_BODY - 100) + b'"}'
        assert chat(gateway, llm, token, just_fits).status_code == 200
        assert len(upstream_a.seen[-1].body) == len(just_fits)

        still_serving(gateway, llm, token, (token, KEY))
    finally:
        silent.stop()


def test_without_a_snapshot_nothing_is_served(tmp_path: Path, secrets: Secrets) -> None:
    """bridged pointed at a controlplane that is not there: alive, not ready, 503."""
    nowhere = f"127.0.0.1:{free_port()}"
    orphan = Bridged([nowhere], tmp_path, secrets, name="orphan").start(wait_ready=False)
    try:
        assert httpx.get(orphan.url + "/healthz", timeout=10).status_code == 200
        ready = httpx.get(orphan.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert ready.json()["controlplane_connected"] is False
        openai_error(chat(orphan, "llm", WRONG_TOKEN), 503, "no_snapshot")
        anthropic_error(messages(orphan, "claude", WRONG_TOKEN), 503, "no_snapshot", "api_error")
        orphan.check_alive()
        assert WRONG_TOKEN not in orphan.log()
    finally:
        orphan.stop()
