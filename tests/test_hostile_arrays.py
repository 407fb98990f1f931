"""A UDF cannot change the array data the server handed it (sealed memfds, read-only maps)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiledb

from tilefn.client import Client, WorkerCrashedError

from conftest import ServerProcess


@pytest.fixture
def array_client(make_server: Callable[..., ServerProcess], tmp_path: Path) -> Client:
    root = tmp_path / "data"
    (root / "t").mkdir(parents=True)
    uri = str(root / "t" / "a")
    domain = tiledb.Domain(tiledb.Dim("i", domain=(0, 999), tile=1000, dtype=np.int64))
    tiledb.Array.create(uri, tiledb.ArraySchema(domain=domain, attrs=[tiledb.Attr("v", np.int64)]))
    with tiledb.open(uri, "w") as array:
        array[:] = {"v": np.arange(1000)}
    server = make_server("--data-root", str(root))
    return Client(server.address)


def tamper(data: dict[str, Any]) -> dict[str, str]:
    """Try every way to write into the shared input: through its fds and its mapping."""
    import errno
    import mmap
    import os

    def attempt(action: Callable[[], object]) -> str:
        try:
            action()
        except (OSError, ValueError) as exc:
            return errno.errorcode.get(getattr(exc, "errno", 0) or 0, type(exc).__name__)
        return "allowed"

    outcomes = {"setflags": attempt(lambda: data["v"].setflags(write=True))}
    for fd in range(3, 64):
        try:
            os.fstat(fd)
        except OSError:
            continue
        size = os.fstat(fd).st_size
        if size == 0:
            continue  # the worker's channel (a socket) and the like
        outcomes[f"write{fd}"] = attempt(lambda fd=fd: os.pwrite(fd, b"\xff" * 8, 0))
        outcomes[f"truncate{fd}"] = attempt(lambda fd=fd: os.ftruncate(fd, 0))
        outcomes[f"map{fd}"] = attempt(
            lambda fd=fd, size=size: mmap.mmap(fd, size, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        )
    return outcomes


def test_input_fds_and_mappings_refuse_writes(array_client: Client) -> None:
    outcomes = array_client.apply("tiledb://t/a", tamper)
    assert outcomes.pop("setflags") == "ValueError"
    assert outcomes, "the UDF should have found the column's memfd"
    assert set(outcomes.values()) <= {"EPERM", "EBADF", "EACCES"}, outcomes
    assert array_client.apply("tiledb://t/a", lambda d: int(d["v"].sum())) == sum(range(1000))


def test_writing_through_the_mapping_kills_only_the_worker(array_client: Client) -> None:
    def scribble(data: dict[str, Any]) -> None:
        import ctypes

        ctypes.memset(data["v"].ctypes.data, 0xFF, 8)

    with pytest.raises(WorkerCrashedError) as caught:
        array_client.apply("tiledb://t/a", scribble)
    assert "SIGSEGV" in caught.value.message or "SIGBUS" in caught.value.message
    assert array_client.apply("tiledb://t/a", lambda d: int(d["v"][0])) == 0
