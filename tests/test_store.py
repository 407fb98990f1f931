"""Both stores (a SQLite file, a PostgreSQL database): migrations, several processes writing at
once, tokens kept as hashes, the admin command."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from postgres_support import StoreLocation

from tilefn.server._sql import SqlStore, hash_secret
from tilefn.server._sql_schema import MIGRATIONS
from tilefn.server._sqlite import SqliteStore
from tilefn.server._status import ServiceError
from tilefn.server._store import Store, TaskRecord, UdfDraft

DRAFT = UdfDraft("def f():\n    return 1\n", "", b"", "3.11", "", (), "[]", "d")
#: Registers a UDF version per iteration from its own process.
WRITER = """
import sys
from tilefn.server._stores import open_store
from tilefn.server._store import UdfDraft
store = open_store(sys.argv[1])
draft = UdfDraft("def f():\\n    return 1\\n", "", b"", "3.11", "", (), "[]", "d")
for _ in range(int(sys.argv[2])):
    store.add_udf_version("team", "shared", "team", draft)
store.close()
"""


def sql(store: Store) -> SqlStore:
    assert isinstance(store, SqlStore)
    return store


def test_migrations_apply_once(store_engine: StoreLocation) -> None:
    store = sql(store_engine.open())
    assert store.schema_version == len(MIGRATIONS)
    store.create_namespace("team", "organisation")
    store.close()
    again = sql(store_engine.open())  # reopening applies nothing twice and keeps the data
    try:
        assert again.schema_version == len(MIGRATIONS)
        team = again.namespace("team")
        assert team is not None and team.kind == "organisation"
    finally:
        again.close()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "store.sqlite3"  # parent folders are created
    store = SqliteStore(path)
    try:
        assert store._db().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_several_processes_write_at_once(store_engine: StoreLocation) -> None:
    store = sql(store_engine.open())
    store.create_namespace("team", "organisation")
    store.register_udf("team", "shared", "team", DRAFT)
    location = store_engine.location
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, location, "25"]) for _ in range(4)]
    assert [w.wait(120) for w in writers] == [0, 0, 0, 0]
    try:
        numbers = [
            row[0]
            for row in store._db().execute(
                "SELECT version FROM udf_versions WHERE name = 'shared' ORDER BY version"
            )
        ]
        assert numbers == list(range(1, 102))  # no version lost, none given twice
        latest = store.udf_version("team", "shared", None, None)
        assert latest is not None and latest.version == latest.latest_version == 101
    finally:
        store.close()


def test_tokens_are_stored_as_hashes_only(store_engine: StoreLocation) -> None:
    store = sql(store_engine.open())
    try:
        store.create_namespace("alice", "user")
        secret, record = store.create_token("alice", ["run"], 60.0, "")
        assert secret.startswith(f"tfn_{record.id}_")
        rows = repr(store._db().execute("SELECT * FROM tokens").fetchall())
        assert secret not in rows and hash_secret(secret) in rows
        assert store.token_by_secret(secret) == record
        assert store.token_by_secret(secret + "x") is None
        with pytest.raises(ServiceError):
            store.create_token("nobody", ["run"], 60.0, "")
    finally:
        store.close()


def test_sqlite_file_holds_no_secret(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3")
    try:
        store.create_namespace("alice", "user")
        secret, _ = store.create_token("alice", ["run"], 60.0, "")
        raw = (tmp_path / "store.sqlite3").read_bytes() + _wal(tmp_path)
        assert secret.encode() not in raw and hash_secret(secret).encode() in raw
    finally:
        store.close()


def _wal(folder: Path) -> bytes:
    wal = folder / "store.sqlite3-wal"
    return wal.read_bytes() if wal.exists() else b""


def test_admin_command(store_engine: StoreLocation) -> None:
    env = {**os.environ, "TILEFN_STORE": store_engine.location}

    def tilefn(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tilefn.client._cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert tilefn("namespace", "create", "acme", "--kind", "organisation").returncode == 0
    assert tilefn("namespace", "create", "alice").returncode == 0
    assert tilefn("member", "add", "acme", "alice").stdout.split() == ["alice"]
    created = tilefn("token", "create", "alice", "--scopes", "run,read_arrays", "--days", "1")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    listed = tilefn("token", "list")
    assert secret not in listed.stdout
    token_id = secret.split("_")[1]
    assert listed.stdout.split("\t")[:3] == [token_id, "alice", "run,read_arrays"]
    assert "revoked" in tilefn("token", "revoke", token_id).stdout
    refused = tilefn("token", "create", "alice", "--scopes", "root")
    assert refused.returncode != 0 and "scopes must be some of" in refused.stderr
    duplicate = tilefn("namespace", "create", "alice")
    assert duplicate.returncode != 0 and "exists already" in duplicate.stderr
    reopened = store_engine.open()
    try:
        (record,) = reopened.tokens("alice")
        assert record.revoked_at is not None and record.revoked_at <= time.time()
    finally:
        reopened.close()


def test_the_state_database_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "store.sqlite3"
    SqliteStore(path).close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_store_may_be_given_after_the_command(store_engine: StoreLocation) -> None:
    command = [sys.executable, "-m", "tilefn.client._cli", "namespace", "create", "zed"]
    done = subprocess.run(
        [*command, "--store", store_engine.location], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    reopened = store_engine.open()
    try:
        assert reopened.namespace("zed") is not None
    finally:
        reopened.close()


def test_old_task_records_are_forgotten_unless_their_result_is_kept(
    store_engine: StoreLocation,
) -> None:
    store = store_engine.open()
    try:
        old = TaskRecord("a", "ns", "t", "CallUdf", "x", (), "SUCCEEDED", "h:1:2", 1.0, 1.0, 2.0)
        kept = dataclasses.replace(old, task_id="b", result_path="/r/b.arrows", result_bytes=7)
        running = dataclasses.replace(old, task_id="c", status="RUNNING", finished_at=None)
        new = dataclasses.replace(old, task_id="d", finished_at=time.time())
        store.save_tasks([old, kept, running, new])
        assert store.forget_tasks(time.time() - 60) == 1
        assert store.task("a") is None
        assert all(store.task(i) for i in "bcd")
        assert store.stored_bytes_by_namespace() == {"ns": 7}
    finally:
        store.close()
