"""This server process among the replicas sharing a store: who it is, which others are alive,
and what callers asked it, through another replica, to stop.

A replica is one server process, named ``host:pid:start`` (``OWNER``); tasks and graphs record
the replica that runs them. Every ``BEAT_SECONDS`` each replica writes a heartbeat to the store
and reads the others'. A replica on this host is alive while its process runs (``/proc``); one
on another host while its heartbeat is younger than ``DEAD_AFTER`` (hosts' clocks must agree
to within a few seconds, as NTP keeps them). The housekeeping of the living fails the unfinished
tasks and graphs of the dead, so a killed pod never leaves them RUNNING.

Only the replica running a task or graph can stop it. CancelTask or CancelGraph reaching
another replica leaves a request in the store; the owner takes its requests with its next
heartbeat and cancels, so a cancel lands within about ``BEAT_SECONDS`` wherever it was sent.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Collection
from pathlib import Path

from ._store import Store

HOST = socket.gethostname()
#: Seconds between two heartbeats (and two looks for cancel requests) of a replica.
BEAT_SECONDS = 1.0
#: A replica on another host whose last heartbeat is older than this is dead.
DEAD_AFTER = 30.0
#: Heartbeats of dead replicas and cancel requests nobody took are deleted after this.
FORGET_AFTER = 86400.0


def _start_ticks(pid: int) -> str:
    """A process's start time (clock ticks since boot): with the pid, unique on this host."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2 :].split()[19]


#: This server process, as tasks and graphs record their owner.
OWNER = f"{HOST}:{os.getpid()}:{_start_ticks(os.getpid())}"


class Replicas:
    """Heartbeats, liveness and cancel requests of the replicas sharing ``store``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        #: Replicas whose heartbeat was fresh at this one's last beat; None before the first.
        self._seen: frozenset[str] | None = None

    def alive(self, owner: str) -> bool:
        """Whether the replica ``owner`` still runs (cheap: no store access)."""
        host, pid, start = owner.rsplit(":", 2)
        if host == HOST:
            return _start_ticks(int(pid)) == start
        return self._seen is None or owner in self._seen

    def beat(self, running: Collection[str]) -> list[str]:
        """Write this replica's heartbeat, learn which others are alive, and take the cancel
        requests for ``running`` (ids of the tasks and graphs it runs); blocking."""
        self._store.beat(OWNER, time.time())
        self.refresh()
        return self._store.take_cancel_requests(sorted(running))

    def refresh(self) -> None:
        """Read which replicas are alive now (before judging their tasks); blocking."""
        self._seen = frozenset(self._store.replicas_seen(time.time() - DEAD_AFTER))

    def request_cancel(self, target_id: str) -> None:
        """Ask the replica running the task or graph ``target_id`` to stop it; blocking."""
        self._store.request_cancel(target_id, time.time())

    def forget(self) -> None:
        """Delete old heartbeats and cancel requests nobody took; blocking."""
        self._store.forget_replicas(time.time() - FORGET_AFTER)
