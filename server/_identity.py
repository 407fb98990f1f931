"""The identity and bookkeeping side of the server in one bundle: store, authenticator,
registry, tasks, and the writer that records executions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tilefn.sandbox import TaskLogs, TaskSummary

from ._auth import Authenticator, Principal
from ._registry import Registry
from ._replicas import Replicas
from ._results import ResultSink, StoredTotals
from ._status import R, ServiceError, to_service_error
from ._store import AuditRecord, Store
from ._tasks import Tasks, TaskSettings
from ._writer import StoreWriter


@dataclass
class Call:
    """One execution as it is recorded: who ran what, on which arrays, and how it went."""

    task_id: str
    method: str
    principal: Principal
    #: "namespace/name@N" for a registered UDF, else "sha256:<hex>" of the code (once planned).
    udf: str = ""
    arrays: list[str] = field(default_factory=list)
    #: Whether a task record exists (the request was valid).
    tracked: bool = False
    #: Where the result is being stored, when it is.
    sink: ResultSink | None = None
    summary: TaskSummary | None = None
    logs: TaskLogs | None = None
    #: Set when a block hands the execution on (SubmitUdf's background run records it).
    handed_off: bool = False
    #: Called once a worker starts running it (a graph's node events).
    on_started: Callable[[], None] | None = None


@dataclass
class Identity:
    """What every servicer needs to know who calls, what they may do, and what ran."""

    store: Store
    auth: Authenticator
    registry: Registry
    writer: StoreWriter
    tasks: Tasks
    #: Stored bytes per namespace, for the result quota.
    totals: StoredTotals = field(init=False)

    def __post_init__(self) -> None:
        self.totals = StoredTotals(self.store)

    @classmethod
    def open(cls, store: Store, settings: TaskSettings, *, authenticate: bool) -> Identity:
        """Everything around an open store."""
        writer = StoreWriter(store)
        return cls(
            store,
            Authenticator(store, enabled=authenticate),
            Registry(store),
            writer,
            Tasks(store, writer, settings, Replicas(store)),
        )

    def close(self) -> None:
        self.writer.close()
        self.store.close()

    @contextmanager
    def recorded(self, call: Call) -> Iterator[None]:
        """Audit the execution inside the block and give its task a final state, however the
        block ends."""
        started, clock = time.time(), time.monotonic()
        error: ServiceError | None = None
        cancelled = False
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):
            cancelled = True
            raise
        except BaseException as exc:
            error = exc if isinstance(exc, ServiceError) else to_service_error(exc)
            raise
        finally:
            if not (call.handed_off and error is None and not cancelled):
                self._record(call, started, time.monotonic() - clock, error, cancelled)

    def _record(
        self,
        call: Call,
        started: float,
        duration: float,
        error: ServiceError | None,
        cancelled: bool,
    ) -> None:
        outcome = "CANCELLED" if cancelled else error.code.name if error else "OK"
        reason = R.Name(error.reason) if error else ""
        record = AuditRecord(
            task_id=call.task_id,
            namespace=call.principal.namespace,
            token_id=call.principal.token_id,
            method=call.method,
            udf=call.udf,
            arrays=tuple(call.arrays),
            started_at=started,
            duration=duration,
            outcome=outcome,
            reason=reason,
        )
        self.writer.add(record)
        if call.tracked:
            self._finish(call, error, cancelled)

    def _finish(self, call: Call, error: ServiceError | None, cancelled: bool) -> None:
        stored = ""
        if call.sink is not None and error is None and not cancelled:
            stored = call.sink.commit()
            self.totals.add(call.principal.namespace, call.sink.bytes)
        elif call.sink is not None:
            call.sink.discard()
        summary, logs = call.summary, call.logs
        changes: dict[str, object] = {
            "arrays": tuple(call.arrays),
            "result_path": stored,
            "logs": logs.text if logs else "",
            "logs_total": logs.total_bytes if logs else 0,
            "logs_truncated": logs.truncated if logs else False,
        }
        if summary is not None:
            changes |= {
                "cpu_seconds": summary.cpu_seconds,
                "peak_memory_bytes": summary.peak_memory_bytes,
                # What the server stored, when it did: the quota counts bytes on disk.
                "result_bytes": call.sink.bytes if call.sink is not None else summary.ipc_bytes,
                "rows": summary.rows,
            }
        if cancelled:
            status, changes["error_reason"] = "CANCELLED", R.Name(R.ERROR_REASON_TASK_CANCELLED)
        elif error is not None:
            status = "FAILED"
            changes |= {"error_reason": R.Name(error.reason), "error_message": error.message}
        else:
            status = "SUCCEEDED"
        self.tasks.finish(call.task_id, status, **changes)  # type: ignore[arg-type]
