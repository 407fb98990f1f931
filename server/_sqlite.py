"""The embedded store: one SQLite file in WAL mode, migrated at open.

Several server processes may share the file. Readers never block (WAL); each write is one
``BEGIN IMMEDIATE`` transaction, so writers queue on SQLite's lock (``busy_timeout``) instead of
failing, and read-then-write steps (the next version number) cannot interleave. Every thread
gets its own connection.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._sqlite_graphs import GraphTables
from ._sqlite_tasks import TaskTables
from ._status import R, ServiceError
from ._store import (
    Namespace,
    NamespaceKind,
    TokenRecord,
    UdfDraft,
    UdfQuery,
    UdfVersion,
)

#: Schema migrations, in order; PRAGMA user_version counts those applied. Append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE namespaces (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('user', 'organisation')),
            created_at REAL NOT NULL)""",
        """CREATE TABLE members (
            organisation TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
            user TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
            PRIMARY KEY (organisation, user))""",
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
)
TOKEN_PREFIX = "tfn"
VERSION_COLUMNS = (
    "v.namespace, v.name, v.version, v.created_us, v.created_by, v.source, v.entry_point, "
    "{pickle}, v.python_version, v.description, v.tags, v.parameters, v.digest, "
    "(SELECT max(version) FROM udf_versions l WHERE l.namespace = v.namespace "
    "AND l.name = v.name)"
)

#: Listings leave the pickles out.
LISTED_COLUMNS = VERSION_COLUMNS.format(pickle="x''")


def hash_secret(secret: str) -> str:
    """Tokens are 256 random bits, so one SHA-256 (no salt, no stretching) is enough."""
    return hashlib.sha256(secret.encode()).hexdigest()


