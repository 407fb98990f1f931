"""CPU time of a whole process tree from /proc: a server with its template and workers, or a
Ray driver with the Ray processes it started.

A process's own CPU (utime + stime) counts while it lives; once it exits and is reaped, its
CPU moves into its parent's cutime + cstime. Summing both over every process of the tree
therefore keeps counting a worker that exited between two readings, so the difference of two
readings is the tree's CPU in between (only a process that exits unreaped is missed).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Fields after the command name in /proc/<pid>/stat, counted from the state (field 3).
_PPID, _UTIME, _CSTIME = 1, 11, 14


def _stats() -> dict[int, tuple[int, float]]:
    """Every visible process: pid -> (parent pid, own plus reaped children's CPU seconds)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        fields = text.rsplit(")", 1)[1].split()
        cpu = sum(int(f) for f in fields[_UTIME : _CSTIME + 1]) / ticks
        found[int(entry.name)] = (int(fields[_PPID]), cpu)
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and its descendants (see the module docstring)."""
    stats = _stats()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats[pid][1] if pid in stats else 0.0
        todo += children.get(pid, [])
    return total
