"""Per-request limits: CPU time and memory, set by the template where the UDF cannot undo them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tilefn.client import Client, InvalidRequestError, ResourceExhaustedError

from conftest import ServerProcess


def spin() -> None:
    while True:
        pass


def fill_memfd(mib: int) -> int:
    """Write mib MiB into memfds: charged to the worker's cgroup, not to its address space."""
    import os

    chunk = b"\0" * ((1 << 20) - 1)
    written = 0
    for i in range(0, mib, 128):
        fd = os.memfd_create(f"fill{i}")
        for _ in range(min(128, mib - i)):
            written += os.write(fd, chunk)
    return written // ((1 << 20) - 1)


def test_cpu_time_limit(client: Client) -> None:
    with pytest.raises(ResourceExhaustedError) as caught:
        client.with_options(cpu_time=1, timeout=60).exec(spin)
    assert caught.value.reason == "ERROR_REASON_CPU_LIMIT"


def test_memory_limit_per_request_and_reset_afterwards(client: Client) -> None:
    with pytest.raises(ResourceExhaustedError) as caught:
        client.with_options(memory_bytes=256 << 20).exec(fill_memfd, 512)
    assert caught.value.reason == "ERROR_REASON_MEMORY_LIMIT"
    # The next calls (fresh or reused workers) are back at the server's limit.
    for _ in range(3):
        assert client.exec(fill_memfd, 384) == 384


def test_a_lowered_limit_does_not_stick_to_the_slot(
    make_server: Callable[..., ServerProcess],
) -> None:
    """One worker at a time: every new worker reuses the slot (uid, cgroup) of the last one."""
    server = make_server(
        "--max-workers", "1", "--ready-workers", "1", "--max-tasks-per-worker", "1"
    )
    with Client(server.address) as client:
        with pytest.raises(ResourceExhaustedError):
            client.with_options(memory_bytes=128 << 20).exec(fill_memfd, 256)
        for _ in range(3):
            assert client.with_options(timeout=30).exec(fill_memfd, 256) == 256
        assert "cgroups" in client.server_info()["sandbox"]["active_layers"]


def test_limits_within_bounds_let_work_finish(client: Client) -> None:
    limited = client.with_options(memory_bytes=512 << 20, cpu_time=30)
    assert limited.exec(fill_memfd, 128) == 128
    assert client.exec(lambda: sum(range(1000))) == 499500


@pytest.mark.parametrize(
    ("options", "name"),
    [({"memory_bytes": 1 << 50}, "memory_bytes"), ({"cpu_time": 10**6}, "cpu_time")],
)
def test_limits_above_the_server_maximum(client: Client, options: dict, name: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client.with_options(**options).exec(lambda: 1)
    assert caught.value.reason == "ERROR_REASON_OPTION_INVALID"
    assert caught.value.metadata["option"] == name


def test_a_worker_gets_at_most_one_core(client: Client) -> None:
    """Two spinning threads for ~1.5 s of wall time: the cgroup's CFS quota caps them at one core.

    Without the quota they would use ~2 CPU seconds per wall second on two idle cores. (On a
    busy machine they might use less anyway; this can only miss a regression, never flake.)
    """

    def two_spinners(seconds: float) -> float:
        import hashlib
        import threading
        import time

        block = b"x" * (4 << 20)

        def spin() -> None:  # hashlib releases the GIL, so both threads can run at once
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                hashlib.sha256(block).digest()

        threads = [threading.Thread(target=spin) for _ in range(2)]
        started_wall, started_cpu = time.monotonic(), time.process_time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return (time.process_time() - started_cpu) / (time.monotonic() - started_wall)

    info = client.server_info()
    if "cgroups" not in info["sandbox"]["active_layers"]:
        pytest.skip("cgroups are not available on this machine")
    assert client.exec(two_spinners, 1.5) < 1.3
