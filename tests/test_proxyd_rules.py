"""proxyd's rules that need no process: which addresses a tunnel may reach, which request
targets an intercepted connection accepts, and how hosts are keyed."""

from __future__ import annotations

import ipaddress

import pytest

from common.urls import parse_base_url
from proxyd.mitm import safe_target
from proxyd.routes import host_key
from proxyd.tunnel import TunnelPolicy

POLICY = TunnelPolicy(frozenset({443}), ())


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.100.100.200",
     "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1", "2002:0a00:0001::1", "224.0.0.1"],
)  # fmt: skip
def test_special_addresses_are_refused(address: str) -> None:
    assert not POLICY.address_allowed(address)


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::a9fe:a9fe",  # NAT64 (well-known prefix) to 169.254.169.254
     "64:ff9b::a00:1",  # NAT64 to 10.0.0.1
     "64:ff9b:1::a9fe:a9fe", "64:ff9b:1:a9fe:a9:fe00::",  # NAT64, local-use prefix
     "::127.0.0.1", "::a00:1",  # IPv4-compatible
     "::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe",  # IPv4-translated (SIIT)
     "::ffff:127.0.0.1",  # IPv4-mapped
     "2002:7f00:1::1",  # 6to4
     "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo
     "2606:4700::200:5efe:a00:1", "2606:4700::5efe:7f00:1"],  # ISATAP under a global prefix
)  # fmt: skip
def test_ipv6_addresses_that_carry_a_private_ipv4_address_are_refused(address: str) -> None:
    assert not POLICY.address_allowed(address)


def test_public_addresses_and_allowed_ranges_pass() -> None:
    assert POLICY.address_allowed("8.8.8.8")
    assert POLICY.address_allowed("2606:4700::1111")
    assert POLICY.address_allowed("64:ff9b::808:808")  # NAT64 to a public address
    assert POLICY.address_allowed("2606:4700::200:5efe:808:808")  # ISATAP, public IPv4
    allowing = TunnelPolicy(frozenset({443}), (ipaddress.ip_network("127.0.0.0/8"),))
    assert allowing.address_allowed("127.0.0.1")
    assert allowing.address_allowed("::ffff:127.0.0.1")
    assert allowing.address_allowed("64:ff9b::7f00:1")  # the same destination, translated
    assert not allowing.address_allowed("10.0.0.1")
    assert not allowing.address_allowed("64:ff9b::a00:1")


@pytest.mark.parametrize(
    ("target", "safe"),
    [(b"/v1/chat/completions", True), (b"/v1/messages?beta=true", True),
     (b"/v1/../../other/v1/chat/completions", False), (b"/v1/%2e%2e/x", False),
     (b"/v1/%2E%2e%2Fx", False), (b"http://elsewhere/v1/x", False), (b"*", False)],
)  # fmt: skip
def test_only_plain_paths_are_forwarded(target: bytes, safe: bool) -> None:
    assert safe_target(target) is safe


def test_hosts_are_keyed_without_case_brackets_or_trailing_dot() -> None:
    assert host_key("API.OpenAI.com.", 443) == "api.openai.com:443"
    assert host_key("[::1]", 8443) == "[::1]:8443"


def test_every_spelling_of_an_ipv6_address_is_one_host() -> None:
    # As a CONNECT may write them, and as the base_url's host reads (shortest form).
    for spelling in ("[0:0:0:0:0:0:0:1]", "[::0:1]", "::1"):
        assert host_key(spelling, 443) == "[::1]:443"
    assert host_key("[::FFFF:127.0.0.1]", 443) == "[::ffff:7f00:1]:443"
    assert host_key(parse_base_url("https://[::ffff:127.0.0.1]/v1").host, 443) == (
        "[::ffff:7f00:1]:443"
    )
