"""Writes audit records, task and graph states to the store in batches, off the event loop.

Records are queued by the serving loop and written by one thread every ``FLUSH_SECONDS`` (or
sooner when ``BATCH`` are waiting), so a call costs no database write of its own. ``close``
writes what is left; a server killed with SIGKILL loses at most the last ``FLUSH_SECONDS`` of
records (a task it had reported RUNNING is then FAILED at the next start, see ``_tasks``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ._store import AuditRecord, GraphRecord, Store, TaskRecord

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
BATCH = 200
#: Records held for a retry while the store refuses writes; past this, new failures drop them.
MAX_HELD = 100_000

Record = TypeVar("Record")


class _Latest(Generic[Record]):
    """The latest state of each record (by id) not yet written, and how to write them.

    Used under the writer's lock, except ``write``, which runs in the writer's thread.
    """

    def __init__(
        self, what: str, key: Callable[[Record], str], save: Callable[[list[Record]], None]
    ) -> None:
        self.what = what
        self._key = key
        self._save = save
        self.queued: dict[str, Record] = {}
        #: Taken by the write in progress: still findable until it is done.
        self.writing: dict[str, Record] = {}

    def put(self, record: Record) -> int:
        self.queued[self._key(record)] = record
        return len(self.queued)

    def find(self, key: str) -> Record | None:
        return self.queued.get(key) or self.writing.get(key)

    def take(self) -> dict[str, Record]:
        self.writing, self.queued = self.queued, {}
        return self.writing

    def write(self, records: dict[str, Record]) -> dict[str, Record]:
        """Write ``records``; return those that failed (a failed batch is written record by
        record, so that one bad record cannot hold back the others)."""
        if not records:
            return {}
        try:
            self._save(list(records.values()))
            return {}
        except Exception:
            pass
        failed = {}
        for key, record in records.items():
            try:
                self._save([record])
            except Exception:
                log.exception("could not write the record of %s %s; will retry", self.what, key)
                failed[key] = record
        return failed

    def done(self, failed: dict[str, Record]) -> None:
        self.writing = {}
        if len(self.queued) < MAX_HELD:  # newer states of the same records win
            self.queued = failed | self.queued


class StoreWriter:
    """Batches AuditRecords, TaskRecords and GraphRecords into a store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[AuditRecord] = []
        self._tasks = _Latest[TaskRecord]("task", lambda r: r.task_id, store.save_tasks)
        self._graphs = _Latest[GraphRecord]("graph", lambda r: r.graph_id, store.save_graphs)
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tilefn-store-writer", daemon=True)
        self._thread.start()

    def add(self, record: AuditRecord) -> None:
        """Queue an audit record."""
        with self._lock:
            self._pending.append(record)
            full = len(self._pending) >= BATCH
        if full:
            self._wake.set()

    def save_task(self, record: TaskRecord) -> None:
        """Queue a task's new state (a later state of the same task replaces it). Other
        replicas asked for its stored result wait for the final state (``Tasks.settled``)."""
        with self._lock:
            full = self._tasks.put(record) >= BATCH
        if full:
            self._wake.set()

    def save_graph(self, record: GraphRecord) -> None:
        """Queue a graph's new state (a later state of the same graph replaces it)."""
        with self._lock:
            self._graphs.put(record)

    def pending_task(self, task_id: str) -> TaskRecord | None:
        """A state queued but not yet written."""
        with self._lock:
            return self._tasks.find(task_id)

    def pending_graph(self, graph_id: str) -> GraphRecord | None:
        """A state queued but not yet written."""
        with self._lock:
            return self._graphs.find(graph_id)

    def flush(self) -> None:
        """Write what is queued now (blocking)."""
        with self._flushing:  # one flush at a time, so that ``writing`` stays accurate
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            records, self._pending = self._pending, []
            tasks, graphs = self._tasks.take(), self._graphs.take()
        failed_tasks, failed_graphs = self._tasks.write(tasks), self._graphs.write(graphs)
        with self._lock:
            self._tasks.done(failed_tasks)
            self._graphs.done(failed_graphs)
        if records:
            try:
                self._store.add_audit(records)
            except Exception:
                log.exception("could not write %d audit records; will retry", len(records))
                with self._lock:
                    if len(self._pending) < MAX_HELD:
                        self._pending[:0] = records

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stop the writer and write what is left; idempotent."""
        self._closed = True
        self._wake.set()
        self._thread.join()
        self.flush()
