"""The route table's URL rules, without processes: how a client path maps onto base_url."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aibridge.v1 import snapshot_pb2
from bridged.routes import ProviderKey, Route, _route
from common.urls import _parsed_url, _plain_url


def route(type: str, base_url: str) -> Route:
    result = _route(
        snapshot_pb2.SnapshotProvider(id="prv_x", name="p", type=type, base_url=base_url)
    )
    assert isinstance(result, Route), result
    return result


def test_openai_paths_map_onto_a_versioned_base_url_and_keep_the_query_as_sent() -> None:
    r = route("openai", "https://openrouter.example/api/v1")
    url = r.upstream_url("/v1/chat/completions", "a=%26b&c=d%20e")
    assert str(url) == "https://openrouter.example/api/v1/chat/completions?a=%26b&c=d%20e"


def test_anthropic_paths_map_onto_the_host_root() -> None:
    r = route("anthropic", "https://api.anthropic.example")
    assert str(r.upstream_url("/v1/messages", "beta=true")) == (
        "https://api.anthropic.example/v1/messages?beta=true"
    )


def test_the_allowlist_refuses_dot_segments_and_unknown_paths() -> None:
    r = route("openai", "https://api.example/v1")
    assert r.endpoint("GET", "/v1/models/gpt-4o") is not None
    chat = r.endpoint("POST", "/v1/chat/completions")
    assert chat is not None and chat.route == "chat.completions"
    for path in ("/v1/models/../files", "/v1/models/./x", "/v1//chat/completions", "/v1/files"):
        assert r.endpoint("GET", path) is None and r.endpoint("POST", path) is None


def test_base_urls_are_written_as_yarl_writes_them() -> None:
    for given_url, base_url, origin in [
        ("https://api.example/v1/", "https://api.example/v1", "https://api.example"),
        ("https://api.example:443/v1", "https://api.example/v1", "https://api.example"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        # Not plain: parsed by yarl (upper case, IDNA, IPv6, a dot segment).
        ("https://API.Example/v1", "https://api.example/v1", "https://api.example"),
        ("https://bücher.example/v1", "https://xn--bcher-kva.example/v1",
         "https://xn--bcher-kva.example"),
        ("http://[::1]:9000/v1", "http://[::1]:9000/v1", "http://[::1]:9000"),
        ("https://api.example/a/../v1", "https://api.example/v1", "https://api.example"),
    ]:  # fmt: skip
        r = route("openai", given_url)
        assert (r.base_url, r.origin) == (base_url, origin), given_url


def test_unusable_base_urls_say_why() -> None:
    for bad in ["ftp://h.example", "https://", "/v1", "https://h.example/v1?x=1",
                "https://h.example#f", "https://h.example:99999",
                "https://h.example:x"]:  # fmt: skip
        provider = snapshot_pb2.SnapshotProvider(id="x", name="p", type="openai", base_url=bad)
        assert str(_route(provider)).startswith("unusable base_url"), bad


_label = st.from_regex(r"[a-z0-9-]{1,8}", fullmatch=True)
_segment = st.from_regex(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,6}", fullmatch=True) | st.sampled_from(
    [".", "..", "v1", ".well-known", "a..b", "%2e", "é"]
)
_urls = st.builds(
    lambda scheme, host, port, segments, slash: (
        f"{scheme}://{'.'.join(host)}{port}{''.join('/' + s for s in segments)}{slash}"
    ),
    st.sampled_from(["http", "https", "HTTP", "ftp"]),
    st.lists(_label, min_size=1, max_size=3),
    st.sampled_from(["", ":80", ":443", ":8443", ":0", ":65536", ":1", ":080", ":0443", ":08080"])
    | st.integers(0, 99999).map(lambda n: f":{n}"),
    st.lists(_segment, max_size=4),
    st.sampled_from(["", "/"]),
)


@given(_urls)
def test_the_plain_url_shortcut_agrees_with_yarl(url: str) -> None:
    """What the shortcut accepts, yarl accepts too, and writes the same way."""
    plain = _plain_url(url)
    if plain is not None:
        assert plain == _parsed_url(url)


def test_a_key_never_shows_its_secret() -> None:
    key = ProviderKey("key_1", "sk-secret-value", "sk-…alue")
    assert "sk-secret-value" not in repr(key) and "sk-secret-value" not in str((key,))
