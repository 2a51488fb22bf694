"""Hot reload through bridged: every step waits until the revision is applied, never sleeps."""

from __future__ import annotations

import os
import threading
from typing import Any

import httpx

from aibridge.v1 import admin_pb2
from mockupstream import MockUpstream
from tests.harness import Bridged, Controlplane, stream_in_background, wait_until

KEY = "sk-provider-key-000000000001"


def chat(bridged: Bridged, provider: str, token: str, stream: bool = False) -> httpx.Response:
    return httpx.post(
        f"{bridged.provider_url(provider)}/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        timeout=30,
    )


def answered_by(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_reload_scenario(
    controlplane: Controlplane, bridged: Bridged, token: str,
    upstream_a: MockUpstream, upstream_b: MockUpstream,
) -> None:  # fmt: skip
    admin = controlplane.admin

    def applied(response: Any) -> None:
        admin.wait_applied(response.revision)

    # Create a provider → routes to upstream A.
    applied(admin.create_provider("llm", upstream_a.url + "/v1", keys=[KEY]))
    assert answered_by(chat(bridged, "llm", token)) == "hello from A"

    # Change its base_url → routes to B.
    update = admin_pb2.UpdateProviderRequest
    applied(admin.UpdateProvider(update(ref="llm", base_url=upstream_b.url + "/v1")))
    assert answered_by(chat(bridged, "llm", token)) == "hello from B"

    # Disable → 403 provider_disabled, in OpenAI's error shape.
    applied(admin.UpdateProvider(update(ref="llm", enabled=False)))
    disabled = chat(bridged, "llm", token)
    assert disabled.status_code == 403
    assert disabled.json()["error"]["code"] == "provider_disabled"

    # Enable → B again.
    applied(admin.UpdateProvider(update(ref="llm", enabled=True)))
    assert answered_by(chat(bridged, "llm", token)) == "hello from B"

    # Add a second provider → it routes to A, the first still to B.
    applied(admin.create_provider("second", upstream_a.url + "/v1", keys=[KEY]))
    assert answered_by(chat(bridged, "second", token)) == "hello from A"
    assert answered_by(chat(bridged, "llm", token)) == "hello from B"

    # Rename → the new name routes, the old one is gone.
    applied(admin.UpdateProvider(update(ref="llm", name="renamed")))
    assert answered_by(chat(bridged, "renamed", token)) == "hello from B"
    assert chat(bridged, "llm", token).status_code == 404

    # Delete the first → 404 while the second still routes.
    applied(admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref="renamed")))
    gone = chat(bridged, "renamed", token)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "unknown_provider"
    assert answered_by(chat(bridged, "second", token)) == "hello from A"

    # Every request reached the upstream with the provider key, never the gateway token.
    for seen in upstream_a.seen + upstream_b.seen:
        assert seen.key == KEY
        assert token not in repr(seen.headers)


def test_stream_started_before_a_reload_finishes_from_the_old_upstream(
    controlplane: Controlplane, bridged: Bridged, token: str,
    upstream_a: MockUpstream, upstream_b: MockUpstream,
) -> None:  # fmt: skip
    admin = controlplane.admin
    admin.wait_applied(admin.create_provider("moving", upstream_a.url + "/v1", keys=[KEY]).revision)
    admin.wait_applied(admin.create_provider("doomed", upstream_a.url + "/v1", keys=[KEY]).revision)
    upstream_a.hold = threading.Event()
    moving = stream_in_background(bridged, "moving", token)
    doomed = stream_in_background(bridged, "doomed", token)
    for _thread, _result, first_chunk in (moving, doomed):
        assert first_chunk.wait(30), "the streams did not start"

    # While both streams are open: move one provider to B, delete the other.
    update = admin_pb2.UpdateProviderRequest(ref="moving", base_url=upstream_b.url + "/v1")
    admin.wait_applied(admin.UpdateProvider(update).revision)
    deleted = admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref="doomed"))
    admin.wait_applied(deleted.revision)
    assert answered_by(chat(bridged, "moving", token)) == "hello from B"  # new requests: B

    upstream_a.hold.set()
    for thread, result, _first in (moving, doomed):
        thread.join(30)
        assert result["status"] == 200
        body = str(result["body"])
        # Intact: every piece of A's answer, the usage chunk and the end marker.
        text = "".join(
            piece for piece in ("hello ", "from ", "A") if f'"content": "{piece}"' in body
        )
        assert text == "hello from A", body
        assert '"prompt_tokens": 11' in body
        assert body.rstrip().endswith("data: [DONE]")
    # No provider points at A any more: its pool closed once its last stream ended.
    wait_until(
        lambda: metric(bridged, "aibridge_bridged_upstream_pools") == 1, what="A's pool closed"
    )


def metric(bridged: Bridged, name: str) -> float:
    for line in bridged.metrics().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def open_fds(bridged: Bridged) -> int:
    assert bridged.proc is not None
    return len(os.listdir(f"/proc/{bridged.proc.pid}/fd"))


def test_many_reloads_leak_no_pools_or_connections(
    controlplane: Controlplane, bridged: Bridged, token: str,
    upstream_a: MockUpstream, upstream_b: MockUpstream,
) -> None:  # fmt: skip
    admin = controlplane.admin
    admin.wait_applied(admin.create_provider("hop", upstream_a.url + "/v1", keys=[KEY]).revision)
    assert answered_by(chat(bridged, "hop", token)) == "hello from A"
    baseline = open_fds(bridged)
    for i in range(30):
        upstream = (upstream_b, upstream_a)[i % 2]
        update = admin_pb2.UpdateProviderRequest(ref="hop", base_url=upstream.url + "/v1")
        admin.wait_applied(admin.UpdateProvider(update).revision)
        assert answered_by(chat(bridged, "hop", token)) == upstream.text()
    # One live origin, one pool; the connections of the others are closed.
    wait_until(lambda: metric(bridged, "aibridge_bridged_upstream_pools") == 1, what="one pool")
    wait_until(lambda: open_fds(bridged) <= baseline + 1, what="fds back to the baseline")
