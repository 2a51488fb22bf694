"""Real clients through proxyd, trusting its CA: the SDKs, curl, streams; and the CA. The
module's tests share a controlplane, bridged and proxyd (per database), each with
upstreams and providers of its own."""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import anthropic
import httpx
import openai
import pytest

from aibridge.v1 import admin_pb2
from mockupstream import ANTHROPIC_USAGE, OPENAI_USAGE, MockUpstream
from tests.conftest import UpstreamPKI, proxyd_before_bridged
from tests.harness import Bridged, Controlplane, Proxyd, unique, wait_until

KEY = "sk-proxied-provider-key-0001"
CLIENT_KEY = "sk-client-side-dummy"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> UpstreamPKI:
    """The module's upstream CA: the module's bridged trusts it, each test's upstreams
    (tls_upstream_a, tls_upstream_b) present a certificate it issued."""
    return UpstreamPKI.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mitm(
    shared_controlplane: Controlplane, tmp_path_factory: pytest.TempPathFactory, pki: UpstreamPKI
) -> Iterator[tuple[Bridged, Proxyd]]:
    """bridged (trusting the module's upstream CA) with proxyd in front of it."""
    cp = shared_controlplane
    with proxyd_before_bridged(cp, tmp_path_factory.mktemp("mitm"), cp.secrets, pki) as pair:
        yield pair


def http_client(proxyd: Proxyd, token: str, sdk: ModuleType = httpx) -> Any:
    """An HTTP client that goes through proxyd (HTTPS_PROXY style) and trusts its CA. Each
    SDK may bring its own httpx flavour (anthropic's is httpx2): `sdk.DefaultHttpxClient`
    is that flavour's Client with the SDK's defaults."""
    trust = ssl.create_default_context(cafile=str(proxyd.ca_path))
    make = httpx.Client if sdk is httpx else sdk.DefaultHttpxClient
    return make(proxy=proxyd.proxy_url(token), verify=trust, timeout=30)


def test_sdks_and_curl_through_the_proxy(
    shared_controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], shared_token: str,
    tls_upstream_a: MockUpstream, tls_upstream_b: MockUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    a, b, token = tls_upstream_a, tls_upstream_b, shared_token
    admin = shared_controlplane.admin
    oai_name, ant_name = unique("oai"), unique("ant")
    admin.create_provider(oai_name, f"https://localhost:{a.port}/v1", keys=[KEY])
    last = admin.create_provider(
        ant_name, f"https://localhost:{b.port}", type="anthropic", keys=[KEY]
    )
    admin.wait_applied(last.revision)

    # openai: the client thinks it talks to the provider's host directly. (Each client is
    # closed when done: proxyd's shutdown waits for the connections left open.)
    with openai.OpenAI(
        base_url=f"https://localhost:{a.port}/v1", api_key=CLIENT_KEY,
        http_client=http_client(proxyd, token, openai),
    ) as oai:  # fmt: skip
        answer = oai.chat.completions.create(model="m", messages=MESSAGES)
        assert answer.choices[0].message.content == "hello from A"
        chunks = list(
            oai.chat.completions.create(
                model="m", messages=MESSAGES, stream=True,
                stream_options={"include_usage": True},
            )
        )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello from A"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == OPENAI_USAGE["prompt_tokens"]

    # anthropic, with an anthropic-type provider.
    with anthropic.Anthropic(
        base_url=f"https://localhost:{b.port}", api_key="dummy",
        http_client=http_client(proxyd, token, anthropic),
    ) as ant:  # fmt: skip
        message = ant.messages.create(model="c", max_tokens=5, messages=MESSAGES)
        block = message.content[0]
        assert block.type == "text" and block.text == "hello from B"
        with ant.messages.stream(model="c", max_tokens=5, messages=MESSAGES) as stream:
            assert "".join(stream.text_stream) == "hello from B"
            final = stream.get_final_message()
            assert final.usage.input_tokens == ANTHROPIC_USAGE["input_tokens"]

    # curl -x http://user:TOKEN@proxy --cacert CA
    curl = subprocess.run(
        ["/usr/bin/curl", "-sS", "--fail", "-x", proxyd.proxy_url(token),
         "--cacert", str(proxyd.ca_path), "-H", "Content-Type: application/json",
         "-d", '{"model": "m", "messages": []}',
         f"https://localhost:{a.port}/v1/chat/completions"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert curl.returncode == 0, curl.stderr
    assert "hello from A" in curl.stdout

    # The upstreams saw the provider key only: never the gateway token or the client's key.
    assert [s.path for s in a.seen] == ["/v1/chat/completions"] * 3
    assert [s.path for s in b.seen] == ["/v1/messages"] * 2
    for seen in a.seen + b.seen:
        assert seen.key == KEY
        for secret in (token, CLIENT_KEY, "dummy"):
            assert secret not in repr(seen.headers)

    # bridged recorded the proxied calls like any other.
    def usage() -> dict[str, tuple[int, int]]:
        rows = admin.QueryUsage(admin_pb2.QueryUsageRequest(group_by="provider")).rows
        mine = (oai_name, ant_name)
        return {r.key: (r.requests, r.input_tokens) for r in rows if r.key in mine}

    expected = {
        oai_name: (3, 3 * OPENAI_USAGE["prompt_tokens"]),
        ant_name: (2, 2 * ANTHROPIC_USAGE["input_tokens"]),
    }
    wait_until(lambda: usage() == expected, what=f"usage {expected}, have {usage()}")


def test_streams_pass_through_the_proxy_as_they_arrive(
    shared_controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], shared_token: str,
    tls_upstream_a: MockUpstream,
) -> None:  # fmt: skip
    _bridged, proxyd = mitm
    a, token = tls_upstream_a, shared_token
    admin = shared_controlplane.admin
    created = admin.create_provider(unique("oai"), f"https://localhost:{a.port}/v1", keys=[KEY])
    admin.wait_applied(created.revision)
    a.hold = threading.Event()  # the upstream sends its first SSE event, then waits
    try:
        with http_client(proxyd, token) as client, client.stream(
            "POST", f"https://localhost:{a.port}/v1/chat/completions",
            json={"model": "m", "messages": MESSAGES, "stream": True},
        ) as response:  # fmt: skip
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            chunks = response.iter_raw()
            first = next(chunks)
            assert first.startswith(b"data: ") and b'"hello "' in first
            assert not a.hold.is_set()  # it came through while the upstream held the rest
            a.hold.set()
            rest = b"".join(chunks)
            assert b'"from "' in rest and rest.rstrip().endswith(b"data: [DONE]")
    finally:
        a.hold.set()


def test_the_ca_can_be_downloaded(mitm: tuple[Bridged, Proxyd]) -> None:
    _bridged, proxyd = mitm
    response = httpx.get(proxyd.url + "/ca.pem")
    assert response.status_code == 200
    assert response.content == proxyd.ca_path.read_bytes()
    assert response.content.startswith(b"-----BEGIN CERTIFICATE-----")