class SqliteStore(TaskTables, GraphTables):
    """``Store`` on one SQLite file; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Token hashes, UDF code and the audit log: readable by the server's user only.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path.touch(mode=0o600, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._write() as db:
            applied = db.execute("PRAGMA user_version").fetchone()[0]
            for number, statements in enumerate(MIGRATIONS[applied:], start=applied + 1):
                for statement in statements:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        return int(self._db().execute("PRAGMA user_version").fetchone()[0])

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            # Used by its own thread only; close() (any thread) is the exception.
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    # namespaces

    def create_namespace(self, name: str, kind: NamespaceKind) -> Namespace:
        with self._write() as db:
            try:
                db.execute("INSERT INTO namespaces VALUES (?, ?, ?)", (name, kind, time.time()))
            except sqlite3.IntegrityError:
                raise ServiceError(
                    R.ERROR_REASON_NAMESPACE_EXISTS,
                    f"a namespace named {name!r} exists already",
                    namespace=name,
                ) from None
        return self._namespace_or_fail(name)

    def namespace(self, name: str) -> Namespace | None:
        db = self._db()
        row = db.execute(
            "SELECT kind, created_at FROM namespaces WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        column, other = (
            ("user", "organisation") if row[0] == "organisation" else ("organisation", "user")
        )
        members = db.execute(
            f"SELECT {column} FROM members WHERE {other} = ? ORDER BY 1", (name,)
        ).fetchall()
        return Namespace(name, row[0], row[1], tuple(m[0] for m in members))

    def _namespace_or_fail(self, name: str) -> Namespace:
        found = self.namespace(name)
        if found is None:
            raise ServiceError(
                R.ERROR_REASON_NAMESPACE_NOT_FOUND, f"no namespace named {name!r}", namespace=name
            )
        return found

    def namespaces(self) -> list[Namespace]:
        names = self._db().execute("SELECT name FROM namespaces ORDER BY name").fetchall()
        return [self._namespace_or_fail(n[0]) for n in names]

    def add_member(self, organisation: str, user: str) -> Namespace:
        self._check_kinds(organisation, user)
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO members VALUES (?, ?)", (organisation, user))
        return self._namespace_or_fail(organisation)

    def remove_member(self, organisation: str, user: str) -> Namespace:
        self._check_kinds(organisation, user)
        with self._write() as db:
            db.execute(
                "DELETE FROM members WHERE organisation = ? AND user = ?", (organisation, user)
            )
        return self._namespace_or_fail(organisation)

    def _check_kinds(self, organisation: str, user: str) -> None:
        for name, kind in ((organisation, "organisation"), (user, "user")):
            if self._namespace_or_fail(name).kind != kind:
                raise ServiceError(
                    R.ERROR_REASON_NAMESPACE_INVALID, f"{name!r} is not a {kind}", namespace=name
                )

    # tokens

    def create_token(
        self, namespace: str, scopes: Sequence[str], lifetime: float, description: str
    ) -> tuple[str, TokenRecord]:
        self._namespace_or_fail(namespace)
        token_id = secrets.token_hex(6)
        secret = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        record = TokenRecord(token_id, namespace, tuple(scopes), description, now, now + lifetime)
        with self._write() as db:
            db.execute(
                "INSERT INTO tokens (id, secret_hash, namespace, scopes, description, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    token_id,
                    hash_secret(secret),
                    namespace,
                    " ".join(scopes),
                    description,
                    now,
                    record.expires_at,
                ),
            )
        return secret, record

    def token_by_secret(self, secret: str) -> TokenRecord | None:
        row = (
            self._db()
            .execute(
                f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = ?", (hash_secret(secret),)
            )
            .fetchone()
        )
        return _token(row) if row else None

    def tokens(self, namespace: str = "") -> list[TokenRecord]:
        rows = self._db().execute(
            f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE ? IN ('', namespace) "
            "ORDER BY created_at DESC",
            (namespace,),
        )
        return [_token(row) for row in rows]

    def revoke_token(self, token_id: str) -> TokenRecord:
        with self._write() as db:
            db.execute(
                "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
                (time.time(), token_id),
            )
            row = db.execute(f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?", (token_id,))
            found = row.fetchone()
        if found is None:
            raise ServiceError(
                R.ERROR_REASON_TOKEN_NOT_FOUND, f"no token with id {token_id!r}", token_id=token_id
            )
        return _token(found)

    def touch_token(self, token_id: str, when: float) -> None:
        with self._write() as db:
            db.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (when, token_id))

    # array shares

    def array_shares(self, namespace: str, name: str) -> tuple[str, ...]:
        rows = self._db().execute(
            "SELECT grantee FROM array_shares WHERE namespace = ? AND name = ? ORDER BY 1",
            (namespace, name),
        )
        return tuple(r[0] for r in rows)

    def arrays_shared_with(self, grantees: frozenset[str]) -> set[tuple[str, str]]:
        marks = ",".join("?" * len(grantees))
        rows = self._db().execute(
            f"SELECT namespace, name FROM array_shares WHERE grantee IN ({marks})", tuple(grantees)
        )
        return {(r[0], r[1]) for r in rows}

    def share_array(self, namespace: str, name: str, grantee: str, share: bool) -> None:
        with self._write() as db:
            if share:
                db.execute(
                    "INSERT OR IGNORE INTO array_shares VALUES (?, ?, ?)",
                    (namespace, name, grantee),
                )
            else:
                db.execute(
                    "DELETE FROM array_shares WHERE namespace = ? AND name = ? AND grantee = ?",
                    (namespace, name, grantee),
                )

    # registered UDFs

    def register_udf(self, namespace: str, name: str, by: str, draft: UdfDraft) -> UdfVersion:
        self._namespace_or_fail(namespace)
        with self._write() as db:
            try:
                db.execute("INSERT INTO udfs VALUES (?, ?)", (namespace, name))
            except sqlite3.IntegrityError:
                raise ServiceError(
                    R.ERROR_REASON_UDF_EXISTS,
                    f"{namespace}/{name} is registered already; update it to add a version",
                    udf=f"{namespace}/{name}",
                ) from None
            _insert_version(db, namespace, name, 1, by=by, draft=draft)
        return self._version_or_fail(namespace, name, 1)

    def add_udf_version(self, namespace: str, name: str, by: str, draft: UdfDraft) -> UdfVersion:
        with self._write() as db:
            (latest,) = db.execute(
                "SELECT max(version) FROM udf_versions WHERE namespace = ? AND name = ?",
                (namespace, name),
            ).fetchone()
            if latest is None:
                raise _udf_missing(namespace, name)
            _insert_version(db, namespace, name, latest + 1, by=by, draft=draft)
        return self._version_or_fail(namespace, name, latest + 1)

    def _version_or_fail(self, namespace: str, name: str, version: int) -> UdfVersion:
        found = self.udf_version(namespace, name, version, None)
        if found is None:
            raise _udf_missing(namespace, name)
        return found

    def udf_version(
        self, namespace: str, name: str, version: int | None, at: int | None
    ) -> UdfVersion | None:
        where = "v.namespace = ? AND v.name = ?"
        values: list[Any] = [namespace, name]
        if version is not None:
            where += " AND v.version = ?"
            values.append(version)
        if at is not None:
            where += " AND v.created_us <= ?"
            values.append(at)
        row = (
            self._db()
            .execute(
                f"SELECT {VERSION_COLUMNS.format(pickle='v.pickle')} FROM udf_versions v "
                f"WHERE {where} ORDER BY v.version DESC LIMIT 1",
                values,
            )
            .fetchone()
        )
        return self._version(row) if row else None

    def udfs(self, query: UdfQuery) -> list[UdfVersion]:
        visible, values = "1", []
        if query.visible_to is not None:
            marks = ",".join("?" * len(query.visible_to))
            visible = (
                f"(v.namespace IN ({marks}) OR EXISTS (SELECT 1 FROM udf_shares s "
                f"WHERE s.namespace = v.namespace AND s.name = v.name AND s.grantee IN ({marks})))"
            )
            values = [*query.visible_to, *query.visible_to]
        rows = self._db().execute(
            f"SELECT {LISTED_COLUMNS} FROM udf_versions v "
            "WHERE v.version = (SELECT max(version) FROM udf_versions l "
            "  WHERE l.namespace = v.namespace AND l.name = v.name) "
            f"AND {visible} AND ? IN ('', v.namespace) "
            "AND (? = '' OR EXISTS (SELECT 1 FROM json_each(v.tags) WHERE value = ?)) "
            "AND (? = '' OR instr(lower(v.name || ' ' || v.description), lower(?)) > 0) "
            "AND v.namespace || '/' || v.name > ? "
            "ORDER BY v.namespace || '/' || v.name LIMIT ?",
            (
                *values,
                query.namespace,
                query.tag,
                query.tag,
                query.text,
                query.text,
                query.after,
                query.limit,
            ),
        )
        return [self._version(row) for row in rows]

    def _version(self, row: Any) -> UdfVersion:
        namespace, name, version, created_us, created_by, *fields, latest = row
        source, entry_point, pickle, python_version, description, tags, parameters, digest = fields
        draft = UdfDraft(
            source,
            entry_point,
            bytes(pickle),
            python_version,
            description,
            tuple(json.loads(tags)),
            parameters,
            digest,
        )
        shares = self._db().execute(
            "SELECT grantee FROM udf_shares WHERE namespace = ? AND name = ? ORDER BY 1",
            (namespace, name),
        )
        shared = tuple(r[0] for r in shares)
        return UdfVersion(namespace, name, version, latest, created_us, created_by, draft, shared)

    def share_udf(self, namespace: str, name: str, grantee: str, share: bool) -> None:
        with self._write() as db:
            if share:
                db.execute(
                    "INSERT OR IGNORE INTO udf_shares VALUES (?, ?, ?)", (namespace, name, grantee)
                )
            else:
                db.execute(
                    "DELETE FROM udf_shares WHERE namespace = ? AND name = ? AND grantee = ?",
                    (namespace, name, grantee),
                )

    def delete_udf(self, namespace: str, name: str) -> int:
        with self._write() as db:
            (count,) = db.execute(
                "SELECT count(*) FROM udf_versions WHERE namespace = ? AND name = ?",
                (namespace, name),
            ).fetchone()
            db.execute("DELETE FROM udfs WHERE namespace = ? AND name = ?", (namespace, name))
        return int(count)


TOKEN_COLUMNS = (
    "id, namespace, scopes, description, created_at, expires_at, last_used_at, revoked_at"
)


def _token(row: Any) -> TokenRecord:
    token_id, namespace, scopes, description, *times = row
    return TokenRecord(token_id, namespace, tuple(scopes.split()), description, *times)


def _insert_version(
    db: sqlite3.Connection, namespace: str, name: str, version: int, *, by: str, draft: UdfDraft
) -> None:
    db.execute(
        "INSERT INTO udf_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            namespace,
            name,
            version,
            time.time_ns() // 1000,
            by,
            draft.source,
            draft.entry_point,
            draft.pickle,
            draft.python_version,
            draft.description,
            json.dumps(list(draft.tags)),
            draft.parameters_json,
            draft.digest,
        ),
    )


def _udf_missing(namespace: str, name: str) -> ServiceError:
    return ServiceError(
        R.ERROR_REASON_UDF_NOT_FOUND,
        f"no UDF named {namespace}/{name} is visible to you",
        udf=f"{namespace}/{name}",
    )
