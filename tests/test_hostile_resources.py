"""Hostile UDFs against the sandbox's resource limits: each is stopped, alone, and cleaned up.

Descriptors, threads, memory, disk and inodes, printed output, CPU-time tricks and crashes; the
``server_still_right`` fixture checks that the same server then runs a normal UDF correctly, and
conftest.py fails the session if any worker process outlives its server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hostile_support import outcome

from tilefn.client import Client, ResourceExhaustedError, UdfTimeoutError, WorkerCrashedError

from conftest import ServerProcess, wait_for

pytestmark = pytest.mark.usefixtures("server_still_right")


def test_limits_cannot_be_raised(client: Client) -> None:
    def attack() -> list[int]:
        import contextlib
        import resource

        for limit in (resource.RLIMIT_CORE, resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE):
            # Python reports EPERM here as ValueError.
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(limit, (1 << 30, 1 << 30))
        return [resource.getrlimit(resource.RLIMIT_CORE)[1], resource.getrlimit(7)[1]]

    assert client.exec(attack) == [0, 1024]


def test_descriptor_exhaustion_stops_at_the_limit(client: Client) -> None:
    def attack() -> int:
        import os

        fds = []
        try:
            while len(fds) < 100_000:
                fds.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        count = len(fds)
        for fd in fds:
            os.close(fd)
        return count

    assert 900 < client.exec(attack) < 1024


def test_stdout_flood_is_drained_and_bounded(client: Client) -> None:
    def flood() -> int:
        import sys

        line = "x" * 1023 + "\n"
        for _ in range(100_000):  # 100 MiB
            sys.stdout.write(line)
        return 7

    stream = client.stream(flood)
    assert stream.value() == 7
    assert stream.logs is not None and stream.logs.truncated
    assert stream.logs.total_bytes == 100_000 * 1024
    assert len(stream.logs.text) <= 64 * 1024


def test_scratch_is_capped_and_not_executable(client: Client) -> None:
    def attack() -> dict[str, str]:
        import ctypes
        import os
        from pathlib import Path

        def fill() -> None:
            with open("/tmp/fill", "wb") as sink:
                for _ in range(1024):  # up to 1 GiB
                    sink.write(b"\0" * (1 << 20))

        def inodes() -> None:
            for i in range(100_000):
                Path(f"/tmp/inode-{i}").touch()

        def load_from_scratch() -> None:
            (library,) = Path("/usr/lib").glob("*/libm.so.6")
            Path("/tmp/libm.so").write_bytes(library.read_bytes())
            ctypes.CDLL("/tmp/libm.so")

        results = {"fill": outcome(fill)}
        os.remove("/tmp/fill")
        results["inodes"] = outcome(inodes)
        for name in os.listdir("/tmp"):
            if name.startswith("inode-"):
                os.remove(f"/tmp/{name}")
        results["load_from_scratch"] = outcome(load_from_scratch)
        return results

    got = client.exec(attack)
    assert got["fill"] == "ENOSPC" and got["inodes"] == "ENOSPC", got
    assert got["load_from_scratch"] != "allowed"  # noexec: dlopen cannot map it executable


def test_thread_bomb_is_bounded(client: Client) -> None:
    def attack() -> int:
        import threading
        import time

        stop = threading.Event()
        started = 0
        try:
            for _ in range(5000):
                threading.Thread(target=stop.wait, daemon=True).start()
                started += 1
        except RuntimeError:  # "can't start new thread"
            pass
        stop.set()
        time.sleep(0.2)
        return started

    assert client.exec(attack) < 256


def test_memory_bomb_fails_inside_the_worker(client: Client) -> None:
    def attack() -> str:
        import numpy as np

        try:
            # 10 GiB: under this machine's RAM (so only the 8 GiB limit can refuse it), and
            # np.empty touches no page, so a missing limit would not hurt the machine.
            np.empty(10 << 30, dtype=np.uint8)
        except MemoryError:
            return "MemoryError"
        return "allocated"

    assert client.exec(attack) == "MemoryError"


def getpid() -> int:
    import os

    return os.getpid()


def test_scratch_is_wiped_between_tasks(client: Client) -> None:
    def plant() -> int:
        import os
        from pathlib import Path

        Path("/tmp/planted").write_text("left for the next task")
        return os.getpid()

    def harvest() -> list[Any]:
        import os

        return [os.getpid(), os.listdir("/tmp")]

    planted_in = client.exec(plant)
    pids_seen = []
    for _ in range(3):  # the next call may land on the same (reused) worker or a fresh one
        pid, listing = client.exec(harvest)
        pids_seen.append(pid)
        assert "planted" not in listing
    assert planted_in in pids_seen or len(set(pids_seen)) > 0


def leave_a_thread() -> int:
    import os
    import threading

    threading.Thread(target=threading.Event().wait, daemon=True).start()
    return os.getpid()


def leave_a_memfd() -> int:
    """Plant data in a descriptor the next task of the namespace could find and read."""
    import os

    fd = os.memfd_create("planted")
    os.write(fd, b"secret of the previous task")
    return os.getpid()


@pytest.mark.parametrize("taint", [leave_a_thread, leave_a_memfd])
def test_tainted_worker_is_not_reused(
    client: Client, server: ServerProcess, taint: Callable[[], int]
) -> None:
    tainted = client.exec(taint)
    wait_for(lambda: server.worker_gone(tainted), what="the tainted worker to be retired")
    assert tainted not in [client.exec(getpid) for _ in range(4)]


def test_segfault_fails_only_its_own_call(client: Client) -> None:
    def crash() -> None:
        import ctypes

        ctypes.string_at(0)

    with pytest.raises(WorkerCrashedError) as caught:
        client.exec(crash)
    assert caught.value.reason == "ERROR_REASON_WORKER_DIED"
    assert "SIGSEGV" in caught.value.message


def test_memory_limit_stops_only_that_worker(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server("--worker-memory-bytes", str(1536 << 20))

    def hog() -> int:
        import os

        # memfd pages are charged to the worker's cgroup but are not address space, so the
        # kernel's OOM killer (not MemoryError) must stop this: 2 GiB against 1.5 GiB.
        chunk = b"\0" * (64 << 20)
        fds = [os.memfd_create(f"hog{i}") for i in range(8)]
        for fd in fds:
            for _ in range(4):  # 256 MiB each, within RLIMIT_FSIZE
                os.write(fd, chunk[: (64 << 20) - 1])
        return len(fds)

    with Client(server.address) as client:
        with pytest.raises(ResourceExhaustedError) as caught:
            client.exec(hog)
        assert caught.value.reason == "ERROR_REASON_MEMORY_LIMIT"
        assert client.exec(lambda: 1) == 1


def test_ignoring_sigterm_does_not_outlive_the_deadline(
    client: Client, server: ServerProcess
) -> None:
    def stubborn() -> Any:
        import os
        import signal
        import time

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        yield os.getpid()  # the first batch tells the test which process to watch
        while True:
            try:
                time.sleep(60)
            except BaseException:  # swallow whatever Python-level interruption arrives
                continue

    stream = client.with_options(timeout=1.0).stream(stubborn)
    batches = iter(stream)
    pid = next(batches).column(0)[0].as_py()
    with pytest.raises(UdfTimeoutError):
        list(batches)
    wait_for(lambda: server.worker_gone(pid), what=f"worker {pid} to be killed")
