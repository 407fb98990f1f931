"""Hostile UDFs against the sandbox's isolation layers: each attack meets the safe outcome.

Namespaces, uids, capabilities, no_new_privs, seccomp, Landlock and the filesystem view
(docs/SECURITY.md). The ``server_still_right`` fixture checks that the same server then runs a
normal UDF correctly; resource attacks are in test_hostile_resources.py, attacks on shared
input arrays in test_hostile_arrays.py.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from hostile_support import outcome

from tilefn.client import Client, InvalidRequestError, UdfError, WorkerCrashedError

from conftest import ServerProcess, process_gone

pytestmark = pytest.mark.usefixtures("server_still_right")


def test_layers_are_active_in_the_worker(client: Client) -> None:
    def inspect() -> dict[str, Any]:
        import ctypes
        import os
        import resource
        import socket

        libc = ctypes.CDLL(None)
        return {
            "seccomp": libc.prctl(21, 0, 0, 0, 0),  # PR_GET_SECCOMP: 2 = filter
            "no_new_privs": libc.prctl(39, 0, 0, 0, 0),
            "bounding_has_sys_admin": libc.prctl(23, 21, 0, 0, 0),  # PR_CAPBSET_READ
            "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
            "session_leader": os.getsid(0) == os.getpid(),
            "uid_is_unprivileged": os.getuid() >= 200_000 and os.getgid() >= 200_000,
            "hostname": socket.gethostname(),
            "visible": sorted(os.listdir("/")),
        }

    got = client.exec(inspect)
    visible = got.pop("visible")
    assert got == {
        "seccomp": 2,
        "no_new_privs": 1,
        "bounding_has_sys_admin": 0,
        "core": [0, 0],
        "session_leader": True,
        "uid_is_unprivileged": True,
        "hostname": "tilefn",
    }
    assert {"etc", "proc", "tmp"} <= set(visible)
    assert "home" not in visible and "var" not in visible


def test_no_programs_or_processes(client: Client, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    def attack(path: str) -> dict[str, Any]:
        import ctypes
        import os
        import subprocess

        libc = ctypes.CDLL(None)
        return {
            "system": os.system(f"touch {path}"),
            "libc_system": libc.system(f"touch {path}".encode()),
            "subprocess": outcome(lambda: subprocess.run(["touch", path], check=False)),
            "execv": outcome(lambda: os.execv("/bin/touch", ["touch", path])),
            "fork": outcome(os.fork),
            "posix_spawn": outcome(lambda: os.posix_spawn("/bin/touch", ["touch", path], {})),
        }

    got = client.exec(attack, str(marker))
    assert got["system"] != 0 and got["libc_system"] != 0
    assert {k: v for k, v in got.items() if k not in ("system", "libc_system")} == {
        "subprocess": "EPERM",
        "execv": "EPERM",
        "fork": "EPERM",
        "posix_spawn": "EPERM",
    }
    assert not marker.exists()


def test_threads_still_work(client: Client) -> None:
    def threaded() -> int:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            return sum(pool.map(lambda i: i * i, range(100)))

    assert client.exec(threaded) == sum(i * i for i in range(100))


def test_no_network_egress(client: Client) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[object] = []
    listener.settimeout(3)
    thread = threading.Thread(target=lambda: accepted.append(_accept(listener)))
    thread.start()

    def attack(port: int) -> dict[str, str]:
        import socket

        return {
            "tcp": outcome(lambda: socket.create_connection(("127.0.0.1", port), timeout=2)),
            "udp": outcome(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)),
            "ipv6": outcome(lambda: socket.socket(socket.AF_INET6)),
            "netlink": outcome(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)),
            "packet": outcome(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW)),
            "vsock": outcome(lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)),
        }

    got = client.exec(attack, port)
    thread.join()
    listener.close()
    assert set(got.values()) == {"EPERM"}, got
    assert accepted == [None]


def _accept(listener: socket.socket) -> object:
    try:
        connection, _ = listener.accept()
    except TimeoutError:
        return None
    connection.close()
    return "connected"


def test_no_signals_to_others_and_no_tracing(client: Client, server: ServerProcess) -> None:
    """Pids are the host's (told by the test): what an attacker who guessed them would try."""

    def attack(server_pid: int, template_pid: int) -> dict[str, str]:
        import ctypes
        import os
        import signal

        libc = ctypes.CDLL(None, use_errno=True)

        def ptrace(pid: int) -> None:
            if libc.ptrace(16, pid, 0, 0) != 0:  # PTRACE_ATTACH
                raise OSError(ctypes.get_errno(), "ptrace")

        return {
            "kill_template": outcome(lambda: os.kill(template_pid, signal.SIGKILL)),
            "kill_server": outcome(lambda: os.kill(server_pid, signal.SIGKILL)),
            "kill_init": outcome(lambda: os.kill(1, signal.SIGKILL)),
            "kill_all": outcome(lambda: os.kill(-1, signal.SIGKILL)),
            "ptrace_template": outcome(lambda: ptrace(template_pid)),
            "ptrace_init": outcome(lambda: ptrace(1)),
            "pidfd": outcome(lambda: os.pidfd_open(server_pid)),
        }

    got = client.exec(attack, server.pid, server.template_pid())
    assert set(got.values()) == {"EPERM"}, got


