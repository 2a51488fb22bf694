"""The route table's URL rules, without processes: how a client path maps onto base_url."""

from __future__ import annotations

from yarl import URL

from bridged.routes import Route


def route(type: str, base_url: str) -> Route:
    return Route("prv_x", "p", type, True, URL(base_url), ())


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
    assert r.endpoint("POST", "/v1/chat/completions").route == "chat.completions"
    for path in ("/v1/models/../files", "/v1/models/./x", "/v1//chat/completions", "/v1/files"):
        assert r.endpoint("GET", path) is None and r.endpoint("POST", path) is None
