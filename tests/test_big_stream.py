"""A 1 GiB result streams through a server whose memory stays flat."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tilefn.client import Client

from conftest import ServerProcess

GIB = 1 << 30
ITEM = 4 << 20  # bytes per generator item


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def one_gib() -> Iterator[np.ndarray]:
    import numpy as np

    block = np.arange(4 << 17, dtype=np.float64)  # 4 MiB
    for i in range(256):
        yield block + i


@pytest.mark.timeout(600)
def test_one_gib_result_with_bounded_server_memory(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server()
    with Client(server.address) as client:
        client.exec(lambda: 1)  # warm up the server's code paths before the baseline
        baseline = memory_kib(server.pid, "VmRSS")
        stream = client.stream(one_gib)
        total, first_values = 0, []
        for index, batch in enumerate(stream):
            column = batch.column(0)
            total += column.nbytes
            if index % 64 == 0:
                first_values.append(column[0].as_py())
        peak = memory_kib(server.pid, "VmHWM")
    assert total == GIB
    assert stream.summary is not None and stream.summary.rows == GIB // 8
    assert first_values == [16.0 * k for k in range(16)]  # in order: 1 MiB batches, 4 per item
    growth_mib = (peak - baseline) / 1024
    assert growth_mib < 256, f"server peak RSS grew by {growth_mib:.0f} MiB"
