"""The SQL store: every ``Store`` method written once, over a small engine adapter.

``SqlStore`` holds the queries; an engine (``_sqlite.SqliteStore``, ``_postgres.PostgresStore``)
supplies a connection per thread, its ``Dialect`` and its schema-version bookkeeping. Writes run
in one transaction each (``_write``); a read-then-write step (the next UDF version) locks the
rows it reads, so two writers, in two threads or two processes, never interleave there.
Queries use ``?`` placeholders; an engine that wants another style translates them.
"""

from __future__ import annotations

import abc
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from ._sql_graphs import GraphTables
from ._sql_replicas import ReplicaTables
from ._sql_schema import MIGRATIONS, Connection, Dialect
from ._sql_tasks import TaskTables
from ._status import R, ServiceError
from ._store import (
    Namespace,
    NamespaceKind,
    TokenRecord,
    UdfDraft,
    UdfQuery,
    UdfVersion,
)

TOKEN_PREFIX = "tfn"
VERSION_COLUMNS = (
    "v.namespace, v.name, v.version, v.created_us, v.created_by, v.source, v.entry_point, "
    "{pickle}, v.python_version, v.description, v.tags, v.parameters, v.digest, "
    "(SELECT max(version) FROM udf_versions l WHERE l.namespace = v.namespace "
    "AND l.name = v.name)"
)

#: Listings leave the pickles out (NULL, read as empty).
LISTED_COLUMNS = VERSION_COLUMNS.format(pickle="NULL")


def hash_secret(secret: str) -> str:
    """Tokens are 256 random bits, so one SHA-256 (no salt, no stretching) is enough."""
    return hashlib.sha256(secret.encode()).hexdigest()


class SqlStore(TaskTables, GraphTables, ReplicaTables, abc.ABC):
    """``Store`` over any SQL engine; see the module docstring."""

    dialect: ClassVar[Dialect]

    def __init__(self) -> None:
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._migrate()

    # what an engine supplies

    @abc.abstractmethod
    def _connect(self) -> Connection:
        """A new connection in autocommit mode."""

    @abc.abstractmethod
    def _lock_schema(self, db: Connection) -> int:
        """Inside the migrating transaction: keep other processes from migrating until it ends;
        return how many migrations were applied."""

    @abc.abstractmethod
    def _set_schema_version(self, db: Connection, number: int) -> None: ...

    @property
    @abc.abstractmethod
    def schema_version(self) -> int:
        """How many migrations the database has applied."""

    # connections and transactions

    def _migrate(self) -> None:
        with self._write() as db:
            applied = self._lock_schema(db)
            for number, statements in enumerate(MIGRATIONS[applied:], start=applied + 1):
                for statement in statements:
                    db.execute(self.dialect.ddl(statement))
                self._set_schema_version(db, number)

    def _db(self) -> Connection:
        db: Connection | None = getattr(self._local, "db", None)
        if db is None:
            # Used by its own thread only; close() (any thread) is the exception.
            db = self._connect()
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        db = self._db()
        db.execute(self.dialect.begin)
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
            except self.dialect.duplicate:
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
            ('"user"', "organisation") if row[0] == "organisation" else ("organisation", '"user"')
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
            db.execute(
                "INSERT INTO members VALUES (?, ?) ON CONFLICT DO NOTHING", (organisation, user)
            )
        return self._namespace_or_fail(organisation)

    def remove_member(self, organisation: str, user: str) -> Namespace:
        self._check_kinds(organisation, user)
        with self._write() as db:
            db.execute(
                'DELETE FROM members WHERE organisation = ? AND "user" = ?', (organisation, user)
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
        self._share("array_shares", (namespace, name, grantee), share)

    def _share(self, table: str, key: tuple[str, str, str], share: bool) -> None:
        """Add (idempotently) or remove one grantee of a share table."""
        with self._write() as db:
            if share:
                db.execute(f"INSERT INTO {table} VALUES (?, ?, ?) ON CONFLICT DO NOTHING", key)
            else:
                where = "namespace = ? AND name = ? AND grantee = ?"
                db.execute(f"DELETE FROM {table} WHERE {where}", key)

    # registered UDFs

    def register_udf(self, namespace: str, name: str, by: str, draft: UdfDraft) -> UdfVersion:
        self._namespace_or_fail(namespace)
        with self._write() as db:
            try:
                db.execute("INSERT INTO udfs VALUES (?, ?)", (namespace, name))
            except self.dialect.duplicate:
                raise ServiceError(
                    R.ERROR_REASON_UDF_EXISTS,
                    f"{namespace}/{name} is registered already; update it to add a version",
                    udf=f"{namespace}/{name}",
                ) from None
            _insert_version(db, namespace, name, 1, by=by, draft=draft)
        return self._version_or_fail(namespace, name, 1)

    def add_udf_version(self, namespace: str, name: str, by: str, draft: UdfDraft) -> UdfVersion:
        with self._write() as db:
            self._lock_udf(db, namespace, name)
            (latest,) = db.execute(
                "SELECT max(version) FROM udf_versions WHERE namespace = ? AND name = ?",
                (namespace, name),
            ).fetchone()
            if latest is None:
                raise _udf_missing(namespace, name)
            _insert_version(db, namespace, name, latest + 1, by=by, draft=draft)
        return self._version_or_fail(namespace, name, latest + 1)

    def _lock_udf(self, db: Connection, namespace: str, name: str) -> None:
        """Hold the UDF's row until the transaction ends: its versions are read, then written."""
        db.execute(
            f"SELECT 1 FROM udfs WHERE namespace = ? AND name = ?{self.dialect.lock_rows}",
            (namespace, name),
        )

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
        visible, values = "TRUE", []
        if query.visible_to is not None:
            marks = ",".join("?" * len(query.visible_to))
            visible = (
                f"(v.namespace IN ({marks}) OR EXISTS (SELECT 1 FROM udf_shares s "
                f"WHERE s.namespace = v.namespace AND s.name = v.name AND s.grantee IN ({marks})))"
            )
            values = [*query.visible_to, *query.visible_to]
        tags, find = self.dialect.json_items.format("v.tags"), self.dialect.find
        rows = self._db().execute(
            f"SELECT {LISTED_COLUMNS} FROM udf_versions v "
            "WHERE v.version = (SELECT max(version) FROM udf_versions l "
            "  WHERE l.namespace = v.namespace AND l.name = v.name) "
            f"AND {visible} AND ? IN ('', v.namespace) "
            f"AND (? = '' OR EXISTS (SELECT 1 FROM {tags} WHERE value = ?)) "
            f"AND (? = '' OR {find}(lower(v.name || ' ' || v.description), lower(?)) > 0) "
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
            bytes(pickle or b""),
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
        self._share("udf_shares", (namespace, name, grantee), share)

    def delete_udf(self, namespace: str, name: str) -> int:
        with self._write() as db:
            self._lock_udf(db, namespace, name)
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
    db: Connection, namespace: str, name: str, version: int, *, by: str, draft: UdfDraft
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
