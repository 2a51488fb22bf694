"""One rule for a provider's base_url (common/urls.py), applied alike by its three users:
the controlplane refuses what the data planes would skip, and bridged and proxyd read an
accepted one the same way. A row that breaks the rule (from a database written before the
rule) is skipped and reported by both data planes, which keep serving the others."""

from __future__ import annotations

import grpc
import httpx
import pytest

from aibridge.v1 import admin_pb2, snapshot_pb2
from bridged.routes import Route, _route
from common.urls import BadBaseURL, BaseURL, parse_base_url
from controlplane import validation
from controlplane.errors import InvalidArgument
from mockupstream import MockUpstream
from proxyd.routes import build_host_router, host_key
from tests.harness import Bridged, Controlplane, Proxyd, insert_copy, refused, skipped_by
from tests.proxy_client import connect, request_through

# The cases on which the three parsers of old disagreed, or could have.
USABLE = {  # base_url → (origin, path, host, port)
    "https://api.example/v1": ("https://api.example", "/v1", "api.example", 443),
    # Trailing slashes go; so does the scheme's default port.
    "https://api.example/v1/": ("https://api.example", "/v1", "api.example", 443),
    "https://api.example/v1//": ("https://api.example", "/v1", "api.example", 443),
    "https://api.example/": ("https://api.example", "", "api.example", 443),
    "https://api.example:443/v1": ("https://api.example", "/v1", "api.example", 443),
    "http://api.example:8443": ("http://api.example:8443", "", "api.example", 8443),
    # Upper case: scheme and host are lowercased, the path kept.
    "HTTPS://API.Example.COM/V1": ("https://api.example.com", "/V1", "api.example.com", 443),
    # IPv6 literals, in their shortest spelling.
    "http://[::1]:9000/v1/": ("http://[::1]:9000", "/v1", "::1", 9000),
    "https://[0:0::1]/v1": ("https://[::1]", "/v1", "::1", 443),
    # An internationalised host as it is sent: punycode.
    "https://bücher.example/v1": (
        "https://xn--bcher-kva.example", "/v1", "xn--bcher-kva.example", 443,
    ),
}  # fmt: skip
UNUSABLE = {  # base_url → the reason, as the field's message
    "https://user:pass@api.example/v1": "must not carry credentials; add a key instead",
    "https://user@api.example/v1": "must not carry credentials; add a key instead",
    "https://:pass@api.example/v1": "must not carry credentials; add a key instead",
    "https://@api.example/v1": "must not carry credentials; add a key instead",
    "": "is required",
    "https:///v1": "must have a host",
    "https:api.example/v1": "must have a host",
    "ftp://api.example": "must be an absolute http:// or https:// URL",
    "api.example/v1": "must be an absolute http:// or https:// URL",
    "https://api.example:0/v1": "has port 0",
    "https://api.example:99999/v1": "is malformed",
    "https://api.example:x/v1": "is malformed",
    "https://api.example:-1/v1": "is malformed",
    "http://[::1/v1": "is malformed",
    "https://api.example/v1?x=1": "must not have a query or fragment",
    "https://api.example/v1?": "must not have a query or fragment",
    "https://api.example/v1#f": "must not have a query or fragment",
    "https://api.example/v1#": "must not have a query or fragment",
    " https://api.example/v1": "must not contain whitespace or control characters",
    "https://api.example/v\x001": "must not contain whitespace or control characters",
}


@pytest.mark.parametrize("text", USABLE)
def test_a_usable_base_url_is_read_one_way(text: str) -> None:
    assert parse_base_url(text) == BaseURL(*USABLE[text])


@pytest.mark.parametrize("text", UNUSABLE)
def test_an_unusable_base_url_says_why_without_repeating_it(text: str) -> None:
    with pytest.raises(BadBaseURL) as refusal:
        parse_base_url(text)
    assert str(refusal.value).startswith(UNUSABLE[text])
    assert "pass" not in str(refusal.value)


def provider(base_url: str) -> snapshot_pb2.SnapshotProvider:
    return snapshot_pb2.SnapshotProvider(id="prv_x", name="p", type="openai", base_url=base_url)