def test_own_pid_namespace_shows_only_itself(client: Client, server: ServerProcess) -> None:
    def look() -> dict[str, Any]:
        import os

        return {
            "parent": os.getppid(),
            "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
            "me": os.getpid(),
            "proc_entries": sorted(os.listdir("/proc")),
        }

    got = client.exec(look)
    assert got["parent"] == 0  # the template lives outside the namespace: no number at all
    assert got["processes"] == [got["me"]]  # not the init, not sibling workers
    assert got["me"] in server.worker_ns_pids()
    assert "sys" not in got["proc_entries"] and "kcore" not in got["proc_entries"]


def test_killing_its_own_group_only_kills_itself(client: Client, server: ServerProcess) -> None:
    template = server.template_pid()

    def attack() -> None:
        import os
        import signal

        os.kill(0, signal.SIGKILL)

    with pytest.raises(WorkerCrashedError) as caught:
        client.exec(attack)
    assert "SIGKILL" in caught.value.message
    assert not process_gone(template) and server.template_pid() == template


def test_no_kernel_escape_hatches(client: Client) -> None:
    def attack() -> dict[str, str]:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)

        def call(name: str, *args: int) -> None:
            if getattr(libc, name)(*args) == -1:
                raise OSError(ctypes.get_errno(), name)

        return {
            "unshare_user": outcome(lambda: call("unshare", 0x10000000)),
            "unshare_net": outcome(lambda: call("unshare", 0x40000000)),
            "mount": outcome(lambda: call("mount", 0, 0, 0, 0, 0)),
            "chroot": outcome(lambda: call("chroot", 0)),
            "shmget": outcome(lambda: call("shmget", 0, 4096, 0o1000)),
            "msgget": outcome(lambda: call("msgget", 0, 0o1000)),
            "io_uring": outcome(lambda: call("syscall", 425, 8, 0)),
            "bpf": outcome(lambda: call("syscall", 321, 0, 0, 0)),
            "userfaultfd": outcome(lambda: call("syscall", 323, 0)),
            "keyctl": outcome(lambda: call("syscall", 250, 0, 0)),
            "perf": outcome(lambda: call("syscall", 298, 0, 0, 0, 0, 0)),
        }

    got = client.exec(attack)
    assert set(got.values()) == {"EPERM"}, got


def test_malicious_pickle_cannot_exec(client: Client, tmp_path: Path) -> None:
    marker = tmp_path / "pickle-rce"

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            import os

            return (os.system, (f"touch {marker}",))

    # The payload runs os.system when the worker unpickles the argument: exec is refused.
    assert client.exec(lambda status: status != 0, Payload()) is True
    assert not marker.exists()


