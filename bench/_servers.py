"""Server subprocesses: tilefn and the yardsticks' servers, each in a process of its own.

Each server writes its output to a log file in the run's temporary folder; a server that exits
early or is not ready in time fails the run with the end of its log. Stop is terminate, wait,
then kill.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tilefn.server._admin import create_namespace, create_token
from tilefn.server._sqlite import SqliteStore

#: The repository root: every subprocess runs there, so ``-m bench....`` imports work.
REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class ServerFailedError(RuntimeError):
    """A server exited or did not become ready."""


@dataclass
class Server:
    """A running server process."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    command: list[str]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Idempotent: terminate, wait, kill."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def issue_token(store_path: Path) -> str:
    """A fresh store at ``store_path`` with one user and a token for it (the secret)."""
    store = SqliteStore(store_path)
    try:
        create_namespace(store, "bench", "user")
        scopes = ["run", "read_arrays"]
        return create_token(store, "bench", scopes, 86400.0, "make bench")[0]
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start(name: str, args: list[str], log_dir: Path) -> Server:
    """Start ``python <args> --port <free port>``, output to ``<log_dir>/<name>.log``."""
    port = free_port()
    log = log_dir / f"{name}.log"
    command = [sys.executable, *args, "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Server(name, process, port, log, command)


def wait_ready(server: Server, probe: Callable[[Server], bool]) -> None:
    """Poll ``probe`` until it is true; fail if the server exits or the time runs out."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailedError(f"{server.name} exited:\n{server.log_tail()}")
        if probe(server):
            return
        time.sleep(0.1)
    raise ServerFailedError(f"{server.name} not ready in {READY_TIMEOUT}s:\n{server.log_tail()}")


def printed_ready(server: Server) -> bool:
    """The yardstick servers print ``ready`` once they serve."""
    return "ready" in server.log.read_text(errors="replace").splitlines()


def tilefn_answers(server: Server) -> bool:
    """A trivial UDF round trip succeeds (gRPC up and a worker ready)."""
    from tilefn.client import Client, TilefnError

    try:
        with Client(server.target) as client:
            return bool(client.with_options(timeout=5).exec(lambda: 1) == 1)
    except TilefnError:
        return False
