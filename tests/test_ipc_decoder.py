"""StreamDecoder: an Arrow IPC stream cut into arbitrary pieces decodes like pa.ipc.open_stream.

Each stream is written by pyarrow itself; the byte offset where every message ends is read
back with pyarrow's own MessageReader, so the expectations do not depend on the decoder's
framing code.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest

from tilefn.client._ipc import IpcStreamError, StreamDecoder

MIB = 1 << 20
COMPRESSIONS = [None, "lz4", "zstd"]


@dataclass(frozen=True)
class Stream:
    """An encoded stream and what decoding it must produce."""

    data: bytes
    schema: pa.Schema
    batches: list[pa.RecordBatch]
    schema_end: int  # offset just past the schema message
    batch_ends: list[int]  # offset just past each record batch message
    message_ends: list[int]  # offset just past every message before the end-of-stream marker


def encode(schema: pa.Schema, batches: Sequence[pa.RecordBatch], **options: object) -> Stream:
    """Write the batches as one IPC stream and locate its messages."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema, options=pa.ipc.IpcWriteOptions(**options)) as writer:
        for batch in batches:
            writer.write_batch(batch)
    data = sink.getvalue()
    source = pa.BufferReader(data)
    messages = pa.ipc.MessageReader.open_stream(source)
    ends: list[tuple[str, int]] = []
    while True:
        try:
            message = messages.read_next_message()
        except StopIteration:
            break
        ends.append((message.type, source.tell()))
    assert ends[0][0] == "schema"
    return Stream(
        data=data.to_pybytes(),
        schema=schema,
        batches=list(batches),
        schema_end=ends[0][1],
        batch_ends=[end for kind, end in ends if kind == "record batch"],
        message_ends=[end for _, end in ends],
    )


def numeric() -> tuple[pa.Schema, list[pa.RecordBatch]]:
    table = pa.table(
        {
            "i": pa.array([1, None, 3, 4, 5, 6, 7, 8, 9, 10], pa.int64()),
            "f": np.linspace(0.0, 1.0, 10),
            "b": [True, False, None, True, True, False, False, True, None, True],
            "u8": pa.array(range(10), pa.uint8()),
        }
    )
    return table.schema, table.to_batches(max_chunksize=3)


def strings() -> tuple[pa.Schema, list[pa.RecordBatch]]:
    table = pa.table(
        {
            "s": ["alpha", None, "", "ünïcödé ✓", "x" * 300, "tail"],
            "ls": pa.array(["a", "bb", None, "ccc", "", "d"], pa.large_string()),
            "bin": pa.array([b"\x00\x01", b"", None, b"\xff" * 9, b"z", b"q"], pa.binary()),
        }
    )
    return table.schema, table.to_batches(max_chunksize=4)


def nested() -> tuple[pa.Schema, list[pa.RecordBatch]]:
    table = pa.table(
        {
            "li": [[1, 2], [], None, [3], [4, 5, 6]],
            "lls": [[["a"], ["b", None]], None, [[]], [["c", "d"]], []],
            "st": [{"x": 1, "y": "a"}, None, {"x": 3, "y": None}, {"x": 4, "y": "d"}, {}],
        }
    )
    return table.schema, table.to_batches(max_chunksize=2)


def dictionaries() -> tuple[pa.Schema, list[pa.RecordBatch]]:
    table = pa.table(
        {
            "city": pa.array(["oslo", "rome", "oslo", None, "lima", "rome"]).dictionary_encode(),
            "code": pa.array([7, 7, 3, 3, None, 9]).dictionary_encode(),
            "n": range(6),
        }
    )
    return table.schema, table.to_batches(max_chunksize=2)


def with_metadata() -> tuple[pa.Schema, list[pa.RecordBatch]]:
    field = pa.field("v", pa.float32(), metadata={"unit": "metre"})
    schema = pa.schema([field], metadata={"tilefn.kind": "ndarray", "shape": "[2, 3]"})
    values = pa.array([1.5, 2.5, 3.5, 4.5, 5.5, 6.5], pa.float32())
    return schema, [
        pa.record_batch([values.slice(0, 3)], schema=schema),
        pa.record_batch([values.slice(3)], schema=schema),
    ]


def empty() -> tuple[pa.Schema, list[pa.RecordBatch]]:
    return pa.schema([("a", pa.int32()), ("d", pa.dictionary(pa.int8(), pa.string()))]), []


BUILDERS: dict[str, Callable[[], tuple[pa.Schema, list[pa.RecordBatch]]]] = {
    "numeric": numeric,
    "strings": strings,
    "nested": nested,
    "dictionaries": dictionaries,
    "metadata": with_metadata,
    "empty": empty,
}


