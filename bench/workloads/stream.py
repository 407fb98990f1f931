"""1 GiB of float64 streamed to a Python client: tilefn generator UDF vs Flight DoGet.

Both servers run ``float64_batches`` (1024 batches of 1 MiB, made on the fly); the client
iterates record batches as they arrive and drops them, counting rows. Metrics per repetition:
GB/s (10^9 bytes of float64 payload per second, at the client, from the call to the last
batch), the server process's peak RSS growth and the client's, in MiB.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa

from bench._memory import PeakWatch, rss_bytes
from bench._stats import Metrics

#: 1024 batches x 131072 float64 = 1 GiB.
BATCHES = 1024
ROWS = 131072
WARMUP_BATCHES = 16


def float64_batches(batches: int, rows: int) -> Iterator[np.ndarray]:
    """Consecutive float64 ranges, ``rows`` values each; what both servers stream."""
    import numpy as np  # the tilefn UDF is this function, pickled by value: import inside

    for index in range(batches):
        yield np.arange(index * rows, (index + 1) * rows, dtype=np.float64)


def _drain(batches: Iterable[pa.RecordBatch]) -> int:
    return sum(batch.num_rows for batch in batches)


def _measure(read: Callable[[int], int], server_pid: int) -> Metrics:
    """Warm up with a short stream, then time a full one while watching both RSS peaks."""
    read(WARMUP_BATCHES)
    import os

    server, client = PeakWatch(server_pid), PeakWatch(os.getpid())
    server.start()
    client.start()
    started = time.perf_counter()
    rows = read(BATCHES)
    seconds = time.perf_counter() - started
    if rows != BATCHES * ROWS:
        raise RuntimeError(f"expected {BATCHES * ROWS} rows, got {rows}")
    return {
        "gb_per_s": rows * 8 / seconds / 1e9,
        "seconds": seconds,
        "server_rss_growth_mib": server.growth_mib(),
        "client_rss_growth_mib": client.growth_mib(),
        "client_rss_mib": rss_bytes(os.getpid()) / (1 << 20),
    }


def tilefn(target: str, server_pid: int) -> Metrics:
    from tilefn.client import Client

    with Client(target) as client:
        return _measure(lambda n: _drain(client.stream(float64_batches, n, ROWS)), server_pid)


def flight(target: str, server_pid: int) -> Metrics:
    import pyarrow.flight as fl

    client = fl.FlightClient(f"grpc://{target}")

    def read(batches: int) -> int:
        reader = client.do_get(fl.Ticket(f"{batches}x{ROWS}".encode()))
        return _drain(chunk.data for chunk in reader)

    try:
        return _measure(read, server_pid)
    finally:
        client.close()
