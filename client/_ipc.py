"""Push-based decoding of one Arrow IPC stream that arrives in pieces cut at arbitrary bytes.

pyarrow only reads IPC streams by pulling from a file object, which would block on a gRPC
stream; this module turns it around. Data flow::

    feed(piece)
      │  framing: message prefix + flatbuffer metadata are copied into a small bytearray and
      │  just enough of the metadata is parsed to learn the message kind and body length;
      │  the body is sliced out of the piece (zero-copy) or copied into one aligned buffer
      ▼
    _MessageQueue          a file object that only ever holds complete messages
      │  read(n): pyarrow asks for exactly prefix, length, metadata, body (it never reads
      │  ahead, so it can never block or hit a short read)
      ▼
    pa.ipc.RecordBatchStreamReader   one per stream: it keeps dictionaries (deltas and
      │  replacements) between batches and decompresses lz4/zstd bodies
      ▼
    feed() returns the record batches that this piece completed

Memory stays at about one message plus one piece: body bytes are copied into their final
buffer as they arrive, so pieces are never accumulated, and no buffer is ever re-joined.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

import pyarrow as pa

__all__ = ["IpcStreamError", "StreamDecoder"]

_CONTINUATION = b"\xff\xff\xff\xff"
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_I16 = struct.Struct("<h")
_U8 = struct.Struct("<B")
_I64 = struct.Struct("<q")

# Message.headerType values (format/Message.fbs); tensors never appear in a batch stream.
_SCHEMA, _DICTIONARY_BATCH, _RECORD_BATCH = 1, 2, 3
_KIND_NAMES = {
    0: "NONE",
    1: "Schema",
    2: "DictionaryBatch",
    3: "RecordBatch",
    4: "Tensor",
    5: "SparseTensor",
}
_METADATA_V4 = 3  # MetadataVersion.V4: the oldest version pyarrow can still read

# Field indexes in the flatbuffer Message table.
_FIELD_VERSION, _FIELD_HEADER_TYPE, _FIELD_BODY_LENGTH = 0, 1, 3

DEFAULT_MAX_METADATA_SIZE = 64 * 1024 * 1024


class IpcStreamError(ValueError):
    """The bytes are not a complete, valid Arrow IPC stream (corrupt, truncated or trailing)."""


class StreamDecoder:
    """Feed Arrow IPC stream bytes in arbitrary pieces; get each record batch once it is complete.

    Usable from sync and async code alike: ``feed`` never blocks and never starts threads.
    Once an error has been raised the decoder stays broken and raises it again. Batches may
    share memory with a fed ``bytes`` (or other read-only) piece instead of copying it;
    writable pieces (``bytearray``) are always copied, so the caller may reuse them.
    Not thread-safe.
    """

    def __init__(
        self, *, require_eos: bool = True, max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE
    ) -> None:
        """Create a decoder for one stream.

        Args:
            require_eos: make ``close()`` reject a stream that stops after a complete message
                without the end-of-stream marker. tilefn's server always writes the marker, so
                its absence means batches may have been lost; pass False to accept such
                streams the way ``pa.ipc.open_stream`` does.
            max_metadata_size: the largest flatbuffer metadata accepted, in bytes. Real
                metadata is far smaller; the limit turns garbage input into an immediate error
                instead of a wait for gigabytes that will never come.
        """
        self._require_eos = require_eos
        self._max_metadata_size = max_metadata_size
        self._queue = _MessageQueue()
        self._reader: Any = None
        self._schema: pa.Schema | None = None
        self._offset = 0  # stream bytes consumed so far, for error messages
        self._finished = False
        self._closed = False
        self._error: IpcStreamError | None = None
        self._reset_message()

    @property
    def schema(self) -> pa.Schema | None:
        """The stream's schema (with its metadata); None until the schema message is complete."""
        return self._schema

    @property
    def finished(self) -> bool:
        """True once the end-of-stream marker has been read."""
        return self._finished

    def feed(self, data: bytes | bytearray | memoryview) -> list[pa.RecordBatch]:
        """Consume the next piece of the stream; return the batches it completed, maybe none.

        Raises:
            IpcStreamError: the bytes are not a valid stream, continue after the end-of-stream
                marker, or the decoder was closed or broken by an earlier error.
        """
        if self._error is not None:
            raise self._error
        if self._closed:
            raise IpcStreamError("feed() called after close()")
        view = memoryview(data).cast("B")
        batches: list[pa.RecordBatch] = []
        try:
            while view:
                if self._finished:
                    raise IpcStreamError(
                        f"{len(view)} bytes after the end-of-stream marker at byte {self._offset}"
                    )
                if self._body is None:
                    view = self._fill_header(view, batches)
                else:
                    view = self._fill_body(view, batches)
        except IpcStreamError as error:
            self._error = error
            self._release()
            raise
        return batches

    def close(self) -> None:
        """Declare the end of input; raise IpcStreamError if the stream is incomplete.

        Idempotent: a second call returns or raises just like the first.
        """
        if self._error is not None:
            raise self._error
        if self._closed:
            return
        self._closed = True
        problem = None if self._finished else self._incompleteness()
        self._release()
        if problem is not None:
            self._error = IpcStreamError(problem)
            raise self._error

    def _incompleteness(self) -> str | None:
        """Why the input so far is not a whole stream, or None if it may end here."""
        if self._offset == 0:
            return "the stream is empty: no schema message"
        if self._head or self._body is not None:
            received = self._offset - self._message_start
            return (
                f"the stream is truncated inside the message starting at byte "
                f"{self._message_start} ({received} bytes of it received)"
            )
        if self._require_eos:
            return f"the stream ends after {self._offset} bytes without the end-of-stream marker"
        return None

    def _release(self) -> None:
        """Drop buffers and the reader; nothing more will be decoded."""
        self._queue.clear()
        self._reader = None
        self._reset_message()

    def _reset_message(self) -> None:
        """Get ready for the next message's prefix."""
        self._message_start = self._offset
        self._head = bytearray()  # prefix + metadata of the current message
        self._head_size = 4  # bytes of head needed before the next parsing step
        self._metadata_size = -1  # unknown until the length prefix is complete
        self._kind = 0
        self._body: memoryview | None = None  # preallocated body being filled
        self._filled = 0

    def _fill_header(self, view: memoryview, batches: list[pa.RecordBatch]) -> memoryview:
        """Move bytes into the head; parse it once a step's worth is there."""
        take = self._head_size - len(self._head)
        self._head += view[:take]
        self._offset += min(take, len(view))
        rest = view[take:]
        if len(self._head) < self._head_size:
            return rest
        if self._metadata_size < 0:
            self._on_length_prefix()
            return rest
        return self._on_metadata(rest, batches)

    def _on_length_prefix(self) -> None:
        """Read the metadata length, after the continuation marker or in the legacy form."""
        head = self._head
        if head == _CONTINUATION:
            self._head_size = 8
            return
        prefix = len(head)  # 4 in the pre-0.15 legacy form, 8 with the continuation marker
        (length,) = _I32.unpack_from(head, prefix - 4)
        if length == 0:
            if self._schema is None:
                raise IpcStreamError("invalid stream: end-of-stream marker before the schema")
            self._finished = True
            self._queue.clear()  # dictionaries with no batch after them change nothing
            return
        if not 0 < length <= self._max_metadata_size:
            raise IpcStreamError(
                f"not an Arrow IPC stream: message at byte {self._message_start} claims "
                f"{length} bytes of metadata (limit {self._max_metadata_size})"
            )
        self._metadata_size = length
        self._head_size = prefix + length

    def _on_metadata(self, rest: memoryview, batches: list[pa.RecordBatch]) -> memoryview:
        """Learn the message's kind and body size; take the body from this piece if it holds it."""
        metadata = bytes(self._head[-self._metadata_size :])
        self._kind, body_length = _parse_message(metadata, self._message_start)
        self._check_order()
        if body_length == 0:
            self._complete(None, batches)
            return rest
        if len(rest) >= body_length and rest.readonly and _aligned(rest):
            # The whole body is here in immutable, aligned memory: let the batch point at it.
            self._offset += body_length
            self._complete(rest[:body_length], batches)
            return rest[body_length:]
        self._body = _allocate(body_length, self._message_start)
        return rest

    def _fill_body(self, view: memoryview, batches: list[pa.RecordBatch]) -> memoryview:
        """Copy bytes into the preallocated body; hand the message on once it is full."""
        body = self._body
        assert body is not None
        take = min(len(view), len(body) - self._filled)
        body[self._filled : self._filled + take] = view[:take]
        self._filled += take
        self._offset += take
        if self._filled == len(body):
            self._complete(body, batches)
        return view[take:]

    def _check_order(self) -> None:
        """A stream is one schema message, then dictionary and record batches."""
        name = _KIND_NAMES.get(self._kind, str(self._kind))
        if self._kind not in (_SCHEMA, _DICTIONARY_BATCH, _RECORD_BATCH):
            raise IpcStreamError(f"unexpected {name} message at byte {self._message_start}")
        if (self._kind == _SCHEMA) != (self._reader is None):
            where = "a second schema" if self._kind == _SCHEMA else f"a {name} before the schema"
            raise IpcStreamError(f"invalid stream: {where} message at byte {self._message_start}")

    def _complete(self, body: memoryview | None, batches: list[pa.RecordBatch]) -> None:
        """Queue a complete message for pyarrow and decode it if it is a schema or a batch."""
        self._queue.push(memoryview(bytes(self._head)))
        if body is not None:
            self._queue.push(body)
        kind, start = self._kind, self._message_start
        self._reset_message()
        # A dictionary batch waits in the queue: pyarrow applies it when reading the next batch.
        try:
            if kind == _SCHEMA:
                self._reader = pa.ipc.open_stream(self._queue)
                self._schema = self._reader.schema
            elif kind == _RECORD_BATCH:
                batch = self._reader.read_next_batch()
                batch.validate()
                batches.append(batch)
        # pyarrow raises its IOError status (corrupt metadata, bad compression) as plain OSError.
        except (pa.ArrowException, OSError, StopIteration) as error:
            raise IpcStreamError(f"invalid message at byte {start}: {error}") from error


