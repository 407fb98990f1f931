"""Shared fixtures: real tilefn servers in subprocesses on 127.0.0.1, clients, leak checks."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tilefn.client import Client
from tilefn.server._admin import create_namespace, create_token
from tilefn.server._sqlite import SqliteStore

pytest_plugins = [  # shared fixtures; a plugin another imports comes first
    "pki_support",
    "arrays_support",
    "demo_support",
    "hostile_support",
    "identity_support",
    "postgres_support",
]

STARTUP_TIMEOUT = 60.0
READY_LINE = "tilefn serving on "
#: Every test server shares one state database unless a test gives its own ``--store``; the
#: session's admin token is in TILEFN_TOKEN, so clients authenticate without being told.
#: (This module is imported twice, as a conftest and by tests that import it: the environment
#: carries the state so that both imports share it.)
SESSION_STATE = Path(
    os.environ.setdefault("TILEFN_TEST_STATE", tempfile.mkdtemp(prefix="tilefn-tests-"))
)
SESSION_STORE = SESSION_STATE / "state.sqlite3"


def _session_token() -> str:
    if os.environ.get("TILEFN_TOKEN", "").startswith("tfn_") and SESSION_STORE.exists():
        return os.environ["TILEFN_TOKEN"]
    store = SqliteStore(SESSION_STORE)
    try:
        create_namespace(store, "tests", "user")
        secret, _ = create_token(store, "tests", ["admin"], 86400.0, "test session")
    finally:
        store.close()
    os.environ["TILEFN_TOKEN"] = secret
    return secret


SESSION_TOKEN = _session_token()
#: Call metadata for raw gRPC stubs in tests.
AUTH = (("authorization", f"Bearer {SESSION_TOKEN}"),)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SESSION_STATE, ignore_errors=True)


class ServerProcess:
    """``python -m tilefn.server`` on a free loopback port, stopped with SIGTERM."""

    def __init__(self, log_dir: Path, *flags: str) -> None:
        self.log_path = log_dir / f"server-{time.monotonic_ns()}.log"
        command = [sys.executable, "-m", "tilefn.server", "--host", "127.0.0.1", "--port", "0"]
        self._log = self.log_path.open("wb")
        if "--data-root" not in flags:  # never the checkout's own data/ folder
            flags = ("--data-root", str(log_dir / "no-arrays"), *flags)
        if "--store" not in flags:
            flags = ("--store", str(SESSION_STORE), *flags)
        self.process = subprocess.Popen(
            [*command, "--drain-grace", "5", *flags],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.address = self._wait_ready()

    def _wait_ready(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the server prints this once it is serving
        if not line.startswith(READY_LINE):
            self.process.kill()
            raise RuntimeError(f"server did not start: {line!r}\n{self.log_path.read_text()}")
        return line[len(READY_LINE) :].strip()

    @property
    def pid(self) -> int:
        return self.process.pid

    def template_pid(self) -> int:
        (template,) = children(self.pid)
        return template

    def worker_pids(self) -> set[int]:
        """Host pids of the live workers (not the init of their PID namespace)."""
        return set(self.worker_ns_pids().values())

    def worker_ns_pids(self) -> dict[int, int]:
        """Live workers by the pid they see for themselves (in their PID namespace) -> host pid."""
        found = {}
        for pid in children(self.template_pid()):
            ns_pid = namespace_pid(pid)
            if ns_pid is not None and ns_pid != 1:
                found[ns_pid] = pid
        return found

    def worker_gone(self, ns_pid: int) -> bool:
        """True once the worker that saw itself as ``ns_pid`` (``os.getpid()`` in a UDF) is gone."""
        return ns_pid not in self.worker_ns_pids()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def children(pid: int) -> list[int]:
    """Live (non-zombie) child processes of pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def namespace_pid(pid: int) -> int | None:
    """The pid a process has in its innermost PID namespace; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return pid


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll until predicate() is true; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def process_gone(pid: int) -> bool:
    """True once pid has exited and been reaped (or is a zombie about to be)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return state[state.rindex(")") + 2] == "Z"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by the tests that do not need special settings."""
    proc = ServerProcess(tmp_path_factory.mktemp("server"), "--max-request-bytes", str(8 << 20))
    yield proc
    assert proc.stop() == 0, proc.log_path.read_text()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers with specific flags; each is stopped (and must exit cleanly) after the test."""
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        proc = ServerProcess(tmp_path, *flags)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        template = children(proc.pid)
        assert proc.stop() == 0, proc.log_path.read_text()
        for pid in template:
            wait_for(functools.partial(process_gone, pid), what=f"template {pid} to exit")


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.address) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_leaked_workers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves the shared server with more worker processes than it should have."""
    yield
    if "server" not in request.fixturenames:
        return
    proc: ServerProcess = request.getfixturevalue("server")
    limit = 8 + 2  # max_workers + ready_workers (defaults)
    wait_for(lambda: len(proc.worker_pids()) <= limit, what="worker count to settle")


def worker_processes() -> list[int]:
    """Live processes running as a worker uid (200000 + slot), whichever server made them."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # not the directory's owner: a non-dumpable process's /proc entry is root's
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            uid = int(fields.get("Uid", "0").split()[0])
            if uid >= 200_000 and not fields.get("State", "").strip().startswith("Z"):
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="session", autouse=True)
def _no_worker_outlives_the_session() -> Iterator[None]:
    """Every server the tests started is gone at the end: so must every worker be."""
    before = set(worker_processes())
    yield
    wait_for(
        lambda: not set(worker_processes()) - before, timeout=20, what="worker processes to exit"
    )


class _Authorize(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds the session token to every call of a raw channel."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _with_token(self, details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *self._metadata))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)


def authed_channel(address: str, metadata: tuple[tuple[str, str], ...] = AUTH) -> grpc.Channel:
    """A raw channel whose calls carry ``metadata`` (the session's admin token by default)."""
    return grpc.intercept_channel(grpc.insecure_channel(address), _Authorize(metadata))
