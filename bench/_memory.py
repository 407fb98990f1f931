"""Resident memory of a process from /proc: current RSS, peak RSS, and resetting the peak.

Writing "5" to /proc/<pid>/clear_refs resets VmHWM (the peak) to the current VmRSS (Linux
4.0+; needs ptrace access, which root and the process itself have), so one long-lived server
yields a separate peak per repetition.
"""

from __future__ import annotations

import threading
from pathlib import Path

MIB = 1 << 20


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"{field} missing from /proc/{pid}/status")


def rss_bytes(pid: int) -> int:
    """The process's resident set size now."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_bytes(pid: int) -> int:
    """The process's peak resident set size since it started or since ``reset_peak``."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak(pid: int) -> None:
    """Make the peak equal the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class PeakWatch:
    """Peak RSS growth of a process over a stretch: ``start()``, run, ``growth_mib()``.

    The kernel updates VmHWM lazily (when memory is unmapped, not when it is released with
    madvise, as jemalloc and mimalloc do), so a thread also samples VmRSS every
    ``SAMPLE_SECONDS``; the peak is the larger of the two.
    """

    SAMPLE_SECONDS = 0.01

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._before = 0
        self._sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        reset_peak(self.pid)
        self._before = self._sampled = rss_bytes(self.pid)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.SAMPLE_SECONDS):
            self._sampled = max(self._sampled, rss_bytes(self.pid))

    def growth_mib(self) -> float:
        """Stop sampling; the peak minus the RSS at ``start()``, in MiB."""
        self._stop.set()
        self._thread.join()
        return (max(peak_bytes(self.pid), self._sampled) - self._before) / MIB
