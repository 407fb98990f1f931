"""The replicas' heartbeats and cancel requests in the SQL stores (a mixin of
``_sql.SqlStore``); see ``_replicas``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from ._sql_schema import Connection, upsert

BEAT = upsert("replicas", ("owner", "seen_at"), "owner")
REQUEST = upsert("cancel_requests", ("target_id", "requested_at"), "target_id")


class ReplicaTables:
    """Heartbeats and cancel requests; needs ``_db`` and ``_write``."""

    _db: Callable[[], Connection]
    _write: Callable[[], AbstractContextManager[Connection]]

    def beat(self, owner: str, now: float) -> None:
        with self._write() as db:
            db.execute(BEAT, (owner, now))

    def replicas_seen(self, since: float) -> list[str]:
        rows = self._db().execute("SELECT owner FROM replicas WHERE seen_at >= ?", (since,))
        return [row[0] for row in rows]

    def request_cancel(self, target_id: str, requested_at: float) -> None:
        with self._write() as db:
            db.execute(REQUEST, (target_id, requested_at))

    def take_cancel_requests(self, target_ids: Sequence[str]) -> list[str]:
        if not target_ids:
            return []
        marks = ",".join("?" * len(target_ids))
        found = self._db().execute(
            f"SELECT target_id FROM cancel_requests WHERE target_id IN ({marks})", target_ids
        )
        taken = [row[0] for row in found]
        if taken:
            with self._write() as db:
                marks = ",".join("?" * len(taken))
                db.execute(f"DELETE FROM cancel_requests WHERE target_id IN ({marks})", taken)
        return taken

    def forget_replicas(self, before: float) -> None:
        with self._write() as db:
            db.execute("DELETE FROM replicas WHERE seen_at < ?", (before,))
            db.execute("DELETE FROM cancel_requests WHERE requested_at < ?", (before,))
