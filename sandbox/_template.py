"""Parent side of the worker template: start it by exec, ask it for workers, hear what happens.

The template must start before the gRPC server creates threads (it is exec'd, so forking the
server is never needed), from an environment that holds none of the server's secrets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from ._errors import PoolClosedError, SandboxError

log = logging.getLogger(__name__)

#: Variables passed to the template; everything else in the server's environment stays behind.
THREAD_LIMITS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
#: Hardware workarounds some machines need for OpenBLAS to run at all; not secrets.
PASSED_THROUGH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
HELLO_TIMEOUT = 60.0
MAX_MESSAGE = 4096

SpawnedCallback = Callable[[int, socket.socket, int], None]
ExitedCallback = Callable[[int, int | None, bool], None]


def template_environment() -> dict[str, str]:
    """The whole environment of the template and its workers."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    env.update(THREAD_LIMITS)
    env.update({k: os.environ[k] for k in PASSED_THROUGH if k in os.environ})
    return env


class TemplateProcess:
    """The exec'd template process and its control socket."""

    def __init__(self, python: str = sys.executable, memory_bytes: int = 8 << 30) -> None:
        self._python = python
        self._memory_bytes = memory_bytes
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._on_spawned: SpawnedCallback | None = None
        self._on_exited: ExitedCallback | None = None
        self._on_lost: Callable[[], None] | None = None
        self._on_spawn_failed: Callable[[str], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limit_waiters: dict[int, asyncio.Future[str]] = {}

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Exec the template and wait until it has imported everything (blocking)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [self._python, "-I", "-m", "tilefn.sandbox._in_template"]
        command += ["--control-fd", str(theirs.fileno()), "--parent-pid", str(os.getpid())]
        command += ["--memory-bytes", str(self._memory_bytes)]
        self._process = subprocess.Popen(
            command,
            env=template_environment(),
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            cwd="/",
            # Own session: a terminal's Ctrl-C reaches the server (which drains), not the workers.
            start_new_session=True,
        )
        theirs.close()
        ours.settimeout(HELLO_TIMEOUT)
        try:
            hello = json.loads(ours.recv(MAX_MESSAGE) or b"{}")
        except (OSError, ValueError) as exc:
            self._process.kill()
            raise PoolClosedError(f"the worker template did not start: {exc}") from exc
        if hello.get("event") != "hello":
            self._process.kill()
            raise PoolClosedError(
                f"the worker template did not start (exit {self._process.wait()})"
            )
        ours.setblocking(False)
        self._control = ours

    def attach(
        self,
        on_spawned: SpawnedCallback,
        on_exited: ExitedCallback,
        on_lost: Callable[[], None],
        on_spawn_failed: Callable[[str], None],
    ) -> None:
        """Start delivering the template's events to callbacks on the running event loop."""
        assert self._control is not None, "start() first"
        self._on_spawned, self._on_exited, self._on_lost = on_spawned, on_exited, on_lost
        self._on_spawn_failed = on_spawn_failed
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._control.fileno(), self._on_readable)

    def request(self, count: int) -> None:
        """Ask for ``count`` more workers; each arrives through the spawned callback."""
        if self._control is None:
            raise PoolClosedError("the worker template is not running")
        try:
            self._control.send(json.dumps({"op": "spawn", "count": count}).encode())
        except OSError as exc:
            raise PoolClosedError(f"the worker template is gone: {exc}") from exc

    async def set_memory_limit(self, pid: int, memory_bytes: int) -> None:
        """Have the template set a worker's memory limit; wait for it to confirm."""
        if self._control is None or self._loop is None:
            raise PoolClosedError("the worker template is not running")
        done = self._loop.create_future()
        self._limit_waiters[pid] = done
        request = {"op": "limit", "pid": pid, "memory": memory_bytes}
        try:
            self._control.send(json.dumps(request).encode())
            error = await done
        finally:
            self._limit_waiters.pop(pid, None)
        if error:
            raise SandboxError(f"could not set the worker's limits: {error}")

    def _on_readable(self) -> None:
        assert self._control is not None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._control, MAX_MESSAGE, 2)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._lost()
                return
            self._dispatch(json.loads(data), fds)

    def _dispatch(self, event: dict[str, Any], fds: list[int]) -> None:
        assert self._on_spawned and self._on_exited
        if event.get("event") == "spawned" and len(fds) == 2:
            self._on_spawned(int(event["pid"]), socket.socket(fileno=fds[0]), fds[1])
        elif event.get("event") == "limited":
            waiter = self._limit_waiters.get(int(event["pid"]))
            if waiter is not None and not waiter.done():
                waiter.set_result(str(event.get("error", "")))
        elif event.get("event") == "exited":
            oom = event.get("out_of_memory") is True
            self._on_exited(int(event["pid"]), event.get("returncode"), oom)
        elif event.get("event") == "spawn_failed" and self._on_spawn_failed:
            self._on_spawn_failed(str(event.get("error", ""))[:200])
        else:
            for fd in fds:
                os.close(fd)
            log.warning("ignored unexpected template event %r", event.get("event"))

    def _lost(self) -> None:
        self.detach()
        if self._on_lost:
            self._on_lost()

    def detach(self) -> None:
        """Stop listening and close the control socket (on the loop's thread); idempotent."""
        if self._control is None:
            return
        control, self._control = self._control, None
        if self._loop is not None:
            self._loop.remove_reader(control.fileno())
        control.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Wait for the template to exit after detach() (it kills its workers); idempotent."""
        if self._loop is None:
            self.detach()  # never attached: no loop to unregister from
        if self._process is None:
            return
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
