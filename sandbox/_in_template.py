"""The worker template ("zygote"): a warm, single-threaded process that forks workers on request.

Started by exec (``python -I -m tilefn.sandbox._in_template --control-fd N``) from an empty
environment, before the gRPC server exists, so that forking never copies gRPC threads or server
secrets. It pre-imports numpy, pyarrow and cloudpickle so that a forked worker starts warm.

Control protocol on the SOCK_SEQPACKET control socket (one JSON document per message)::

    parent -> template   {"op": "spawn", "count": n}
    template -> parent   {"event": "hello", "pid": p}                 once, when warm
    template -> parent   {"event": "spawned", "pid": p} + [channel fd, pidfd]
    template -> parent   {"event": "exited", "pid": p, "returncode": rc}
    template -> parent   {"event": "spawn_failed", "error": text}        fork failed

The template reaps its workers and reports how each ended; when the parent goes away (control
socket EOF or parent death) it kills every worker and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import sys
from typing import NoReturn

# Preloaded so every forked worker starts with them imported (the point of the template).
import cloudpickle  # noqa: F401
import numpy  # noqa: F401
import pyarrow
import pyarrow.ipc  # noqa: F401

from tilefn import codec  # noqa: F401

from . import _in_cgroups as cgroups
from . import _in_pidns as pidns
from ._in_execute import warm_up
from ._in_layers import SandboxSetup, die_with_parent, prepare
from ._in_worker import worker_main

MAX_SPAWN = 64
CHANNEL_BUFFER = 4 << 20
#: Distinct uids available to live workers.
MAX_SLOTS = 1024


class Template:
    """Forks workers, hands their channels to the parent, reaps them."""

    def __init__(self, control: socket.socket, setup: SandboxSetup, init_pid: int | None) -> None:
        self.control = control
        self.setup = setup
        self.init_pid = init_pid  # the PID namespace's; no worker can be born once it is gone
        self.children: dict[int, int] = {}  # pid -> slot
        self.free_slots = list(range(MAX_SLOTS - 1, -1, -1))
        self.oom_seen: dict[int, int] = {}  # slot -> OOM kills already reported
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the parent decides when we stop
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, not us

    def send(self, body: dict[str, object], fds: list[int] | None = None) -> None:
        data = json.dumps(body).encode()
        if fds:
            socket.send_fds(self.control, [data], fds)
        else:
            self.control.sendall(data)

    def serve(self) -> None:
        self.send({"event": "hello", "pid": os.getpid()})
        if not self.reap():  # init died before our SIGCHLD handler was there to say so
            return
        while True:
            ready, _, _ = select.select([self.control.fileno(), self.wake_r], [], [])
            if self.wake_r in ready:
                os.read(self.wake_r, 4096)
                if not self.reap():
                    return
            if self.control.fileno() in ready and not self.handle_request():
                return

    def handle_request(self) -> bool:
        try:
            data = self.control.recv(4096)
        except ConnectionError:
            return False  # the server is gone
        if not data:
            return False
        request = json.loads(data)
        if request.get("op") == "spawn":
            for _ in range(max(0, min(int(request.get("count", 1)), MAX_SPAWN))):
                self.spawn()
        elif request.get("op") == "limit":
            self.limit(int(request["pid"]), int(request["memory"]))
        return True

    def limit(self, pid: int, memory_bytes: int) -> None:
        """Set a worker's memory limit for its next task; the worker cannot undo it."""
        error = ""
        try:
            if pid not in self.children:
                raise ProcessLookupError(f"no worker {pid}")
            cgroups.set_memory(self.setup.cgroups, self.children[pid], memory_bytes)
        except (OSError, ValueError) as exc:
            error = str(exc)[:200]
        self.send({"event": "limited", "pid": pid, "error": error})

    def spawn(self) -> None:
        if not self.free_slots:
            return  # every uid slot is busy; the parent asks again as workers exit
        slot = self.free_slots.pop()
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for end in (parent_end, child_end):  # room for whole result chunks: fewer wakeups
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHANNEL_BUFFER)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CHANNEL_BUFFER)
        template_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory: the parent retries later
            self.free_slots.append(slot)
            parent_end.close()
            child_end.close()
            self.send({"event": "spawn_failed", "error": str(exc)})
            return
        if pid == 0:
            _become_worker(child_end, template_pid, self.setup, slot)
        child_end.close()
        self.children[pid] = slot
        pidfd = os.pidfd_open(pid)
        try:
            self.send({"event": "spawned", "pid": pid}, [parent_end.fileno(), pidfd])
        finally:
            parent_end.close()
            os.close(pidfd)

    def reap(self) -> bool:
        """Report every exited worker; False when the PID namespace died (start afresh)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            if pid == self.init_pid:
                return False
            slot = self.children.pop(pid, 0)
            cgroups.kill_stragglers(self.setup.cgroups, slot)
            self.free_slots.append(slot)
            returncode = os.waitstatus_to_exitcode(status)
            ooms = cgroups.oom_kills(self.setup.cgroups, slot)
            out_of_memory = ooms > self.oom_seen.get(slot, 0)
            self.oom_seen[slot] = ooms
            event = {"event": "exited", "pid": pid, "returncode": returncode}
            self.send({**event, "out_of_memory": out_of_memory})

    def reap_all(self) -> None:
        """Wait for every killed worker, so their cgroups can be removed."""
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()

    def kill_all(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _become_worker(
    channel: socket.socket, template_pid: int, setup: SandboxSetup, slot: int
) -> NoReturn:
    """In the forked child: keep only the channel (and stdio), then run the worker."""
    try:
        die_with_parent(template_pid)
        fd = channel.fileno()
        os.closerange(3, fd)
        os.closerange(fd + 1, 65536)
    except BaseException:
        os._exit(71)
    worker_main(channel, setup, slot)


def main() -> None:
    parser = argparse.ArgumentParser(description="tilefn worker template (started by the server)")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--memory-bytes", type=int, required=True)
    options = parser.parse_args()
    die_with_parent(options.parent_pid)
    control = socket.socket(fileno=options.control_fd)
    entered = pidns.enter()
    namespace = entered if isinstance(entered, pidns.Namespace) else None
    setup = prepare(options.memory_bytes, "" if namespace else str(entered))
    warm_up()
    template = Template(control, setup, namespace.init_pid if namespace else None)
    try:
        template.serve()
    except ConnectionError:
        pass  # the server went away mid-conversation: same as a clean EOF
    finally:
        template.kill_all()
        template.reap_all()
        if namespace:
            namespace.close()
        cgroups.remove(setup.cgroups)
        os.rmdir(setup.root)
    sys.exit(0)


if __name__ == "__main__":
    main()
