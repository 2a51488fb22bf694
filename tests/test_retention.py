"""Retention: the controlplane deletes the interceptions older than --retention, in
batches, says so in its log, outlives a database outage, and may run on several replicas
at once. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aibridge.v1 import admin_pb2
from controlplane import config
from controlplane.retention import BATCH, Retention
from controlplane.store.db import Database
from tests.harness import (
    Controlplane,
    Secrets,
    async_wait_until,
    free_port,
    interception,
    report,
    wait_until,
)

HOUR = timedelta(hours=1)
MARGIN = timedelta(minutes=2)


def stored_ids(cp: Controlplane) -> list[str]:
    request = admin_pb2.ListInterceptionsRequest(limit=1000)
    response = cp.admin.ListInterceptions(request)
    assert response.next_cursor == ""
    return sorted(r.id for r in response.interceptions)


def deletion_lines(cp: Controlplane) -> list[str]:
    return [line for line in cp.log().splitlines() if "retention: deleted" in line]


def test_exactly_the_interceptions_older_than_the_retention_go(
    database_url: str, tmp_path: Path, secrets: Secrets
) -> None:
    """2.5 batches of calls just older than an hour go; those just younger stay."""
    cp = Controlplane(
        database_url, tmp_path, secrets,
        extra_args=("--retention", "1h", "--retention-interval", "0.2"),
    ).start()  # fmt: skip
    try:
        old_count = BATCH * 5 // 2
        old = [interception(f"old-{n:04d}", HOUR + MARGIN + n * MARGIN / 10_000)
               for n in range(old_count)]  # fmt: skip
        young = [interception(f"young-{n}", HOUR - MARGIN - n * MARGIN) for n in range(3)]
        young.append(interception("now", timedelta(0)))
        assert report(cp, old + young, secrets.bridged) == len(old) + len(young)

        wait_until(lambda: deletion_lines(cp), what="a retention run that deleted")
        (line,) = deletion_lines(cp)
        match = re.search(r"deleted (\d+) interceptions started before (\S+)$", line)
        assert match, line
        assert int(match.group(1)) == old_count
        before = datetime.fromisoformat(match.group(2))
        assert datetime.now(UTC) - HOUR - timedelta(seconds=30) < before < datetime.now(UTC) - HOUR
        assert stored_ids(cp) == sorted(r.request_id for r in young)
    finally:
        cp.stop()


def test_replicas_deleting_together_delete_each_row_once(
    database_url: str, tmp_path: Path, secrets: Secrets
) -> None:
    cp = Controlplane(database_url, tmp_path, secrets, extra_args=("--retention", "off")).start()
    db = Database(database_url)
    try:
        old = [interception(f"old-{n:04d}", HOUR + MARGIN) for n in range(2500)]
        assert report(cp, [*old, interception("young", HOUR - MARGIN)], secrets.bridged) == 2501

        async def together() -> list[int]:
            replicas = [Retention(db, HOUR, interval=1, batch=100) for _ in range(3)]
            return await asyncio.gather(*(r.run_once() for r in replicas))

        assert sum(asyncio.run(together())) == 2500
        assert stored_ids(cp) == ["young"]
        assert deletion_lines(cp) == []  # with --retention off, the controlplane deletes none
    finally:
        db.dispose()
        cp.stop()


def test_a_database_outage_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    unreachable = Database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/aibridge")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    async def scenario() -> None:
        task = asyncio.create_task(Retention(unreachable, HOUR, interval=0.05).run())
        try:
            await async_wait_until(lambda: len(warnings()) >= 3, what="three failed runs")
            assert not task.done()
        finally:
            task.cancel()

    with caplog.at_level(logging.WARNING, logger="controlplane.retention"):
        asyncio.run(scenario())
    assert all(w.startswith("retention: database unavailable, trying again") for w in warnings())
    unreachable.dispose()


@pytest.mark.parametrize(
    ("value", "period"),
    [("60d", timedelta(days=60)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
     ("36500d", timedelta(days=36500)), ("0", None), ("off", None), ("OFF", None)],
)  # fmt: skip
def test_retention_flag(tmp_path: Path, value: str, period: timedelta | None) -> None:
    state = ["--state-dir", str(tmp_path)]
    assert config.parse(state, {}).retention == timedelta(days=60)
    assert config.parse([*state, "--retention", value], {}).retention == period
    assert config.parse(state, {"AIBRIDGE_RETENTION": value}).retention == period
