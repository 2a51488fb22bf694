"""The Alembic migrations build exactly the schema the models describe, on both databases,
and running them again changes nothing."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from controlplane.store import Database
from controlplane.store.models import Base


def test_migrations_match_the_models(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        db.migrate()  # idempotent: a restart migrates again
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_revision() is not None
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
        assert db.current_revision() == 1
    finally:
        db.dispose()
