"""A background task that fails ends its process: logged with its traceback, after the
usual graceful shutdown, with status 1 for the process manager to restart it. Never a
process that goes on serving with a dead loop inside."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.harness import PG_ADMIN_DSN, PYTHON, REPO, Controlplane, Secrets, clean_env, wait_until


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "supervised.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [PYTHON, "-m", "tests.run_supervised", *args],
            cwd=REPO, env=clean_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, log


def ended(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    try:
        return process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_task_that_raises_ends_the_process_with_status_1_after_a_graceful_shutdown(
    tmp_path: Path,
) -> None:
    process, log = start(tmp_path, "raise")
    assert ended(process) == 1
    text = log.read_text()
    assert "doomed failed" in text
    assert "Traceback (most recent call last)" in text
    assert "OverflowError: int too large to convert to float" in text
    assert text.index("shutting down") < text.index("stopped")  # the usual shutdown ran


def test_a_task_that_returns_ends_the_process_too(tmp_path: Path) -> None:
    process, log = start(tmp_path, "return")
    assert ended(process) == 1
    text = log.read_text()
    assert "doomed ended, though it should run until shutdown" in text
    assert "stopped" in text


def test_sigterm_without_a_failure_ends_it_with_status_0(tmp_path: Path) -> None:
    process, log = start(tmp_path, "steady")
    wait_until(lambda: "serving" in log.read_text(), what="the process to serve")
    process.send_signal(signal.SIGTERM)
    assert ended(process) == 0
    text = log.read_text()
    assert "stopped" in text
    assert "failed" not in text and "ended" not in text


def test_a_shutdown_that_hangs_after_a_failure_is_cut_short(tmp_path: Path) -> None:
    started = time.monotonic()
    process, log = start(tmp_path, "raise", "hang")
    assert ended(process) == 1
    assert time.monotonic() - started < 15  # the limit is 1 s past the failure
    text = log.read_text()
    assert "exiting now (status 1)" in text
    assert "stopped" not in text


@pytest.mark.postgres
def test_a_controlplane_whose_fleet_mirror_breaks_exits_with_its_traceback(
    postgres_url: str, tmp_path: Path, secrets: Secrets
) -> None:
    cp = Controlplane(postgres_url, tmp_path, secrets).start()
    try:
        # Not an outage (retried) but an error nobody expects: the table is gone.
        dbname = postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN_DSN.replace("dbname=postgres", f"dbname={dbname}")) as conn:
            conn.execute("DROP TABLE subscribers")
        proc = cp.proc
        assert proc is not None
        wait_until(lambda: proc.poll() is not None, 30, "the controlplane to exit")
        assert proc.returncode == 1
        log = cp.log()
        assert "fleet failed" in log
        assert "Traceback (most recent call last)" in log
        assert 'relation "subscribers" does not exist' in log
        assert "shutting down" in log
    finally:
        cp.stop()
