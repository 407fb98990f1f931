"""Yardstick server: Arrow Flight DoGet streaming the same 1 GiB of float64 as tilefn's UDF.

    python -m bench.peers.flight_server --port N

The ticket is ``b"<batches>x<rows>"``; DoGet generates the batches on the fly with the very
function the tilefn UDF runs (``bench.workloads.stream.float64_batches``), so both servers do
the same work per batch and neither holds the whole table. Prints ``ready`` once it serves.
"""

from __future__ import annotations

import argparse
from typing import Any

import pyarrow as pa
from pyarrow import flight

from bench.workloads.stream import float64_batches

SCHEMA = pa.schema([("values", pa.float64())])


class StreamServer(flight.FlightServerBase):  # type: ignore[misc]
    """DoGet only."""

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.GeneratorStream:
        batches, rows = (int(part) for part in ticket.ticket.decode().split("x"))
        generated = (
            pa.record_batch([pa.array(values)], schema=SCHEMA)
            for values in float64_batches(batches, rows)
        )
        return flight.GeneratorStream(SCHEMA, generated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    server = StreamServer(f"grpc://127.0.0.1:{parser.parse_args().port}")
    print("ready", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
