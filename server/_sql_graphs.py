"""The graphs table of the SQL stores (a mixin of ``_sql.SqlStore``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import astuple
from typing import Any

from ._sql_schema import Connection, listing_filters, upsert
from ._store import GraphQuery, GraphRecord

GRAPH_FIELDS = tuple(f.name for f in dataclasses.fields(GraphRecord))
GRAPH_COLUMNS = ", ".join(GRAPH_FIELDS)
SAVE_GRAPH = upsert("graphs", GRAPH_FIELDS, "graph_id")
#: Listings leave out what only GetGraph shows (the spec: NULL, read as empty).
LISTED_COLUMNS = GRAPH_COLUMNS.replace("spec", "NULL").replace("nodes", "'[]'")


class GraphTables:
    """Graphs and their node states; needs ``_db`` and ``_write``."""

    _db: Callable[[], Connection]
    _write: Callable[[], AbstractContextManager[Connection]]

    def save_graphs(self, records: Sequence[GraphRecord]) -> None:
        with self._write() as db:
            db.executemany(SAVE_GRAPH, [astuple(r) for r in records])

    def graph(self, graph_id: str) -> GraphRecord | None:
        row = (
            self._db()
            .execute(f"SELECT {GRAPH_COLUMNS} FROM graphs WHERE graph_id = ?", (graph_id,))
            .fetchone()
        )
        return _graph(row) if row else None

    def graphs(self, query: GraphQuery) -> list[GraphRecord]:
        where, values = ["TRUE"], []  # type: tuple[list[str], list[Any]]
        listing_filters(query, "graph_id", where, values)
        rows = self._db().execute(
            f"SELECT {LISTED_COLUMNS} FROM graphs WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, graph_id DESC LIMIT ?",
            (*values, query.limit),
        )
        return [_graph(row) for row in rows]

    def unfinished_graphs(self) -> list[GraphRecord]:
        rows = self._db().execute(f"SELECT {GRAPH_COLUMNS} FROM graphs WHERE status = 'RUNNING'")
        return [_graph(row) for row in rows]

    def forget_graphs(self, ended_before: float) -> int:
        with self._write() as db:
            done = db.execute(
                "DELETE FROM graphs WHERE finished_at < ? AND status != 'RUNNING'",
                (ended_before,),
            )
        return int(done.rowcount)


def _graph(row: Any) -> GraphRecord:
    values = dict(zip(GRAPH_FIELDS, row, strict=True))
    values["spec"] = bytes(values["spec"] or b"")
    return GraphRecord(**values)
