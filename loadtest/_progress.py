"""The live progress line on stderr: redrawn in place on a terminal, a line every few seconds
otherwise (so logs of ``make loadtest`` stay readable)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import TextIO

from ._runner import LiveCounters
from ._stats import percentile

TTY_INTERVAL = 0.5
LOG_INTERVAL = 5.0


class Progress:
    """``async with Progress(live, "run 50/s"):`` shows ``live`` until the block ends."""

    def __init__(self, live: LiveCounters, label: str, stream: TextIO | None = None) -> None:
        self._live, self._label = live, label
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def line(self) -> str:
        """The current state in one line."""
        live = self._live
        p99 = percentile(sorted(live.recent), 0.99) * 1000 if live.recent else 0.0
        return (
            f"[{self._label}] {time.monotonic() - self._started:5.1f}s  sent {live.sent}"
            f"  done {live.done}  in-flight {live.in_flight}  errors {live.errors}"
            f"  p99 {p99:.1f} ms"
        )

    def _show(self, final: bool = False) -> None:
        if self._tty:
            end = "\n" if final else ""
            self._stream.write(f"\r\x1b[K{self.line()}{end}")
        else:
            self._stream.write(self.line() + "\n")
        self._stream.flush()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(TTY_INTERVAL if self._tty else LOG_INTERVAL)
            self._show()

    async def __aenter__(self) -> Progress:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._refresh())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._show(final=True)
