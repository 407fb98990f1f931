"""The codec's exceptions.

    ValueError
    └── CodecError                 a value or stream has no (valid) Arrow mapping
        ├── UnsupportedTypeError   the value's type, element type or shape has no mapping
        └── SchemaMismatchError    a stream item encodes to a different schema than the first

All are ``ValueError`` so callers that treat bad input generically keep working; the worker maps
every ``CodecError`` raised while encoding a result to ``RESULT_TYPE_UNSUPPORTED``.
"""

from __future__ import annotations


class CodecError(ValueError):
    """A value cannot be encoded to Arrow, or Arrow data cannot be decoded to a value."""


class UnsupportedTypeError(CodecError):
    """The value (or an element, member or stream item of it) has no Arrow mapping.

    The message names the offending type and what is supported instead.
    """


class SchemaMismatchError(CodecError):
    """An item of a streamed result encodes to another schema than the stream's first item.

    The message names the item's index and describes both schemas.
    """


def type_name(value: object) -> str:
    """The name of a value's type for messages: ``set``, ``numpy.ndarray``, ``mymod.Point``."""
    cls = type(value)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
