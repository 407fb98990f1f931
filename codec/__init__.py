"""Python values <-> Arrow: how tilefn results and Arrow arguments travel.

    encoded = encode(value)              # schema + lazily produced record batches
    value = decode(schema, batches)      # the natural value back: same dtype and shape
    data = to_ipc(value)                 # a whole Arrow IPC stream (arguments)
    value = from_ipc(data)

The mapping is plain Arrow described by schema and field metadata (``tilefn.kind``,
``tilefn.dtype``, ...), so clients in other languages can read results without tilefn; see
docs/results.md. Imports only numpy and pyarrow (pandas only when a value comes from pandas);
nothing is ever pickled.
"""

from ._decode import decode
from ._encode import Encoded, encode
from ._errors import CodecError, SchemaMismatchError, UnsupportedTypeError
from ._ipc import from_ipc, to_ipc

__all__ = [
    "CodecError",
    "Encoded",
    "SchemaMismatchError",
    "UnsupportedTypeError",
    "decode",
    "encode",
    "from_ipc",
    "to_ipc",
]
