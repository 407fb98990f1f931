"""The SQLite store: migrations, several processes writing at once, the admin command."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tilefn.server._sqlite import MIGRATIONS, SqliteStore, hash_secret
from tilefn.server._status import ServiceError
from tilefn.server._store import UdfDraft

DRAFT = UdfDraft("def f():\n    return 1\n", "", b"", "3.11", "", (), "[]", "d")
#: Registers a UDF version per iteration from its own process.
WRITER = """
import sys
from tilefn.server._sqlite import SqliteStore
from tilefn.server._store import UdfDraft
store = SqliteStore(sys.argv[1])
draft = UdfDraft("def f():\\n    return 1\\n", "", b"", "3.11", "", (), "[]", "d")
for _ in range(int(sys.argv[2])):
    store.add_udf_version("team", "shared", "team", draft)
store.close()
"""


def test_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "store.sqlite3"  # parent folders are created
    store = SqliteStore(path)
    assert store.schema_version == len(MIGRATIONS)
    store.create_namespace("team", "organisation")
    store.close()
    again = SqliteStore(path)  # reopening applies nothing twice and keeps the data
    try:
        assert again.schema_version == len(MIGRATIONS)
        team = again.namespace("team")
        assert team is not None and team.kind == "organisation"
        mode = again._db().execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        again.close()


def test_several_processes_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    store.create_namespace("team", "organisation")
    store.register_udf("team", "shared", "team", DRAFT)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), "25"]) for _ in range(4)]
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


def test_tokens_are_stored_as_hashes_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3")
    try:
        store.create_namespace("alice", "user")
        secret, record = store.create_token("alice", ["run"], 60.0, "")
        assert secret.startswith(f"tfn_{record.id}_")
        raw = (tmp_path / "store.sqlite3").read_bytes() + _wal(tmp_path)
        assert secret.encode() not in raw and hash_secret(secret).encode() in raw
        assert store.token_by_secret(secret) == record
        assert store.token_by_secret(secret + "x") is None
        with pytest.raises(ServiceError):
            store.create_token("nobody", ["run"], 60.0, "")
    finally:
        store.close()


def _wal(folder: Path) -> bytes:
    wal = folder / "store.sqlite3-wal"
    return wal.read_bytes() if wal.exists() else b""


def test_admin_command(tmp_path: Path) -> None:
    store = str(tmp_path / "store.sqlite3")
    env = {**os.environ, "TILEFN_STORE": store}

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
    reopened = SqliteStore(store)
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


def test_store_may_be_given_after_the_command(tmp_path: Path) -> None:
    store = str(tmp_path / "late.sqlite3")
    command = [sys.executable, "-m", "tilefn.client._cli", "namespace", "create", "zed"]
    done = subprocess.run([*command, "--store", store], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reopened = SqliteStore(store)
    try:
        assert reopened.namespace("zed") is not None
    finally:
        reopened.close()


def test_old_task_records_are_forgotten_unless_their_result_is_kept(tmp_path: Path) -> None:
    from tilefn.server._store import TaskRecord

    store = SqliteStore(tmp_path / "store.sqlite3")
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