class _MessageQueue:
    """The read-only file object pyarrow's stream reader pulls complete messages from.

    pyarrow reads exactly the 4-byte prefix pieces, the metadata, then the body, never more
    (verified with pyarrow 26), so each read is normally a slice of one queued segment and
    bodies reach pyarrow without a copy. A read past the queued bytes returns what there is
    instead of blocking: pyarrow then reports a clean error.
    """

    closed = False  # pyarrow checks this before wrapping the object

    def __init__(self) -> None:
        self._segments: deque[memoryview] = deque()

    def push(self, segment: memoryview) -> None:
        """Append the bytes of part of a complete message."""
        self._segments.append(segment)

    def clear(self) -> None:
        """Drop everything queued."""
        self._segments.clear()

    def read(self, size: int = -1) -> memoryview | bytes:
        """Return the next ``size`` bytes (all if negative), fewer only when the queue runs dry."""
        segments = self._segments
        if segments and 0 <= size <= len(segments[0]):
            head = segments.popleft()
            if size < len(head):
                segments.appendleft(head[size:])
            return head[:size]
        parts: list[memoryview] = []
        wanted = size if size >= 0 else sum(map(len, segments))
        while segments and wanted > 0:
            head = segments.popleft()
            if len(head) > wanted:
                segments.appendleft(head[wanted:])
                head = head[:wanted]
            parts.append(head)
            wanted -= len(head)
        return b"".join(parts)


