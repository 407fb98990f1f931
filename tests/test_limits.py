"""Per-request limits: CPU time and memory, set by the template where the UDF cannot undo them."""

from __future__ import annotations

import pytest

from tilefn.client import Client, InvalidRequestError, ResourceExhaustedError


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
