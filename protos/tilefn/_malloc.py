"""glibc malloc settings for processes that move many large messages (server and client).

By default glibc serves allocations above a dynamic threshold with fresh ``mmap`` pages and
returns freed memory at the top of the heap to the kernel. A 1 MiB result message then costs
256 page faults (and the kernel zeroing those pages) every time it is allocated: measured here,
reading the ``ipc`` field of a 1 MiB ExecuteUdfResponse took 620 us instead of 50 us, and a
1 GiB stream spent most of its client and server CPU time faulting pages in. Keeping up to
``TRIM_THRESHOLD`` bytes of freed heap and serving allocations below ``MMAP_THRESHOLD`` from it
removes that churn. Set ``TILEFN_DEFAULT_MALLOC=1`` to leave malloc alone.

The freed heap kept is per arena, and glibc gives threads up to 8 arenas per core: a server
whose array blocks were allocated by several threads (read-ahead, executor threads, the store's
writer) kept up to ``TRIM_THRESHOLD`` in each, and a 512 MiB read grew its peak RSS by 180-400
MiB instead of 2-35 MiB. ``ARENA_MAX`` arenas bring that back (measured: 2 arenas 2-34 MiB,
4 arenas 50-82 MiB).
"""

from __future__ import annotations

import ctypes
import functools
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: glibc's documented maximum on 64-bit (4 MiB * sizeof(long)); older versions refuse more.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
ARENA_MAX = 2


@functools.cache
def tune() -> None:
    """Apply the settings (once per process); a no-op off glibc or when opted out."""
    if os.environ.get("TILEFN_DEFAULT_MALLOC") == "1":
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    # A trim threshold alone would pin the mmap threshold at 128 KiB (it stops glibc adapting
    # it): every 1 MiB message would then be a fresh mapping. Both or neither.
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        mallopt(M_ARENA_MAX, ARENA_MAX)
