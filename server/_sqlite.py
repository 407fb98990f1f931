"""The embedded store: one SQLite file in WAL mode, migrated at open.

Several server processes on one machine may share the file. Readers never block (WAL); each
write is one ``BEGIN IMMEDIATE`` transaction, so writers queue on SQLite's lock
(``busy_timeout``) instead of failing, and read-then-write steps (the next version number)
cannot interleave. Every thread gets its own connection. The queries are ``_sql.SqlStore``'s.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ._sql import SqlStore, hash_secret
from ._sql_schema import MIGRATIONS, Connection, Dialect

__all__ = ["MIGRATIONS", "SQLITE", "SqliteStore", "hash_secret"]

SQLITE = Dialect(
    begin="BEGIN IMMEDIATE",
    types={},
    find="instr",
    json_items="json_each({})",
    lock_rows="",
    duplicate=sqlite3.IntegrityError,
)


class SqliteStore(SqlStore):
    """``Store`` on one SQLite file; see the module docstring."""

    dialect = SQLITE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Token hashes, UDF code and the audit log: readable by the server's user only.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path.touch(mode=0o600, exist_ok=True)
        super().__init__()

    def _connect(self) -> Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def _lock_schema(self, db: Connection) -> int:
        # BEGIN IMMEDIATE holds the write lock already.
        return int(db.execute("PRAGMA user_version").fetchone()[0])

    def _set_schema_version(self, db: Connection, number: int) -> None:
        db.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        return int(self._db().execute("PRAGMA user_version").fetchone()[0])
