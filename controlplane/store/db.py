"""The database: engines, migrations, and the two kinds of transaction.

Every mutation runs in `Database.mutation()`, which locks and bumps the revision
first (so mutations are serialised and the revision orders them), and on
PostgreSQL sends NOTIFY in the same transaction, so other replicas hear of the
change exactly when it becomes visible. The usage ingest, a plain write, bumps the
revision the same way (`Database.bump_revision`) when a batch crosses a budget.

An admin call opens `Database.admin_call()` around the store method it calls: the
method's mutation joins that transaction instead of opening its own, so that what the
call records beside the change (its idempotency key and answer) commits with it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, delete, event, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from controlplane.store.models import Revision

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "aibridge_revision"
_MIGRATION_LOCK_ID = 0x41494252  # "AIBR": serialises migrations of replicas starting together


class DatabaseUnavailable(Exception):
    """The database cannot be reached; the caller should retry later."""


class RevisionConflict(Exception):
    def __init__(self, current: int, expected: int) -> None:
        super().__init__(f"the revision is {current}, not the expected {expected}")
        self.current = current
        self.expected = expected


@dataclass
class Mutation:
    """What a mutation's body gets: the session, the revision it is writing, and a token
    of its own, random: a backup restored and changed again can reach the same revision
    with other contents, never with the same token."""

    session: Session
    revision: int
    token: str = field(default_factory=lambda: secrets.token_hex(8))


@dataclass
class AdminCall:
    """An admin call's transaction (`Database.admin_call`). `on_lock` runs once the call's
    mutation holds the revision lock, before anything else: the point where calls are in
    the order of every mutation. `revision` is the one the mutation wrote (or, without a
    bump, held), once it has."""

    session: Session
    on_lock: Callable[[Session], None]
    revision: int | None = None


# The admin call this thread is in, if any: `asyncio.to_thread` carries it into the
# worker thread that runs the store method.
_admin_call: ContextVar[AdminCall | None] = ContextVar("admin_call", default=None)


def _sqlite_begin(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot take a write lock up front;
    # mutations need BEGIN IMMEDIATE so two writers never deadlock on lock upgrade.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_postgres = self.url.get_backend_name() == "postgresql"
        if self.url.get_backend_name() == "sqlite":
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                _make_private(Path(database))
            self.engine = create_engine(
                self.url,
                hide_parameters=True,  # bound values may be secrets: never in an error
                connect_args={"check_same_thread": False, "timeout": 10},
            )
            _sqlite_begin(self.engine)
            self._write_engine: Engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
            self._read_engine = self.engine
        elif self.is_postgres:
            self.engine = create_engine(
                self.url,
                hide_parameters=True,
                pool_pre_ping=True,
                pool_size=5,
                max_overflow=5,
                # A stuck transaction must not hold every replica's mutations forever.
                connect_args={
                    "connect_timeout": 5,
                    "options": "-c lock_timeout=10000 -c statement_timeout=30000",
                },
            )
            self._write_engine = self.engine
            # A snapshot is several SELECTs that must all see the same commit.
            self._read_engine = self.engine.execution_options(isolation_level="REPEATABLE READ")
        else:
            raise ValueError(
                f"unsupported database {self.url.get_backend_name()!r}: use sqlite:/// or "
                "postgresql+psycopg://"
            )
        self._writes = sessionmaker(self._write_engine, expire_on_commit=False)
        self._reads = sessionmaker(self._read_engine, expire_on_commit=False)

    def libpq_conninfo(self) -> str:
        """The URL as psycopg takes it, for the LISTEN connection."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def redacted_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def migrate(self) -> None:
        """Brings the schema to the newest migration (run on every start)."""
        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.connect() as conn:
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
                conn.commit()
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                if self.is_postgres:
                    conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID})
                    conn.commit()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with _unavailable_on_disconnect(), self._reads.begin() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write that is not part of the provider state (usage): no revision bump."""
        with _unavailable_on_disconnect(), self._writes.begin() as session:
            yield session

    def delete_before(
        self, key: InstrumentedAttribute[Any], stamp: InstrumentedAttribute[datetime],
        before: datetime, limit: int,
    ) -> int:  # fmt: skip
        """Deletes up to `limit` rows whose `stamp` is before `before` (`key`: the table's
        primary key), in a short transaction of their own; returns how many. Replicas may
        run it together: on PostgreSQL each takes rows the others have not locked."""
        oldest = select(key).where(stamp < before).limit(limit).with_for_update(skip_locked=True)
        with self.write() as session:
            statement = delete(key.class_).where(key.in_(oldest))
            return int(session.connection().execute(statement).rowcount)

    @contextmanager
    def admin_call(self, on_lock: Callable[[Session], None]) -> Iterator[AdminCall]:
        """One transaction for an admin call, which the mutation it makes in this thread
        joins; it commits when the block ends."""
        with _unavailable_on_disconnect(), self._writes.begin() as session:
            call = AdminCall(session, on_lock)
            joined = _admin_call.set(call)
            try:
                yield call
            finally:
                _admin_call.reset(joined)

    @contextmanager
    def mutation(
        self, expected_revision: int | None = None, at_least: int = 0, *, bump: bool = True
    ) -> Iterator[Mutation]:
        """A transaction that bumps the revision (to `at_least` if that is higher);
        raises RevisionConflict if it moved. Without `bump` it only holds the revision
        lock: a change the data planes have nothing to apply for. Inside an admin call
        it is the call's transaction, committed with it."""
        call = _admin_call.get()
        if call is not None and call.revision is not None:
            raise RuntimeError("an admin call makes one mutation")
        if not bump and (expected_revision is not None or at_least):
            raise ValueError("a mutation without a bump has no revision to expect or raise")
        transaction = nullcontext(call.session) if call else self._writes.begin()
        with _unavailable_on_disconnect(), transaction as session:
            revision = self.lock_revision(session)
            if call is not None:
                # Before the expected revision is compared: an applied call replays its
                # answer even when the revision has moved since.
                call.on_lock(session)
            if bump:
                revision = self._advance(session, revision, expected_revision, at_least)
            if call is not None:
                call.revision = revision
            yield Mutation(session, revision)
            session.flush()

    def lock_revision(self, session: Session) -> int:
        """Takes the revision row's lock (the one every mutation takes) until `session`'s
        transaction ends, and returns the revision; on SQLite the write transaction holds
        the database's write lock already."""
        return int(
            session.execute(
                select(Revision.value).where(Revision.id == 1).with_for_update()
            ).scalar_one()
        )

    def bump_revision(
        self, session: Session, expected_revision: int | None = None, at_least: int = 0
    ) -> int:
        """Bumps the revision in `session`'s transaction (to `at_least` if that is higher)
        and returns it; raises RevisionConflict if it moved. The revision row stays locked
        until the transaction ends, which serialises it with every other mutation; on
        PostgreSQL the NOTIFY is delivered when (and only if) the transaction commits."""
        return self._advance(session, self.lock_revision(session), expected_revision, at_least)

    def _advance(
        self, session: Session, current: int, expected_revision: int | None, at_least: int
    ) -> int:
        if expected_revision is not None and expected_revision != current:
            raise RevisionConflict(current, expected_revision)
        revision = max(current + 1, at_least)
        session.execute(update(Revision).where(Revision.id == 1).values(value=revision))
        if self.is_postgres:
            session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": NOTIFY_CHANNEL, "payload": str(revision)},
            )
        return revision

    def current_revision(self) -> int:
        with _unavailable_on_disconnect(), self.engine.connect() as conn:
            return conn.execute(select(Revision.value).where(Revision.id == 1)).scalar_one()

    def dispose(self) -> None:
        self.engine.dispose()


def _make_private(database: Path) -> None:
    """A database file made by an older release may be readable by others: 0600 now, with
    the -wal and -shm files beside it (SQLite gives new ones the database's mode)."""
    for path in (database, database.with_name(database.name + "-wal"),
                 database.with_name(database.name + "-shm")):  # fmt: skip
        try:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
        except FileNotFoundError:
            pass
        except OSError as exc:  # another user's file: say so, and serve anyway
            log.warning("cannot make %s private (mode 0600): %s", path, exc)


@contextmanager
def _unavailable_on_disconnect() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        raise DatabaseUnavailable(_describe(exc)) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseUnavailable(_describe(exc)) from exc
        raise


def _describe(exc: DBAPIError) -> str:
    # The driver's first line says what went wrong without the statement or its parameters.
    return str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