def test_host_files_are_not_there(client: Client, server: ServerProcess, tmp_path: Path) -> None:
    secret = tmp_path / "other-tenant.txt"
    secret.write_text("tenant B's data")

    def attack(secret: str, server_pid: int) -> dict[str, str]:
        from pathlib import Path

        return {
            "shadow": outcome(lambda: Path("/etc/shadow").read_text()),
            "other_tenant": outcome(lambda: Path(secret).read_text()),
            "server_environ": outcome(lambda: Path(f"/proc/{server_pid}/environ").read_bytes()),
            "root_home": outcome(lambda: Path("/root/.bashrc").read_text()),
        }

    assert set(client.exec(attack, str(secret), server.pid).values()) == {"ENOENT"}


def test_writes_outside_scratch_are_refused(client: Client) -> None:
    def attack() -> dict[str, str]:
        import os
        import site
        from pathlib import Path

        packages = site.getsitepackages()[0]
        return {
            "site_packages": outcome(lambda: Path(packages, "evil.pth").write_text("import os")),
            "etc": outcome(lambda: Path("/etc/evil").write_text("x")),
            "root": outcome(lambda: os.mkdir("/evil")),
            "scratch": outcome(lambda: Path("/tmp/ok.txt").write_text("fine")),
        }

    got = client.exec(attack)
    assert got.pop("scratch") == "allowed"
    assert set(got.values()) == {"EROFS"}, got


def test_abstract_and_shared_memory_of_others_are_out_of_reach(client: Client) -> None:
    name = f"tilefn-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind("\0" + name)  # an abstract socket in the server's network namespace
    listener.listen()
    shm = Path("/dev/shm") / name
    shm.write_text("another process's shared memory")

    def attack(name: str) -> dict[str, str]:
        import socket
        from pathlib import Path

        def connect() -> None:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect("\0" + name)

        return {
            "abstract": outcome(connect),
            "posix_shm": outcome(lambda: Path(f"/dev/shm/{name}").read_text()),
        }

    try:
        got = client.exec(attack, name)
    finally:
        listener.close()
        shm.unlink()
    assert got == {"abstract": "ECONNREFUSED", "posix_shm": "ENOENT"}


def test_results_and_exceptions_are_never_unpickled(client: Client, tmp_path: Path) -> None:
    marker = tmp_path / "server-side-rce"

    class Trap:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (Path.touch, (str(marker),))

    class TrapError(Exception):
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (Path.touch, (str(marker),))

    with pytest.raises(InvalidRequestError) as caught:
        client.exec(Trap)
    assert caught.value.reason == "ERROR_REASON_RESULT_TYPE_UNSUPPORTED"

    def raise_trap() -> None:
        raise TrapError("boom")

    with pytest.raises(UdfError) as raised:
        client.exec(raise_trap)
    assert raised.value.exception_type.endswith("TrapError") and "boom" in raised.value.message
    assert not marker.exists()


def test_cannot_join_the_service_port_or_inherit_a_socket(
    client: Client, server: ServerProcess
) -> None:
    """gRPC listens with SO_REUSEPORT: a UDF must not bind the same port and steal calls."""
    port = int(server.address.rsplit(":", 1)[1])

    def attack(port: int) -> dict[str, Any]:
        import os
        import socket
        import stat

        def join() -> None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()

        families = set()
        for fd in range(3, 1024):  # every socket the worker holds must be AF_UNIX
            try:
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    continue
            except OSError:
                continue
            held = socket.socket(fileno=os.dup(fd))
            families.add(int(held.family))
            held.close()
        return {"join": outcome(join), "families": sorted(families)}

    got = client.exec(attack, port)
    assert got["join"] == "EPERM", got
    assert got["families"] == [int(socket.AF_UNIX)], got
    for _ in range(20):  # every call still reaches the real server
        assert client.exec(lambda: 2) == 2
