"""Seconds (as the server keeps them) to protobuf Timestamp and Duration messages."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp of seconds since the epoch; None (field unset) for None."""
    if seconds is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def timestamp_us(microseconds: int) -> timestamp_pb2.Timestamp:
    """A Timestamp of whole microseconds since the epoch, exactly."""
    return timestamp_pb2.Timestamp(
        seconds=microseconds // 1_000_000, nanos=microseconds % 1_000_000 * 1000
    )


def duration(seconds: float) -> duration_pb2.Duration:
    """A Duration of ``seconds``."""
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value
