"""A whole value as one Arrow IPC stream in memory (how the client sends Arrow arguments)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ._decode import decode
from ._encode import encode
from ._errors import CodecError


def to_ipc(value: object, *, compression: str | None = None) -> bytes:
    """``value`` encoded (see ``encode``) and written as one Arrow IPC stream.

    ``compression`` is an IPC buffer codec, ``"lz4"`` or ``"zstd"``; readers decompress
    transparently. An iterator is consumed entirely.
    """
    encoded = encode(value)
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, encoded.schema, options=options) as writer:
        for batch in encoded.batches:
            writer.write_batch(batch)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def from_ipc(data: bytes | memoryview) -> Any:
    """The value held by an Arrow IPC stream (see ``decode``).

    A stream without tilefn metadata decodes to a ``pyarrow.Table``. Raises CodecError when
    ``data`` is not an Arrow IPC stream.
    """
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(data))
        batches = list(reader)
    except pa.ArrowException as exc:
        raise CodecError(f"not a valid Arrow IPC stream: {exc}") from exc
    return decode(reader.schema, batches)