def _parse_message(metadata: bytes, start: int) -> tuple[int, int]:
    """Return (headerType, bodyLength) of a flatbuffer ``Message``, bounds-checking every offset.

    Only these fields (and the version) are needed to frame the stream; pyarrow parses and
    verifies the full metadata afterwards.
    """
    table = _read(_U32, metadata, 0, start)
    vtable = table - _read(_I32, metadata, table, start)
    vtable_size = _read(_U16, metadata, vtable, start)
    table_size = _read(_U16, metadata, vtable + 2, start)
    if vtable_size < 4 or vtable + vtable_size > len(metadata) or table_size < 4:
        raise IpcStreamError(f"not an Arrow IPC stream: corrupt metadata at byte {start}")

    def field(index: int, kind: struct.Struct) -> int:
        slot = 4 + 2 * index
        offset = _read(_U16, metadata, vtable + slot, start) if slot < vtable_size else 0
        if offset == 0:
            return 0  # absent: the flatbuffer default
        if offset + kind.size > table_size:
            raise IpcStreamError(f"not an Arrow IPC stream: corrupt metadata at byte {start}")
        return _read(kind, metadata, table + offset, start)

    version = field(_FIELD_VERSION, _I16)
    if version < _METADATA_V4:
        raise IpcStreamError(
            f"unsupported Arrow metadata version V{version + 1} at byte {start} (need V4 or later)"
        )
    body_length = field(_FIELD_BODY_LENGTH, _I64)
    if body_length < 0:
        raise IpcStreamError(f"not an Arrow IPC stream: negative body length at byte {start}")
    return field(_FIELD_HEADER_TYPE, _U8), body_length


def _read(kind: struct.Struct, data: bytes, offset: int, start: int) -> int:
    """Unpack one integer, turning an out-of-bounds offset into an IpcStreamError."""
    if not 0 <= offset <= len(data) - kind.size:
        raise IpcStreamError(f"not an Arrow IPC stream: corrupt metadata at byte {start}")
    value: int = kind.unpack_from(data, offset)[0]
    return value


def _aligned(view: memoryview) -> bool:
    """Whether the bytes start on the 8-byte boundary Arrow buffers need."""
    address: int = pa.py_buffer(view).address
    return address % 8 == 0


def _allocate(size: int, start: int) -> memoryview:
    """A writable, 64-byte-aligned buffer for one message body."""
    try:
        return memoryview(pa.allocate_buffer(size)).cast("B")
    except MemoryError as error:
        raise IpcStreamError(
            f"cannot allocate {size} bytes for the body of the message at byte {start}"
        ) from error
