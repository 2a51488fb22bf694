"""Database space per 1,000 interceptions, on SQLite and on PostgreSQL, for three kinds
of record: counts only (every record.* setting off), a typical agent turn (a prompt of a
few hundred bytes, two tool calls, a tool result, a session), and the largest a default
gateway records (a 32 KiB prompt and four tool calls of 4 KiB).

Records go in through the real Usage service, as bridged sends them. The texts are words
drawn at random from a vocabulary, so that they compress about as prose does (PostgreSQL
compresses large values; SQLite does not). Space is what the interceptions table and
its indexes grew by: SQLite's pages in use, PostgreSQL's pg_total_relation_size (with
TOAST).

python -m bench.storage [--records 5000] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import psycopg
from sqlalchemy.engine import make_url

from aibridge.v1 import usage_pb2, usage_pb2_grpc
from bench.common import emit, table
from tests.harness import Controlplane, Secrets, postgres_database

WORDS = (
    "the file function test error value return import class self list read write call "
    "path config module request response token model stream event chunk usage session "
    "tool result string number index loop check build run commit branch merge diff line"
).split()
BATCH_BYTES = 2 * 1024 * 1024  # under the controlplane's 4 MiB limit on usage requests


def text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def arguments(rng: random.Random, size: int) -> str:
    return '{"command": "' + text(rng, max(size - 16, 1)) + '"}'


def counts_only(rng: random.Random, n: int) -> usage_pb2.Interception:
    return usage_pb2.Interception(client="claude-code")


def agent_turn(rng: random.Random, n: int) -> usage_pb2.Interception:
    return usage_pb2.Interception(
        client="claude-code",
        session_id=f"5f2b9c1e-4a7d-4e21-9c3b-{n // 20:012x}",
        prompt=text(rng, 400),
        tool_calls=[
            usage_pb2.ToolCall(id=f"toolu_{n}_{i}", name="Bash", arguments=arguments(rng, 250))
            for i in range(2)
        ],
        tool_results=[usage_pb2.ToolResult(tool_call_id=f"toolu_{n - 1}_0")],
        stop_reason="tool_use",
    )


def largest(rng: random.Random, n: int) -> usage_pb2.Interception:
    return usage_pb2.Interception(
        client="claude-code",
        session_id=f"5f2b9c1e-4a7d-4e21-9c3b-{n:012x}",
        prompt=text(rng, 32 * 1024),
        prompt_truncated=True,
        tool_calls=[
            usage_pb2.ToolCall(id=f"toolu_{n}_{i}", name="Write", arguments=arguments(rng, 4096))
            for i in range(4)
        ],
        stop_reason="tool_use",
        partial=True,
    )


KINDS: dict[str, Callable[[random.Random, int], usage_pb2.Interception]] = {
    "counts only": counts_only,
    "agent turn": agent_turn,
    "largest default": largest,
}


def report(cp: Controlplane, secrets: Secrets, kind: str, records: int) -> None:
    make = KINDS[kind]
    rng = random.Random(kind)
    batch: list[usage_pb2.Interception] = []
    size = 0
    with grpc.insecure_channel(cp.address) as channel:
        stub = usage_pb2_grpc.UsageStub(channel)
        for n in range(records):
            record = make(rng, n)
            record.request_id = f"{kind[:5]}-{n:08d}"
            record.started_at.GetCurrentTime()
            record.token_name, record.provider_name, record.model = "dev", "claude", "sonnet"
            record.input_tokens, record.output_tokens, record.status = 1200, 300, 200
            record.user_agent = "claude-cli/2.1.332 (external, sdk-cli)"
            batch.append(record)
            size += record.ByteSize()
            if size > BATCH_BYTES or n == records - 1:
                stub.ReportUsage(
                    usage_pb2.ReportUsageRequest(interceptions=batch),
                    metadata=(("authorization", f"Bearer {secrets.bridged}"),),
                    timeout=60,
                )
                batch, size = [], 0


def sqlite_bytes(url: str) -> int:
    with contextlib.closing(sqlite3.connect(make_url(url).database or "")) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)


def postgres_bytes(url: str) -> int:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("VACUUM ANALYZE interceptions")
        row = db.execute("SELECT pg_total_relation_size('interceptions')").fetchone()
        return int(row[0]) if row else 0


@contextlib.contextmanager
def databases(work: Path) -> Iterator[list[tuple[str, str, Callable[[str], int]]]]:
    with postgres_database() as postgres:
        yield [
            ("sqlite", f"sqlite:///{work / 'storage.db'}", sqlite_bytes),
            ("postgresql", postgres, postgres_bytes),
        ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000, help="records of each kind")
    parser.add_argument("--quick", action="store_true", help="1,000 records of each kind")
    options = parser.parse_args(argv)
    records = 1000 if options.quick else options.records
    work = Path(tempfile.mkdtemp(prefix="aibridge-bench-"))
    rows = []
    with databases(work) as targets:
        for database, url, measure in targets:
            secrets = Secrets()
            cp = Controlplane(url, work, secrets, name=f"controlplane-{database}").start()
            try:
                for kind in KINDS:
                    before = measure(url)
                    report(cp, secrets, kind, records)
                    per_1000 = (measure(url) - before) * 1000 / records
                    emit("storage", database=database, kind=kind, bytes_per_1000=per_1000)
                    rows.append([database, kind, f"{per_1000 / 1024 / 1024:.2f} MiB"])
            finally:
                cp.stop()
    table("Database space per 1,000 interceptions", ["DATABASE", "RECORDS", "SPACE"], rows)


if __name__ == "__main__":
    main()
