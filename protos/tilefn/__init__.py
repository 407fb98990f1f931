"""tilefn: sandboxed UDF execution next to TileDB arrays, over gRPC, streaming Arrow IPC.

Subpackages: ``tilefn.v1`` (generated protocol code), ``tilefn.codec`` (Python values <-> Arrow),
``tilefn.sandbox`` (worker processes), ``tilefn.server`` and ``tilefn.client``.
"""

__version__ = "0.1.0"
