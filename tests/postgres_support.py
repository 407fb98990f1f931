"""A real PostgreSQL server for the tests: one throwaway cluster per session on 127.0.0.1.

The cluster is made with ``initdb`` in a temporary folder (password authentication, user
``tilefn``) and started with ``pg_ctl`` on a free port; as root, both run as the ``postgres``
system user, since PostgreSQL refuses to run as root. Each test that asks gets a database of
its own. Without PostgreSQL the tests that need it FAIL, saying how to install it; a developer
may set TILEFN_TESTS_WITHOUT_POSTGRES=1 to skip them instead (CI never does).

``store_engine`` runs a test once per engine ("sqlite", "postgresql") with a ``StoreLocation``.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tilefn.server._store import Store
from tilefn.server._stores import PASSWORD_VARIABLE, open_store

OPT_OUT = "TILEFN_TESTS_WITHOUT_POSTGRES"
USER = "tilefn"
INSTALL_HINT = (
    "PostgreSQL's server binaries (initdb, pg_ctl) were not found on PATH or in "
    "/usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql; .ci/run does) "
    f"or set {OPT_OUT}=1 to skip the PostgreSQL tests"
)


def _binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, newest version first; None if there is none."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version, reverse=True)
    return Path(found[0]).parent if found else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresCluster:
    """A running throwaway cluster; ``database()`` makes a fresh database on it."""

    bin: Path
    folder: Path
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    _names: Iterator[int] = field(default_factory=itertools.count)

    def _run(self, *command: str) -> None:
        # PostgreSQL will not run as root: then run it as the postgres system user.
        user = "postgres" if os.geteuid() == 0 else None
        done = subprocess.run(command, user=user, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:2])} failed:\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        secret = self.folder / "pwfile"
        secret.write_text(self.password + "\n")
        if os.geteuid() == 0:  # the server's files must be its user's
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("as root, PostgreSQL needs a 'postgres' system user to run as")
            for path in (self.folder, secret):
                os.chown(path, account.pw_uid, account.pw_gid)
        data = str(self.folder / "data")
        self._run(
            str(self.bin / "initdb"), "-D", data, "-U", USER, f"--pwfile={secret}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        self.port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = str(self.folder / "postgres.log")
        self._run(str(self.bin / "pg_ctl"), "-D", data, "-l", log, "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "stop")

    def uri(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.uri("postgres"), password=self.password, autocommit=True)

    def database(self) -> str:
        """Create an empty database; return its URI (no password in it)."""
        name = f"t{next(self._names)}"
        with self.admin() as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.uri(name)

    def drop(self, uri: str) -> None:
        with self.admin() as db:
            db.execute(f"DROP DATABASE {uri.rsplit('/', 1)[1]} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL cluster (fails, or skips when opted out, without PostgreSQL)."""
    binaries = _binaries()
    if binaries is None:
        if os.environ.get(OPT_OUT) == "1" and not os.environ.get("CI"):
            pytest.skip(INSTALL_HINT)
        pytest.fail(INSTALL_HINT, pytrace=False)
    cluster = PostgresCluster(binaries, Path(tempfile.mkdtemp(prefix="tilefn-pg-")))
    try:
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(cluster.folder, ignore_errors=True)


@pytest.fixture
def postgres_uri(postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database's URI; its password is in TILEFN_STORE_PASSWORD for this test (and the
    processes it starts)."""
    monkeypatch.setenv(PASSWORD_VARIABLE, postgres.password)
    uri = postgres.database()
    yield uri
    postgres.drop(uri)


@dataclass(frozen=True)
class StoreLocation:
    """Where a test's store lives: what ``--store`` would say (the password is in the
    environment for PostgreSQL)."""

    engine: str
    location: str

    def open(self) -> Store:
        return open_store(self.location)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_engine(request: pytest.FixtureRequest, tmp_path: Path) -> StoreLocation:
    """Runs the test once on a SQLite file and once on a PostgreSQL database."""
    if request.param == "sqlite":
        return StoreLocation("sqlite", str(tmp_path / "store.sqlite3"))
    return StoreLocation("postgresql", request.getfixturevalue("postgres_uri"))