@pytest.mark.parametrize("text", USABLE)
def test_the_controlplane_and_both_data_planes_accept_it_alike(text: str) -> None:
    url = parse_base_url(text)
    assert validation.base_url(text) == text.rstrip("/")  # stored as given
    route = _route(provider(text))
    assert isinstance(route, Route), route
    assert (route.base_url, route.origin) == (url.url, url.origin)
    router, skipped = build_host_router(snapshot_pb2.ProviderSnapshot(providers=[provider(text)]))
    assert skipped == []
    (key,) = router.hosts
    assert (key, router.hosts[key].base_path) == (host_key(url.host, url.port), url.path)


@pytest.mark.parametrize("text", UNUSABLE)
def test_the_controlplane_and_both_data_planes_refuse_it_alike(text: str) -> None:
    reason = _route(provider(text))  # bridged's
    assert isinstance(reason, str) and reason.startswith(f"unusable base_url: {UNUSABLE[text]}")
    with pytest.raises(InvalidArgument) as refusal:
        validation.base_url(text)
    assert str(refusal.value) == "base_url: " + reason.removeprefix("unusable base_url: ")
    router, skipped = build_host_router(snapshot_pb2.ProviderSnapshot(providers=[provider(text)]))
    assert router.hosts == {}
    assert [(s.provider_id, s.reason) for s in skipped] == [("prv_x", reason)]


# End to end: a row the admin API would refuse, written straight into the database.
KEY = "sk-provider-key-base-urls-0001"
LEAKY_ID = "prv_baseurlsleaky01"


def test_a_base_url_with_credentials_is_skipped_by_both_data_planes(
    controlplane: Controlplane, mitm: tuple[Bridged, Proxyd], token: str,
    tls_upstream_a: MockUpstream, tls_upstream_b: MockUpstream,
) -> None:  # fmt: skip
    bridged, proxyd = mitm
    admin = controlplane.admin
    leaky_url = f"https://user:hunter2-secret@localhost:{tls_upstream_a.port}/v1"
    create = admin_pb2.CreateProviderRequest(name="leaky", type="openai", base_url=leaky_url)
    refused(
        controlplane, grpc.StatusCode.INVALID_ARGUMENT, admin.CreateProvider, create, "base_url"
    )
    admin.create_provider("good", f"https://127.0.0.1:{tls_upstream_b.port}/v1", keys=[KEY])
    insert_copy(controlplane.database_url, "good", id=LEAKY_ID, name="leaky", base_url=leaky_url)
    # The insert bumped no revision: an admin change makes the next snapshot carry it.
    touched = admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref="good", display_name="G"))
    admin.wait_applied(touched.revision)

    reason = "unusable base_url: must not carry credentials; add a key instead"
    for role in ("bridged", "proxyd"):
        assert skipped_by(controlplane, role) == {"leaky": (LEAKY_ID, reason)}, role
    assert f"provider leaky ({LEAKY_ID}) skipped: {reason}" in bridged.log()
    assert f"provider leaky ({LEAKY_ID}) not intercepted: {reason}" in proxyd.log()
    for process in (controlplane, bridged, proxyd):
        assert "hunter2-secret" not in process.log()

    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": f"Bearer {token}"}
    leaky = httpx.post(f"{bridged.provider_url('leaky')}/v1/chat/completions", json=chat,
                       headers=auth, timeout=30)  # fmt: skip
    assert leaky.status_code == 404, leaky.text
    good = httpx.post(f"{bridged.provider_url('good')}/v1/chat/completions", json=chat,
                      headers=auth, timeout=30)  # fmt: skip
    assert good.json()["choices"][0]["message"]["content"] == "hello from B"
    # Through proxyd, too: the good provider's host is intercepted, the leaky one's not.
    host = f"127.0.0.1:{tls_upstream_b.port}"
    reply = request_through(
        proxyd.port, host, token, proxyd.ca_path, "POST", "/v1/chat/completions", chat
    )
    assert reply.status == 200
    status, sock = connect(proxyd.port, f"localhost:{tls_upstream_a.port}", token)
    sock.close()
    assert status == 403  # not a provider host: a tunnel, which loopback may not be
    assert tls_upstream_a.seen == []
