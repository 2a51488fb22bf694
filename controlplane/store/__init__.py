"""Persistence: models, migrations, and transactions that bump the revision."""

from controlplane.store.db import Database, DatabaseUnavailable, RevisionConflict
from controlplane.store.keyring import KeyRing

__all__ = ["Database", "DatabaseUnavailable", "KeyRing", "RevisionConflict"]
