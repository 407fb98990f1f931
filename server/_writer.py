"""Writes audit records and task states to the store in batches, off the event loop.

Records are queued by the serving loop and written by one thread every ``FLUSH_SECONDS`` (or
sooner when ``BATCH`` are waiting), so a call costs no database write of its own. ``close``
writes what is left; a server killed with SIGKILL loses at most the last ``FLUSH_SECONDS`` of
records (a task it had reported RUNNING is then FAILED at the next start, see ``_tasks``).
"""

from __future__ import annotations

import logging
import threading

from ._store import AuditRecord, Store, TaskRecord

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
BATCH = 200
#: Records held for a retry while the store refuses writes; past this, new failures drop them.
MAX_HELD = 100_000


class StoreWriter:
    """Batches AuditRecords and TaskRecords into a store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[AuditRecord] = []
        #: The latest state of each task not yet written (or being written), by id.
        self._tasks: dict[str, TaskRecord] = {}
        self._writing: dict[str, TaskRecord] = {}
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
        """Queue a task's new state (a later state of the same task replaces it)."""
        with self._lock:
            self._tasks[record.task_id] = record
            full = len(self._tasks) >= BATCH
        if full:
            self._wake.set()

    def pending_task(self, task_id: str) -> TaskRecord | None:
        """A state queued but not yet written."""
        with self._lock:
            return self._tasks.get(task_id) or self._writing.get(task_id)

    def flush(self) -> None:
        """Write what is queued now (blocking)."""
        with self._flushing:  # one flush at a time, so that ``_writing`` stays accurate
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            records, self._pending = self._pending, []
            tasks, self._tasks = self._tasks, {}
            self._writing = tasks
        if tasks:
            try:
                self._store.save_tasks(list(tasks.values()))
            except Exception:
                self._save_one_by_one(tasks)
        with self._lock:
            self._writing = {}
        if records:
            try:
                self._store.add_audit(records)
            except Exception:
                log.exception("could not write %d audit records; will retry", len(records))
                with self._lock:
                    if len(self._pending) < MAX_HELD:
                        self._pending[:0] = records

    def _save_one_by_one(self, tasks: dict[str, TaskRecord]) -> None:
        """A batch failed: write its records singly, so that one bad record cannot hold back
        the others; the ones that still fail are retried later (the store may be busy)."""
        failed = {}
        for task_id, record in tasks.items():
            try:
                self._store.save_tasks([record])
            except Exception:
                log.exception("could not write the record of task %s; will retry", task_id)
                failed[task_id] = record
        with self._lock:  # newer states of the same tasks win
            if len(self._tasks) < MAX_HELD:
                self._tasks = failed | self._tasks

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
