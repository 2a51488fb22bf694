"""`make run` starts the Procfile with honcho; right after, `aibridgectl status` works with
no flags, from the same directory; the README's first hour works against the mock
upstream (`make demo-upstream`), with no provider key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import httpx

from tests.harness import PYTHON, REPO, clean_env, free_port, wait_until

BIN = Path(sys.executable).parent


def test_procfile_under_honcho_then_ctl_with_no_flags(tmp_path: Path) -> None:
    port, bridged_port, proxyd_port = free_port(), free_port(), free_port()
    console_port = free_port()
    env = clean_env() | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        # The default ports may be taken on a shared machine; everything else is default.
        "AIBRIDGE_CONTROLPLANE_LISTEN": f"127.0.0.1:{port}",
        "AIBRIDGE_CONTROLPLANE_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
        "AIBRIDGE_BRIDGED_LISTEN": f"127.0.0.1:{bridged_port}",
        "AIBRIDGE_CONTROLPLANE": f"127.0.0.1:{port}",
        "AIBRIDGE_PROXYD_LISTEN": f"127.0.0.1:{proxyd_port}",
        "AIBRIDGE_BRIDGED_URL": f"http://127.0.0.1:{bridged_port}",
        "AIBRIDGE_CONSOLE_LISTEN": f"127.0.0.1:{console_port}",
    }
    honcho = subprocess.Popen(
        [str(BIN / "honcho"), "start", "-f", str(REPO / "Procfile"), "-d", str(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    ctl_env = env

    def status() -> subprocess.CompletedProcess[str] | None:
        assert honcho.poll() is None, honcho.stdout.read().decode() if honcho.stdout else ""
        result = subprocess.run(
            [PYTHON, "-m", "controlplane.ctl", "status", "--json"],
            cwd=tmp_path, env=ctl_env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return result if result.returncode == 0 else None

    try:
        result = wait_until(status, timeout=60, what="the gateway to start under honcho")
        assert '"revision": 1' in result.stdout
        # bridged subscribed with the generated credential and is ready.
        wait_until(lambda: '"role": "bridged"' in (status() or result).stdout, what="bridged")
        wait_until(lambda: '"role": "proxyd"' in (status() or result).stdout, what="proxyd")
        for ready in (f"{bridged_port}/readyz", f"{proxyd_port}/readyz", f"{console_port}/healthz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{ready}", timeout=5) as r:
                assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{proxyd_port}/ca.pem", timeout=5) as r:
            assert r.read() == (tmp_path / ".aibridge" / "proxyd-ca.pem").read_bytes()
        state = tmp_path / ".aibridge"
        assert (state / "aibridge.db").exists()
        # Every file in the state directory, whatever the shell's umask (the README says so).
        assert {path.name for path in state.iterdir()} >= {
            "admin.token", "viewer.token", "bridged.token", "proxyd.token", "encryption.keys",
            "proxyd-ca.key",
            "proxyd-ca.pem", "aibridge.db", "aibridge.db-wal", "aibridge.db-shm",
        }  # fmt: skip
        for path in state.iterdir():
            assert path.stat().st_mode & 0o777 == 0o600, path.name
        first_hour_without_a_provider_key(tmp_path, env, bridged_port)
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        output, _ = honcho.communicate(timeout=30)
    text = output.decode(errors="replace")
    assert "serving gRPC" in text
    # Starting together and stopping together (Ctrl-C) are normal: nothing that looks like
    # an error (the data planes may start before the controlplane answers), and every
    # process ends on its own, status 0, not killed by the signal.
    alarming = [line for line in text.splitlines()
                if any(word in line for word in (" WARNING ", " ERROR ", "Traceback"))]  # fmt: skip
    assert not alarming, text
    for name in ("controlplane", "bridged", "proxyd"):
        assert f"{name}.1 stopped (rc=0)" in text, text
    for name in ("admin.token", "bridged.token", "proxyd.token"):
        assert (state / name).read_text().strip() not in text


def first_hour_without_a_provider_key(
    workdir: Path, env: dict[str, str], bridged_port: int
) -> None:
    """The README's walk-through: the mock upstream, a provider with its key from standard
    input, a token, and a call through the gateway."""
    mock_port = free_port()
    mock = subprocess.Popen(
        [str(BIN / "aibridge-mock-upstream"), "--listen", f"127.0.0.1:{mock_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def aibridgectl(*args: str, stdin: str = "") -> str:
        result = subprocess.run(
            [str(BIN / "aibridgectl"), *args], cwd=workdir, env=env, input=stdin,
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{mock_port}/v1/models"), what="the mock")
        aibridgectl(
            "providers", "create", "demo", "--type", "openai", "--wait",
            "--base-url", f"http://127.0.0.1:{mock_port}/v1", "--key", "-", stdin="any-key\n",
        )  # fmt: skip
        created = json.loads(aibridgectl("tokens", "create", "me", "--wait", "--json"))
        answer = httpx.post(
            f"http://127.0.0.1:{bridged_port}/api/v2/aibridge/demo/v1/chat/completions",
            headers={"Authorization": f"Bearer {created['token']}"},
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "hello from the mock upstream"
    finally:
        mock.terminate()
        assert mock.wait(10) == 0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
