"""The PostgreSQL store as replicas use it: two stores (two "replicas") on one database,
migrations racing at start, a lost connection, settings it refuses, and a real server on it
that keeps everything across a restart."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from postgres_support import PostgresCluster

from tilefn.client import Client
from tilefn.server._config import ConfigError
from tilefn.server._postgres import PostgresStore
from tilefn.server._sql_schema import MIGRATIONS
from tilefn.server._store import UdfDraft
from tilefn.server._stores import PASSWORD_VARIABLE, open_store

from conftest import ServerProcess

DRAFT = UdfDraft("def f():\n    return 1\n", "", b"", "3.11", "", (), "[]", "d")
#: Opens (so migrates) the store named by argv[1], once a line arrives on stdin.
OPENER = """
import sys
from tilefn.server._stores import open_store
sys.stdin.readline()
store = open_store(sys.argv[1])
print(store.schema_version)
store.close()
"""


def replica(uri: str) -> PostgresStore:
    """A store as a server opens it (the password from TILEFN_STORE_PASSWORD)."""
    store = open_store(uri)
    assert isinstance(store, PostgresStore)
    return store


def test_two_replicas_number_versions_consecutively(postgres_uri: str) -> None:
    first, second = replica(postgres_uri), replica(postgres_uri)
    try:
        first.create_namespace("team", "organisation")
        first.register_udf("team", "shared", "team", DRAFT)
        given: list[int] = []

        def register(store: PostgresStore) -> None:
            for _ in range(10):
                given.append(store.add_udf_version("team", "shared", "team", DRAFT).version)

        threads = [threading.Thread(target=register, args=(s,)) for s in (first, second) * 3]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(given) == list(range(2, 62))  # distinct and consecutive
        latest = second.udf_version("team", "shared", None, None)
        assert latest is not None and latest.version == latest.latest_version == 61
    finally:
        first.close()
        second.close()


def test_tokens_created_in_one_replica_are_seen_by_the_other(postgres_uri: str) -> None:
    first, second = replica(postgres_uri), replica(postgres_uri)
    try:
        first.create_namespace("alice", "user")
        secret, record = first.create_token("alice", ["run"], 60.0, "")
        assert second.token_by_secret(secret) == record
        second.revoke_token(record.id)
        seen = first.token_by_secret(secret)
        assert seen is not None and seen.revoked_at is not None
        with pytest.raises(Exception) as taken:
            second.create_namespace("alice", "user")
        assert "exists already" in str(taken.value)
    finally:
        first.close()
        second.close()


def test_replicas_starting_at_once_migrate_once(postgres_uri: str) -> None:
    command = [sys.executable, "-c", OPENER, postgres_uri]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    openers = [subprocess.Popen(command, **pipes) for _ in range(4)]  # type: ignore[call-overload]
    outputs = [opener.communicate("go\n", timeout=120)[0] for opener in openers]
    assert [o.strip() for o in outputs] == [str(len(MIGRATIONS))] * 4
    assert [o.returncode for o in openers] == [0] * 4
    store = replica(postgres_uri)
    try:
        applied = [r[0] for r in store._db().execute("SELECT version FROM tilefn_schema")]
        assert sorted(applied) == list(range(1, len(MIGRATIONS) + 1))  # each applied once
    finally:
        store.close()


def test_a_lost_connection_is_replaced(postgres: PostgresCluster, postgres_uri: str) -> None:
    store = replica(postgres_uri)
    try:
        store.create_namespace("alice", "user")
        with postgres.admin() as admin:  # as when the database restarts or a proxy drops it
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (postgres_uri.rsplit("/", 1)[1],),
            )
        assert [n.name for n in store.namespaces()] == ["alice"]  # a read: run again
        store.create_namespace("bob", "user")
        assert [n.name for n in store.namespaces()] == ["alice", "bob"]
    finally:
        store.close()


def test_refused_settings_never_show_the_password(
    postgres: PostgresCluster, postgres_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = postgres_uri.split("@", 1)[1]
    with pytest.raises(ConfigError) as inline:
        open_store(f"postgresql://tilefn:{postgres.password}@{host}")
    assert "must not hold a password" in str(inline.value)
    assert postgres.password not in str(inline.value)
    monkeypatch.setenv(PASSWORD_VARIABLE, "wrong-secret")
    with pytest.raises(ConfigError) as wrong:
        open_store(postgres_uri)
    message = str(wrong.value)
    assert f"cannot use the PostgreSQL store tilefn@{host}" in message
    assert "password authentication failed" in message and "wrong-secret" not in message
    with pytest.raises(ConfigError) as empty:
        open_store(postgres_uri, password_file=str(Path("/dev/null")))
    assert "--store-password-file is empty" in str(empty.value)


def test_a_server_on_postgresql_keeps_everything_across_a_restart(
    postgres: PostgresCluster,
    postgres_uri: str,
    make_server: Callable[..., ServerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret_file = tmp_path / "pg-password"
    secret_file.write_text(postgres.password + "\n")
    monkeypatch.delenv(PASSWORD_VARIABLE)  # from here on, only the file has it
    admin = subprocess.run(
        [sys.executable, "-m", "tilefn.client._cli", "token", "create", "alice",
         "--create-namespace", "--store", postgres_uri, "--store-password-file", str(secret_file)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert admin.returncode == 0, admin.stderr
    token = admin.stdout.strip()
    flags = ("--store", postgres_uri, "--store-password-file", str(secret_file),
             "--results-dir", str(tmp_path / "results"))  # fmt: skip
    server = make_server(*flags)
    assert postgres.password not in server.log_path.read_text()
    with Client(server.address, token=token) as alice:
        alice.register("alice/add", "def add(a, b=1):\n    return a + b\n", tags=["math"])
        assert alice.exec("alice/add", 3, 4) == 7
        handle = alice.submit("alice/add", 40, 2)
        assert handle.result(timeout=60) == 42
    assert server.stop() == 0
    again = make_server(*flags)
    with Client(again.address, token=token) as alice:
        assert [u.name for u in alice.udfs()] == ["alice/add"]
        assert alice.exec("alice/add@1", 1) == 2
        task = alice.task(handle.task_id)
        assert (task.status, task.namespace, task.udf) == ("SUCCEEDED", "alice", "alice/add@1")
        assert alice.fetch(handle.task_id) == 42


def test_a_server_refuses_postgresql_without_a_results_dir(postgres_uri: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tilefn.server", "--store", postgres_uri, "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "needs --results-dir" in done.stderr
