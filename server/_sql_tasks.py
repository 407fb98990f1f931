"""The task and audit tables of the SQL stores (a mixin of ``_sql.SqlStore``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import astuple
from typing import Any

from ._sql_schema import Connection, listing_filters, upsert
from ._store import AuditRecord, TaskQuery, TaskRecord


class TaskTables:
    """Tasks, stored-result bookkeeping and the audit log; needs ``_db`` and ``_write``."""

    _db: Callable[[], Connection]
    _write: Callable[[], AbstractContextManager[Connection]]

    # audit

    def add_audit(self, records: Sequence[AuditRecord]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO audit (task_id, namespace, token_id, method, udf, arrays, "
                "started_at, duration, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.task_id,
                        r.namespace,
                        r.token_id,
                        r.method,
                        r.udf,
                        json.dumps(r.arrays),
                        r.started_at,
                        r.duration,
                        r.outcome,
                        r.reason,
                    )
                    for r in records
                ],
            )

    # tasks and stored results

    def save_tasks(self, records: Sequence[TaskRecord]) -> None:
        with self._write() as db:
            db.executemany(SAVE_TASK, [_task_row(r) for r in records])

    def task(self, task_id: str) -> TaskRecord | None:
        row = (
            self._db()
            .execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,))
            .fetchone()
        )
        return _task(row) if row else None

    def tasks(self, query: TaskQuery) -> list[TaskRecord]:
        where, values = ["created_at >= ?"], [query.created_after]  # type: tuple[list[str], list[Any]]
        listing_filters(query, "task_id", where, values)
        if query.udf:
            # the UDF itself, or any version of it ("ns/name" matches "ns/name@3"), with case
            # (LIKE ignores it on SQLite and not on PostgreSQL)
            where.append("(udf = ? OR substr(udf, 1, ?) = ?)")
            values += [query.udf, len(query.udf) + 1, f"{query.udf}@"]
        rows = self._db().execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, task_id DESC LIMIT ?",
            (*values, query.limit),
        )
        return [_task(row) for row in rows]

    def unfinished_tasks(self) -> list[TaskRecord]:
        rows = self._db().execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE status IN ('QUEUED', 'RUNNING')"
        )
        return [_task(row) for row in rows]

    def expired_results(self, now: float) -> list[TaskRecord]:
        rows = self._db().execute(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE result_path != '' AND result_expires_at <= ?",
            (now,),
        )
        return [_task(row) for row in rows]

    def stored_bytes(self, namespace: str) -> int:
        (total,) = (
            self._db()
            .execute(
                "SELECT coalesce(sum(result_bytes), 0) FROM tasks "
                "WHERE namespace = ? AND result_path != ''",
                (namespace,),
            )
            .fetchone()
        )
        return int(total)

    def stored_bytes_by_namespace(self) -> dict[str, int]:
        rows = self._db().execute(
            "SELECT namespace, sum(result_bytes) FROM tasks WHERE result_path != '' "
            "GROUP BY namespace"
        )
        return {namespace: int(total) for namespace, total in rows}

    def forget_tasks(self, ended_before: float) -> int:
        with self._write() as db:
            done = db.execute(
                "DELETE FROM tasks WHERE finished_at < ? AND result_path = '' "
                "AND status IN ('SUCCEEDED', 'FAILED', 'CANCELLED')",
                (ended_before,),
            )
        return int(done.rowcount)

    def audit(self, namespace: str, limit: int) -> list[AuditRecord]:
        rows = self._db().execute(
            "SELECT task_id, namespace, token_id, method, udf, arrays, started_at, duration, "
            "outcome, reason FROM audit WHERE ? IN ('', namespace) ORDER BY id DESC LIMIT ?",
            (namespace, limit),
        )
        return [
            AuditRecord(*row[:5], tuple(json.loads(row[5])), *row[6:])  # type: ignore[call-arg]
            for row in rows
        ]


TASK_FIELDS = tuple(f.name for f in dataclasses.fields(TaskRecord))
TASK_COLUMNS = ", ".join(TASK_FIELDS)
SAVE_TASK = upsert("tasks", TASK_FIELDS, "task_id")


def _task_row(record: TaskRecord) -> tuple[Any, ...]:
    """Tuples as JSON; flags as 0 or 1 (the column is an integer in every engine)."""
    return tuple(
        json.dumps(v) if isinstance(v, tuple) else int(v) if isinstance(v, bool) else v
        for v in astuple(record)
    )


def _task(row: Any) -> TaskRecord:
    values = dict(zip(TASK_FIELDS, row, strict=True))
    values["arrays"] = tuple(json.loads(values["arrays"]))
    values["logs_truncated"] = bool(values["logs_truncated"])
    return TaskRecord(**values)
