"""The audit log: one record per execution, written to the store in batches off the event loop.

Records are queued by the serving loop and written by one thread every ``FLUSH_SECONDS`` (or
sooner when ``BATCH`` are waiting), so auditing costs a call no database write. ``close`` writes
what is left; a server killed with SIGKILL loses at most the last ``FLUSH_SECONDS`` of records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading

from ._store import AuditRecord, Store

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
BATCH = 200


class AuditLog:
    """Batches AuditRecords into a store; ``store=None`` keeps nothing (authentication off and
    no store configured)."""

    def __init__(self, store: Store | None) -> None:
        self._store = store
        self._pending: list[tuple[AuditRecord, bytes]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if store is not None:
            self._thread = threading.Thread(target=self._run, name="tilefn-audit", daemon=True)
            self._thread.start()

    def add(self, record: AuditRecord, code: bytes = b"") -> None:
        """Queue a record; an empty ``record.udf`` becomes the SHA-256 of ``code`` (hashed by
        the writer thread, not the caller)."""
        if self._store is None:
            return
        with self._lock:
            self._pending.append((record, code))
            full = len(self._pending) >= BATCH
        if full:
            self._wake.set()

    def flush(self) -> None:
        """Write what is queued now (blocking)."""
        with self._lock:
            pending, self._pending = self._pending, []
        records = [
            r if r.udf else dataclasses.replace(r, udf=f"sha256:{hashlib.sha256(code).hexdigest()}")
            for r, code in pending
        ]
        if records and self._store is not None:
            try:
                self._store.add_audit(records)
            except Exception:
                log.exception("could not write %d audit records", len(records))

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stop the writer and write what is left; idempotent."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()