@pytest.fixture(
    params=[(name, codec) for name in BUILDERS for codec in COMPRESSIONS],
    ids=lambda param: f"{param[0]}-{param[1] or 'plain'}",
)
def stream(request: pytest.FixtureRequest) -> Stream:
    name, compression = request.param
    schema, batches = BUILDERS[name]()
    return encode(schema, batches, compression=compression)


def assert_batches_equal(got: Sequence[pa.RecordBatch], want: Sequence[pa.RecordBatch]) -> None:
    assert len(got) == len(want)
    for decoded, original in zip(got, want, strict=True):
        assert decoded.equals(original, check_metadata=True), (decoded, original)


def decode(
    pieces: Iterable[bytes | bytearray | memoryview], **kwargs: bool
) -> list[pa.RecordBatch]:
    """Feed every piece, close, and return all batches."""
    decoder = StreamDecoder(**kwargs)
    batches = [batch for piece in pieces for batch in decoder.feed(piece)]
    decoder.close()
    return batches


def random_pieces(data: bytes, seed: int, largest: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces: list[bytes] = []
    at = 0
    while at < len(data):
        size = rng.randint(1, largest)
        pieces.append(data[at : at + size])
        at += size
    return pieces


# --- decoding ---------------------------------------------------------------------------------


def test_all_at_once(stream: Stream) -> None:
    decoder = StreamDecoder()
    batches = decoder.feed(stream.data)
    assert decoder.finished
    assert decoder.schema is not None
    assert decoder.schema.equals(stream.schema, check_metadata=True)
    assert_batches_equal(batches, stream.batches)
    decoder.close()


def test_one_byte_at_a_time_returns_each_batch_at_its_last_byte(stream: Stream) -> None:
    decoder = StreamDecoder()
    got: list[pa.RecordBatch] = []
    for at in range(len(stream.data)):
        assert (decoder.schema is not None) == (at >= stream.schema_end)
        assert not decoder.finished
        completed = decoder.feed(stream.data[at : at + 1])
        assert len(completed) == stream.batch_ends.count(at + 1)
        got += completed
    assert decoder.finished
    decoder.close()
    assert_batches_equal(got, stream.batches)


def test_every_single_cut_point(stream: Stream) -> None:
    for cut in range(len(stream.data) + 1):
        decoder = StreamDecoder()
        first = decoder.feed(stream.data[:cut])
        complete_before_cut = sum(end <= cut for end in stream.batch_ends)
        assert len(first) == complete_before_cut, cut
        second = decoder.feed(stream.data[cut:])
        decoder.close()
        assert_batches_equal(first + second, stream.batches)


@pytest.mark.parametrize("seed", range(5))
def test_random_piece_sizes(stream: Stream, seed: int) -> None:
    largest = max(2, len(stream.data) // 3)
    assert_batches_equal(decode(random_pieces(stream.data, seed, largest)), stream.batches)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_big_bodies_in_one_mib_pieces(compression: str | None) -> None:
    rng = np.random.default_rng(0)
    values = rng.random(20 * MIB // 8)  # random doubles barely compress: a ~20 MiB body
    schema = pa.schema([("x", pa.float64()), ("s", pa.string())])
    big = pa.record_batch([values, pa.array(["v"] * len(values))], schema=schema)
    small = pa.record_batch([[1.0], ["tail"]], schema=schema)
    stream = encode(schema, [big, small], compression=compression)
    decoder = StreamDecoder()
    got: list[pa.RecordBatch] = []
    for at in range(0, len(stream.data), MIB):
        completed = decoder.feed(stream.data[at : at + MIB])
        piece_end = min(at + MIB, len(stream.data))
        assert len(completed) == sum(at < end <= piece_end for end in stream.batch_ends)
        got += completed
    decoder.close()
    assert_batches_equal(got, [big, small])


def test_memory_stays_about_one_message() -> None:
    """Bodies are copied into their final buffer as pieces arrive, never accumulated."""
    body = 4 * MIB
    schema = pa.schema([("x", pa.int64())])
    batches = [pa.record_batch([np.full(body // 8, i)], schema=schema) for i in range(8)]
    stream = encode(schema, batches)
    pieces = [stream.data[at : at + MIB] for at in range(0, len(stream.data), MIB)]
    del batches
    decoder = StreamDecoder()
    baseline = pa.total_allocated_bytes()
    arrow_peak = 0
    tracemalloc.start()
    try:
        for piece in pieces:
            count = len(decoder.feed(piece))  # each batch is dropped at once
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - baseline)
            assert count <= 1
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    decoder.close()
    assert decoder.finished
    assert arrow_peak <= body + 64 * 1024
    assert python_peak < MIB  # no joined copies of pieces on the Python heap


def test_dictionary_deltas_and_replacements() -> None:
    schema = pa.schema([("d", pa.dictionary(pa.int32(), pa.string()))])

    def batch(values: list[str], dictionary: list[str]) -> pa.RecordBatch:
        indices = pa.array([dictionary.index(value) for value in values], pa.int32())
        array = pa.DictionaryArray.from_arrays(indices, pa.array(dictionary))
        return pa.record_batch([array], schema=schema)

    batches = [
        batch(["a", "b", "a"], ["a", "b"]),
        batch(["c", "a"], ["a", "b", "c"]),  # a delta: the dictionary only grew
        batch(["z", "z"], ["z"]),  # a replacement
        batch(["y"], ["z", "y"]),
    ]
    for compression in COMPRESSIONS:
        stream = encode(schema, batches, compression=compression, emit_dictionary_deltas=True)
        dictionary_messages = len(stream.message_ends) - 1 - len(stream.batch_ends)
        assert dictionary_messages == 4
        one_byte = [stream.data[at : at + 1] for at in range(len(stream.data))]
        assert_batches_equal(decode(one_byte), batches)
        assert_batches_equal(decode(random_pieces(stream.data, 7, 50)), batches)


def test_pandas_categorical_round_trip() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "colour": pd.Categorical(["red", "blue", "red", None, "green"] * 20),
            "size": pd.Categorical([3, 1, 2, 3, 1] * 20, categories=[1, 2, 3], ordered=True),
            "n": np.arange(100),
        }
    )
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for compression in COMPRESSIONS:
        stream = encode(table.schema, table.to_batches(max_chunksize=30), compression=compression)
        batches = decode(random_pieces(stream.data, 3, 64))
        decoded = pa.Table.from_batches(batches, schema=table.schema).to_pandas()
        pd.testing.assert_frame_equal(decoded, frame)


def test_schema_metadata_is_kept_on_schema_and_batches() -> None:
    schema, batches = with_metadata()
    stream = encode(schema, batches)
    decoder = StreamDecoder()
    got = decoder.feed(stream.data)
    assert decoder.schema is not None
    assert decoder.schema.metadata == {b"tilefn.kind": b"ndarray", b"shape": b"[2, 3]"}
    assert decoder.schema.field("v").metadata == {b"unit": b"metre"}
    assert all(batch.schema.metadata == decoder.schema.metadata for batch in got)


def test_empty_stream_has_schema_and_no_batches() -> None:
    schema, _ = empty()
    stream = encode(schema, [])
    decoder = StreamDecoder()
    assert decoder.feed(stream.data[: stream.schema_end]) == []
    assert decoder.schema == schema and not decoder.finished
    assert decoder.feed(stream.data[stream.schema_end :]) == []
    assert decoder.finished
    decoder.close()


def test_legacy_format_without_continuation_marker() -> None:
    schema, batches = dictionaries()
    stream = encode(schema, batches, use_legacy_format=True)
    assert stream.data[:4] != b"\xff\xff\xff\xff" and stream.data[-4:] == b"\x00\x00\x00\x00"
    one_byte = [stream.data[at : at + 1] for at in range(len(stream.data))]
    assert_batches_equal(decode(one_byte), batches)


def test_buffer_kinds_and_alignment() -> None:
    schema, batches = numeric()
    data = encode(schema, batches).data
    assert_batches_equal(decode([memoryview(data)]), batches)
    assert_batches_equal(decode([np.frombuffer(data, np.uint8).data]), batches)
    # A stream starting at an odd address must still give aligned buffers.
    shifted = memoryview(b"\x00" + data)[1:]
    for batch in decode([shifted]):
        for column in batch.columns:
            assert all(b is None or b.address % 8 == 0 for b in column.buffers())


def test_batches_share_read_only_pieces_but_copy_writable_ones() -> None:
    schema = pa.schema([("x", pa.int64())])
    original = pa.record_batch([np.arange(1000)], schema=schema)
    data = encode(schema, [original]).data
    (shared,) = decode([data])
    start = pa.py_buffer(data).address
    assert start <= shared.column(0).buffers()[1].address < start + len(data)
    writable = bytearray(data)
    decoder = StreamDecoder()
    (copied,) = decoder.feed(writable)
    writable[:] = bytes(len(writable))  # the caller may reuse its buffer
    assert copied.equals(original)


def test_async_producer() -> None:
    schema, batches = strings()
    data = encode(schema, batches, compression="zstd").data

    async def pieces() -> AsyncIterator[bytes]:
        for piece in random_pieces(data, 11, 40):
            await asyncio.sleep(0)
            yield piece

    async def consume() -> list[pa.RecordBatch]:
        decoder = StreamDecoder()
        got = [batch async for piece in pieces() for batch in decoder.feed(piece)]
        decoder.close()
        return got

    assert_batches_equal(asyncio.run(consume()), batches)


# --- errors -----------------------------------------------------------------------------------


def test_close_rejects_a_cut_inside_any_message(stream: Stream) -> None:
    boundaries = {0, *stream.message_ends, len(stream.data)}
    for cut in range(1, len(stream.data)):
        if cut in boundaries:
            continue
        decoder = StreamDecoder(require_eos=False)
        decoder.feed(stream.data[:cut])
        with pytest.raises(IpcStreamError, match="truncated inside the message"):
            decoder.close()


def test_close_on_nothing_fed() -> None:
    with pytest.raises(IpcStreamError, match="no schema"):
        StreamDecoder().close()


def test_missing_end_of_stream_marker(stream: Stream) -> None:
    for cut in stream.message_ends:
        strict = StreamDecoder()
        strict.feed(stream.data[:cut])
        with pytest.raises(IpcStreamError, match="without the end-of-stream marker"):
            strict.close()
        expected = [
            b for b, end in zip(stream.batches, stream.batch_ends, strict=True) if end <= cut
        ]
        assert_batches_equal(decode([stream.data[:cut]], require_eos=False), expected)


@pytest.mark.parametrize(
    "garbage",
    [
        b"this is not an arrow stream",
        b"\xff\xff\xff\xff\x00\x00\x00\x00",  # an end-of-stream marker but no schema
        b"\x00\x00\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\x7f",  # a 2 GiB metadata length
        b"\xff\xff\xff\xff\xf0\xff\xff\xff",  # a negative metadata length
        b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"\xee" * 16,  # metadata offsets out of bounds
        b"\xff\xff\xff\xff\x10\x00\x00\x00" + bytes(16),  # a zeroed flatbuffer
        b"PAR1" + bytes(60),
        b"ARROW1\x00\x00" + bytes(64),  # the IPC file format is not a stream
    ],
)
def test_garbage_is_a_clear_error(garbage: bytes) -> None:
    with pytest.raises(IpcStreamError):
        decode([garbage])


@pytest.mark.parametrize("seed", range(200))
def test_random_bytes_are_a_clear_error(seed: int) -> None:
    rng = random.Random(seed)
    garbage = rng.randbytes(rng.randint(1, 4096))
    with pytest.raises(IpcStreamError):
        decode(random_pieces(garbage, seed, 512))


@pytest.mark.parametrize("seed", range(100))
def test_corrupted_stream_never_crashes(seed: int) -> None:
    """Bit flips give wrong values or an IpcStreamError, never another exception or a hang."""
    schema, batches = nested()
    data = bytearray(encode(schema, batches, compression="lz4").data)
    rng = random.Random(seed)
    for _ in range(3):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    with contextlib.suppress(IpcStreamError):
        decode(random_pieces(bytes(data), seed, 64))


def test_pyarrow_errors_become_ipc_stream_errors() -> None:
    numbers = encode(*numeric())
    strings_stream = encode(*strings())
    # The schema of one stream followed by a batch of another: the batch does not fit it.
    start = strings_stream.schema_end
    mixed = numbers.data[: numbers.schema_end] + strings_stream.data[start:]
    decoder = StreamDecoder()
    with pytest.raises(IpcStreamError, match="invalid message at byte") as raised:
        decoder.feed(mixed)
    assert isinstance(raised.value.__cause__, pa.ArrowException)


def test_messages_out_of_order() -> None:
    stream = encode(*numeric())
    with pytest.raises(IpcStreamError, match="before the schema"):
        StreamDecoder().feed(stream.data[stream.schema_end :])
    with pytest.raises(IpcStreamError, match="second schema"):
        StreamDecoder().feed(stream.data[: stream.schema_end] + stream.data)


def test_bytes_after_end_of_stream_are_rejected() -> None:
    stream = encode(*numeric())
    with pytest.raises(IpcStreamError, match="after the end-of-stream marker"):
        StreamDecoder().feed(stream.data + b"\x00")
    decoder = StreamDecoder()
    decoder.feed(stream.data)
    assert decoder.feed(b"") == []
    with pytest.raises(IpcStreamError, match="after the end-of-stream marker"):
        decoder.feed(stream.data)


def test_errors_are_sticky() -> None:
    stream = encode(*numeric())
    decoder = StreamDecoder()
    with pytest.raises(IpcStreamError) as first:
        decoder.feed(b"garbage!" * 4)
    for call in (lambda: decoder.feed(stream.data), lambda: decoder.feed(b""), decoder.close):
        with pytest.raises(IpcStreamError) as again:
            call()
        assert again.value is first.value


def test_close_is_idempotent() -> None:
    stream = encode(*numeric())
    decoder = StreamDecoder()
    decoder.feed(stream.data)
    decoder.close()
    decoder.close()
    with pytest.raises(IpcStreamError, match="after close"):
        decoder.feed(b"")
    truncated = StreamDecoder()
    truncated.feed(stream.data[:-3])
    for _ in range(2):
        with pytest.raises(IpcStreamError, match="truncated"):
            truncated.close()
