"""The SQLite backend: one file in WAL mode, the embedded default (`SqliteStore`).

`store.py` holds sessions, CDRs, the change feed and the migrations; `pool.py` and `admin.py`
are its mixins for the administration side (pool and allocation; tokens, audit, idempotency).
"""

from .store import MIGRATIONS, SCHEMA_VERSION, SqliteStore

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteStore"]
