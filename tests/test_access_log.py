"""One access log line per request in bridged and proxyd: id, token name, provider,
method, route, status, the gateway's error code, duration and bytes, in text or JSON,
never a secret; `--access-log off` turns it off."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

from mockupstream import MockUpstream
from tests.harness import Bridged, Controlplane, Proxyd, Secrets, wait_until
from tests.proxy_client import connect, request_through

KEY = "sk-access-log-provider-key-00001"
CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def text_lines(log: str) -> list[dict[str, Any]]:
    """The access lines of a text log, as dicts (values JSON-unquoted where quoted)."""
    lines = []
    for line in log.splitlines():
        _, found, rest = line.partition(" INFO access: ")
        if found:
            lines.append({k: json.loads(v) if v.startswith('"') else v for k, v in
                          _PAIR.findall(rest)})  # fmt: skip
    return lines


def chat(
    url: str, token: str, path: str = "/v1/chat/completions", timeout: float = 30
) -> httpx.Response:
    return httpx.post(url + path, json=CHAT, headers={"Authorization": f"Bearer {token}"},
                      timeout=timeout)  # fmt: skip


def test_bridged_and_proxyd_write_a_line_per_request(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: MockUpstream,
) -> None:  # fmt: skip
    bridged, proxyd = mitm
    admin = controlplane.admin
    base_url = f"https://localhost:{tls_upstream_a.port}/v1"
    admin.wait_applied(admin.create_provider("llm", base_url, keys=[KEY]).revision)
    url = bridged.provider_url("llm")

    ok = chat(url, token)
    assert ok.status_code == 200
    assert chat(url, "abt_not_a_token").status_code == 401
    refused = chat(url, token, "/v1/files")
    assert refused.status_code == 404
    # A path that tries to forge a line of its own stays on its line, quoted.
    assert chat(url, token, "/v1/x%0Aid=forged status=200").status_code == 404
    lines = wait_until(lambda: len(text_lines(bridged.log())) >= 4 and text_lines(bridged.log()))
    first, unauthorised, not_allowed, forged = lines
    assert first | {"ms": "-"} == {
        "id": ok.headers["x-aibridge-request-id"], "token": "tester", "provider": "llm",
        "method": "POST", "route": "/v1/chat/completions", "status": "200", "error": "-",
        "ms": "-", "in": str(len(ok.request.content)), "out": ok.headers["content-length"],
    }  # fmt: skip
    assert float(first["ms"]) > 0
    assert (unauthorised["token"], unauthorised["status"], unauthorised["error"]) == (
        "-", "401", "invalid_token",
    )  # fmt: skip
    assert not_allowed["id"] == refused.headers["x-aibridge-request-id"]
    assert (not_allowed["route"], not_allowed["error"]) == ("/v1/files", "route_not_allowed")
    assert forged["route"].endswith("/v1/x\nid=forged status=200") and forged["status"] == "404"
    assert len(bridged.log().splitlines()) == len(set(bridged.log().splitlines()))

    # proxyd: a CONNECT it refuses, and a request it decrypts and hands to bridged.
    status, sock = connect(proxyd.port, f"localhost:{tls_upstream_a.port}", "abt_wrong")
    sock.close()
    assert status == 407
    target = f"localhost:{tls_upstream_a.port}"
    reply = request_through(
        proxyd.port, target, token, proxyd.ca_path, "POST", "/v1/chat/completions?x=1", CHAT,
        host="localhost",
    )  # fmt: skip
    assert reply.status == 200
    # Inside an intercepted connection, an absolute target is refused; its line keeps no
    # userinfo, where a client may have put a key.
    absolute = request_through(
        proxyd.port, target, token, proxyd.ca_path,
        "GET", "https://u:sk-in-a-target@localhost/v1/models?k=sk-q", host="localhost",
    )  # fmt: skip
    assert absolute.status == 400
    denied, forwarded, bad_target = wait_until(
        lambda: len(text_lines(proxyd.log())) >= 3 and text_lines(proxyd.log())
    )
    assert (bad_target["route"], bad_target["status"], bad_target["error"]) == (
        "https://localhost/v1/models", "400", "bad_target",
    )  # fmt: skip
    assert "sk-in-a-target" not in proxyd.log() and "sk-q" not in proxyd.log()
    assert (denied["method"], denied["route"], denied["status"], denied["error"]) == (
        "CONNECT", f"localhost:{tls_upstream_a.port}", "407", "invalid_token",
    )  # fmt: skip
    assert forwarded["id"] == reply.headers["x-aibridge-request-id"]
    assert (forwarded["token"], forwarded["provider"], forwarded["route"], forwarded["status"]) == (
        "tester", "llm", "/v1/chat/completions", "200",
    )  # fmt: skip
    for process in (bridged, proxyd):
        assert token not in process.log() and KEY not in process.log()


def test_json_lines_and_off(
    controlplane: Controlplane, token: str, upstream_a: MockUpstream, tmp_path: Path,
    secrets: Secrets,
) -> None:  # fmt: skip
    admin = controlplane.admin
    admin.wait_applied(admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY]).revision)
    as_json = Bridged([controlplane.address], tmp_path, secrets, name="json",
                      extra_args=("--log-format", "json")).start()  # fmt: skip
    quiet = Bridged([controlplane.address], tmp_path, secrets, name="quiet",
                    extra_args=("--access-log", "off")).start()  # fmt: skip
    try:
        for process in (as_json, quiet):
            assert chat(process.provider_url("llm"), token).status_code == 200
            assert chat(process.provider_url("llm"), "abt_wrong").status_code == 401

        def access_entries() -> list[dict[str, Any]]:
            entries = [json.loads(line) for line in as_json.log().splitlines()]
            return [e for e in entries if e["logger"] == "access"]

        ok, refused = wait_until(lambda: len(access_entries()) >= 2 and access_entries())
        assert set(ok) == {"ts", "level", "logger", "msg", "id", "token", "provider", "method",
                           "route", "status", "error", "ms", "in", "out"}  # fmt: skip
        assert (ok["token"], ok["status"], ok["error"], ok["route"]) == (
            "tester", 200, "", "/v1/chat/completions",
        )  # fmt: skip
        assert (refused["status"], refused["error"]) == (401, "invalid_token")
        assert " access: " not in quiet.log() and '"access"' not in quiet.log()
    finally:
        as_json.stop()
        quiet.stop()


def test_a_call_whose_client_leaves_has_its_line(
    controlplane: Controlplane, bridged: Bridged, token: str, upstream_a: MockUpstream
) -> None:
    """aiohttp writes no line for a handler it cancels: the request path does (499)."""
    admin = controlplane.admin
    admin.wait_applied(admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY]).revision)
    upstream_a.silent = True  # it never answers
    try:
        chat(bridged.provider_url("llm"), token, timeout=1)
    except httpx.TimeoutException:
        pass
    [line] = wait_until(lambda: text_lines(bridged.log()))
    assert (line["token"], line["provider"], line["status"], line["error"]) == (
        "tester", "llm", "499", "-",
    )  # fmt: skip
    assert float(line["ms"]) >= 900
    upstream_a.silent = False
