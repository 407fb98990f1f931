"""The schema of the SQL stores, written once for every engine; what differs between engines.

Migrations use SQLite's column types; ``Dialect.ddl`` maps them for PostgreSQL (64-bit integers,
double precision, bytea, identity keys), so both engines apply the same list, in the same order,
and count the same schema version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ._store import GraphQuery, TaskQuery

#: Schema migrations, in order, in SQLite's types (``Dialect.ddl`` renames them for another
#: engine); each store counts those applied. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE namespaces (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('user', 'organisation')),
            created_at REAL NOT NULL)""",
        """CREATE TABLE members (
            organisation TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
            "user" TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
            PRIMARY KEY (organisation, "user"))""",
        """CREATE TABLE tokens (
            id TEXT PRIMARY KEY,
            secret_hash TEXT NOT NULL UNIQUE,
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            scopes TEXT NOT NULL,
            description TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            last_used_at REAL,
            revoked_at REAL)""",
        """CREATE TABLE array_shares (
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            grantee TEXT NOT NULL,
            PRIMARY KEY (namespace, name, grantee))""",
        "CREATE INDEX array_shares_grantee ON array_shares (grantee)",
        """CREATE TABLE udfs (
            namespace TEXT NOT NULL REFERENCES namespaces(name),
            name TEXT NOT NULL,
            PRIMARY KEY (namespace, name))""",
        """CREATE TABLE udf_versions (
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            created_us INTEGER NOT NULL,
            created_by TEXT NOT NULL,
            source TEXT NOT NULL,
            entry_point TEXT NOT NULL,
            pickle BLOB NOT NULL,
            python_version TEXT NOT NULL,
            description TEXT NOT NULL,
            tags TEXT NOT NULL,
            parameters TEXT NOT NULL,
            digest TEXT NOT NULL,
            PRIMARY KEY (namespace, name, version),
            FOREIGN KEY (namespace, name) REFERENCES udfs ON DELETE CASCADE)""",
        """CREATE TABLE udf_shares (
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            grantee TEXT NOT NULL,
            PRIMARY KEY (namespace, name, grantee),
            FOREIGN KEY (namespace, name) REFERENCES udfs ON DELETE CASCADE)""",
        "CREATE INDEX udf_shares_grantee ON udf_shares (grantee)",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            task_id TEXT NOT NULL,
            namespace TEXT NOT NULL,
            token_id TEXT NOT NULL,
            method TEXT NOT NULL,
            udf TEXT NOT NULL,
            arrays TEXT NOT NULL,
            started_at REAL NOT NULL,
            duration REAL NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT NOT NULL)""",
        "CREATE INDEX audit_namespace ON audit (namespace, started_at)",
    ),
    (
        """CREATE TABLE tasks (
            task_id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            token_id TEXT NOT NULL,
            method TEXT NOT NULL,
            udf TEXT NOT NULL,
            arrays TEXT NOT NULL,
            status TEXT NOT NULL,
            owner TEXT NOT NULL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            cpu_seconds REAL NOT NULL,
            peak_memory_bytes INTEGER NOT NULL,
            result_bytes INTEGER NOT NULL,
            rows INTEGER NOT NULL,
            error_reason TEXT NOT NULL,
            error_message TEXT NOT NULL,
            logs TEXT NOT NULL,
            logs_total INTEGER NOT NULL,
            logs_truncated INTEGER NOT NULL,
            result_path TEXT NOT NULL,
            result_expires_at REAL)""",
        "CREATE INDEX tasks_namespace ON tasks (namespace, created_at)",
        "CREATE INDEX tasks_status ON tasks (status)",
        "CREATE INDEX tasks_expiry ON tasks (result_expires_at) WHERE result_path != ''",
        "CREATE INDEX tasks_finished ON tasks (finished_at)",
    ),
    (
        """CREATE TABLE graphs (
            graph_id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            token_id TEXT NOT NULL,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            owner TEXT NOT NULL,
            created_at REAL NOT NULL,
            spec BLOB NOT NULL,
            nodes TEXT NOT NULL,
            finished_at REAL,
            error_reason TEXT NOT NULL,
            error_message TEXT NOT NULL,
            retries INTEGER NOT NULL,
            counts TEXT NOT NULL)""",
        "CREATE INDEX graphs_namespace ON graphs (namespace, created_at)",
        "CREATE INDEX graphs_status ON graphs (status)",
    ),
    (
        # _replicas: heartbeats, and cancel requests for what another replica runs
        "CREATE TABLE replicas (owner TEXT PRIMARY KEY, seen_at REAL NOT NULL)",
        """CREATE TABLE cancel_requests (
            target_id TEXT PRIMARY KEY,
            requested_at REAL NOT NULL)""",
    ),
)


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The part of a DB-API connection the store uses (``?`` placeholders, autocommit)."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> object: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Dialect:
    """What differs between two engines' SQL, beyond the connection itself."""

    #: The statement starting a write transaction (SQLite: take the write lock at once).
    begin: str
    #: The migrations' column types (SQLite's names) -> this engine's.
    types: Mapping[str, str]
    #: The function giving a substring's position (1-based, 0 when absent): f(haystack, needle).
    find: str
    #: The elements of a JSON array held in text, as rows with a ``value`` column; ``{}`` is
    #: the column.
    json_items: str
    #: Appended to a SELECT to lock the rows it reads until the transaction ends (empty where
    #: ``begin`` already serialises writers).
    lock_rows: str
    #: Raised by a unique (or primary key) violation.
    duplicate: type[Exception]

    def ddl(self, statement: str) -> str:
        """A migration statement in this engine's types."""
        if not self.types:
            return statement
        names = "|".join(map(re.escape, sorted(self.types, key=len, reverse=True)))
        return re.sub(rf"\b({names})\b", lambda m: self.types[m.group(1)], statement)


def upsert(table: str, columns: Sequence[str], key: str) -> str:
    """An INSERT of every column that replaces the row holding the same ``key``."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


def listing_filters(
    query: TaskQuery | GraphQuery, key: str, where: list[str], values: list[Any]
) -> None:
    """Add a listing's common conditions to ``where`` and ``values``: the namespaces (None:
    all), the status (empty: any), and the page cursor (rows before ``(created_at, key)``)."""
    if query.namespaces is not None:
        where.append(f"namespace IN ({','.join('?' * len(query.namespaces))})")
        values += sorted(query.namespaces)
    if query.status:
        where.append("status = ?")
        values.append(query.status)
    if query.before is not None:
        where.append(f"(created_at, {key}) < (?, ?)")
        values += list(query.before)
