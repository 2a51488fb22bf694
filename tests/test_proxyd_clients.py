"""Real clients through proxyd, trusting its CA: the SDKs, curl, streams; and the CA."""

from __future__ import annotations

import ssl
import subprocess
import threading

import anthropic
import httpx
import openai

from tests.harness import Bridged, Controlplane, Proxyd, wait_until
from tests.upstream import FakeUpstream

KEY = "sk-proxied-provider-key-0001"
CLIENT_KEY = "sk-client-side-dummy-key"


def http_client(proxyd: Proxyd, token: str, sdk=httpx):  # type: ignore[no-untyped-def]
    """An HTTP client that goes through proxyd and trusts its CA (each SDK brings its own
    httpx flavour: `sdk.DefaultHttpxClient` keeps the SDK's defaults)."""
    trust = ssl.create_default_context(cafile=str(proxyd.ca_path))
    make = httpx.Client if sdk is httpx else sdk.DefaultHttpxClient
    return make(proxy=proxyd.proxy_url(token), verify=trust, timeout=30)


def test_sdks_and_curl_through_the_proxy(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: FakeUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    a = tls_upstream_a
    admin = controlplane.admin
    admin.create_provider("oai", f"https://localhost:{a.port}/v1", keys=[KEY])
    last = admin.create_provider("ant", f"https://127.0.0.1:{a.port}", type="anthropic", keys=[KEY])
    admin.wait_applied(last.revision)
    messages = [{"role": "user", "content": "hi"}]

    oai = openai.OpenAI(
        base_url=f"https://localhost:{a.port}/v1", api_key=CLIENT_KEY,
        http_client=http_client(proxyd, token, openai),
    )  # fmt: skip
    assert oai.chat.completions.create(model="m", messages=messages).choices[0].message.content == (
        "hello from A"
    )
    chunks = list(
        oai.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello from A"

    ant = anthropic.Anthropic(
        base_url=f"https://127.0.0.1:{a.port}", api_key=CLIENT_KEY,
        http_client=http_client(proxyd, token, anthropic),
    )  # fmt: skip
    assert ant.messages.create(model="c", max_tokens=5, messages=messages).content[0].text == (
        "hello from A"
    )
    with ant.messages.stream(model="c", max_tokens=5, messages=messages) as stream:
        assert "".join(stream.text_stream) == "hello from A"

    curl = subprocess.run(
        ["curl", "-sS", "--fail", "-x", proxyd.proxy_url(token), "--cacert", str(proxyd.ca_path),
         "-H", "Content-Type: application/json", "-d", '{"model": "m", "messages": []}',
         f"https://localhost:{a.port}/v1/chat/completions"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert curl.returncode == 0, curl.stderr
    assert "hello from A" in curl.stdout

    # The upstream saw the provider key only: not the gateway token, not the client's key.
    assert len(a.seen) == 5
    for seen in a.seen:
        assert seen.key == KEY
        assert token not in repr(seen.headers) and CLIENT_KEY not in repr(seen.headers)

    # bridged recorded the proxied calls like any other.
    from aibridge.v1 import admin_pb2

    wait_until(
        lambda: sum(r.requests for r in admin.QueryUsage(admin_pb2.QueryUsageRequest()).rows) == 5,
        what="usage of the proxied calls",
    )


def test_streams_pass_through_the_proxy_as_they_arrive(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: FakeUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    a = tls_upstream_a
    controlplane.admin.wait_applied(
        controlplane.admin.create_provider(
            "oai", f"https://localhost:{a.port}/v1", keys=[KEY]
        ).revision
    )
    a.hold = threading.Event()
    try:
        with http_client(proxyd, token) as client, client.stream(
            "POST", f"https://localhost:{a.port}/v1/chat/completions",
            json={"model": "m", "messages": [], "stream": True},
        ) as response:  # fmt: skip
            chunks = response.iter_raw()
            assert b"hello " in next(chunks)  # while the upstream still holds the rest
            assert not a.hold.is_set()
            a.hold.set()
            assert b"".join(chunks).rstrip().endswith(b"data: [DONE]")
    finally:
        a.hold.set()


def test_the_ca_can_be_downloaded(mitm: tuple[Bridged, Proxyd]) -> None:
    _bridged, proxyd = mitm
    response = httpx.get(proxyd.url + "/ca.pem")
    assert response.status_code == 200
    assert response.content == proxyd.ca_path.read_bytes()
    assert response.content.startswith(b"-----BEGIN CERTIFICATE-----")
    key = proxyd.ca_path.with_name("proxyd-ca.key")
    assert key.stat().st_mode & 0o777 == 0o600
