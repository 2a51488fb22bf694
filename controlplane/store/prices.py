"""The price table in the database: USD per million tokens of each model or model
pattern (controlplane/pricing.py says which entry prices a model). Migration 0008 loads
the table the gateway ships; an administrator sets, deletes and imports entries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controlplane.errors import InvalidArgument, NotFound
from controlplane.pricing import PriceEntry, PriceTable, validate_model
from controlplane.store import audit
from controlplane.store.db import Database
from controlplane.store.models import Price, Revision, utcnow

IMPORT_MAX = 2_000  # entries in one import: beyond any real table (each prices every call)


class Prices:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self) -> tuple[int, list[Price]]:
        with self.db.read() as session:
            revision = session.scalars(select(Revision.value)).one()
            return revision, list(session.scalars(select(Price).order_by(Price.model)))

    def set(
        self, actor: str, entry: PriceEntry, expected_revision: int | None = None
    ) -> tuple[int, Price]:
        """Adds or replaces one entry (`entry` comes validated from pricing.entry)."""
        with self.db.mutation(expected_revision) as m:
            row = m.session.get(Price, entry.model)
            before = _describe(row) if row is not None else None
            if row is None:
                row = Price(model=entry.model)
                m.session.add(row)
            _fill(row, entry)
            audit.record(
                m, actor, "price.set", entry.model, {"before": before, "after": _describe(row)}
            )
            return m.revision, row

    def delete(
        self, actor: str, model: str, expected_revision: int | None = None
    ) -> tuple[int, str]:
        model = validate_model(model)
        with self.db.mutation(expected_revision) as m:
            row = m.session.get(Price, model)
            if row is None:
                raise NotFound(f"no price for {model!r}")
            before = _describe(row)
            m.session.delete(row)
            audit.record(m, actor, "price.delete", model, {"before": before})
            return m.revision, model

    def import_entries(
        self,
        actor: str,
        entries: Sequence[PriceEntry],
        replace: bool,
        expected_revision: int | None = None,
    ) -> tuple[int, int, int]:
        """Sets every entry (validated by the caller, before anything is written) and,
        with `replace`, deletes the models not among them: one mutation. Returns the
        revision and how many were imported and deleted."""
        if len(entries) > IMPORT_MAX:
            raise InvalidArgument("prices", f"must hold at most {IMPORT_MAX:,} entries")
        seen: set[str] = set()
        for n, e in enumerate(entries, 1):
            if e.model in seen:
                raise InvalidArgument(f"prices[{n}].model", f"{e.model!r} appears twice")
            seen.add(e.model)
        with self.db.mutation(expected_revision) as m:
            rows = {r.model: r for r in m.session.scalars(select(Price))}
            deleted = 0
            if replace:
                gone = sorted(set(rows) - seen)
                if gone:
                    m.session.execute(delete(Price).where(Price.model.in_(gone)))
                deleted = len(gone)
            for e in entries:
                row = rows.get(e.model)
                if row is None:
                    row = Price(model=e.model)
                    m.session.add(row)
                _fill(row, e)
            audit.record(
                m, actor, "prices.import", f"{len(entries)} prices",
                {"imported": len(entries), "deleted": deleted, "replace": replace},
            )  # fmt: skip
            return m.revision, len(entries), deleted


def price_table(session: Session) -> PriceTable:
    """The stored table, for computing costs (a few hundred rows at most)."""
    rows = session.execute(
        select(Price.model, Price.input, Price.output, Price.cache_read, Price.cache_write)
    )
    return PriceTable(PriceEntry(*row) for row in rows)


def _fill(row: Price, entry: PriceEntry) -> None:
    row.input, row.output = entry.input, entry.output
    row.cache_read, row.cache_write = entry.cache_read, entry.cache_write
    row.updated_at = utcnow()


def _describe(row: Price) -> dict[str, float]:
    entry = PriceEntry(row.model, row.input, row.output, row.cache_read, row.cache_write)
    return {k: v for k, v in asdict(entry).items() if k != "model"}
