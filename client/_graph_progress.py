"""A one-line live progress bar for a running graph: how many nodes ended, the count in each
state, the elapsed time; redrawn in place (at most ten times a second) on a terminal."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from ._graph_state import NODE_ENDED

#: The order states are listed in, and their short names.
SHOWN = {
    "SUCCEEDED": "succeeded",
    "RUNNING": "running",
    "QUEUED": "queued",
    "WAITING": "waiting",
    "FAILED": "failed",
    "PARENT_FAILED": "parent failed",
    "CANCELLED": "cancelled",
}
BAR_WIDTH = 20
REDRAW_SECONDS = 0.1


def wanted(progress: bool | None, stream: TextIO | None = None) -> bool:
    """``progress=None`` means: only when the stream (stderr) is a terminal."""
    if progress is not None:
        return progress
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


def line(label: str, counts: Mapping[str, int], elapsed: float) -> str:
    """``graph etl [#######-------------] 7/20 0:12 | 6 succeeded, 2 running, 1 failed``
    (the elapsed time before the states, which a narrow terminal cuts off first)."""
    total = sum(counts.values())
    ended = sum(n for state, n in counts.items() if state in NODE_ENDED)
    filled = BAR_WIDTH * ended // total if total else 0
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    states = ", ".join(f"{counts[s]} {name}" for s, name in SHOWN.items() if counts.get(s))
    minutes, seconds = divmod(int(elapsed), 60)
    return f"{label} [{bar}] {ended}/{total} {minutes}:{seconds:02d} | {states or 'starting'}"


class Progress:
    """Draws ``line`` on ``stream``; ``update`` as events arrive, ``close`` at the end."""

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        columns: int | None = None,
    ) -> None:
        self._label = label
        self._stream = sys.stderr if stream is None else stream
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None
        self._columns = columns or shutil.get_terminal_size().columns
        self._last = ""

    def update(self, counts: Mapping[str, int], *, force: bool = False) -> None:
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < REDRAW_SECONDS:
            return
        text = line(self._label, counts, now - self._started)[: self._columns - 1]
        if text != self._last:
            self._stream.write("\r" + text + " " * max(len(self._last) - len(text), 0))
            self._stream.flush()
            self._last = text
        self._drawn_at = now

    def close(self, counts: Mapping[str, int]) -> None:
        """Draw the final state and end the line."""
        self.update(counts, force=True)
        self._stream.write("\n")
        self._stream.flush()
