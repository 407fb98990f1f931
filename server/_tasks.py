"""Tasks: every execution's record, its stored result, and what happens to both over time.

A task is created QUEUED once its request is valid, turns RUNNING when a worker takes it, and
ends SUCCEEDED, FAILED or CANCELLED. States are kept in memory while the task lives and written
to the store in batches (``_writer``). Stored results are Arrow IPC streams kept in a
``ResultStorage`` (a folder or an object store, ``_result_storage``) under
``<namespace>/<task_id>.arrows``, written as the result streams, kept until their time-to-live
ends, counted against a per-namespace quota.

Nothing is lost or left hanging: each task records the server process that owns it; at start a
server (and then every ``SWEEP_SECONDS``, so a replica's siblings notice it was killed) marks
FAILED (``ERROR_REASON_SERVER_RESTARTED``) every unfinished task whose owner is gone (its process
on this host, its heartbeat on another: ``_replicas``), so a crash never leaves a task RUNNING
forever.

Replicas share the store: a submitted task is written before its id is given out, and a
replica asked for the result of a task another replica ran waits for that replica's final
record (``settled``: the writer sends it within ``FLUSH_SECONDS``) instead of saying it has
not finished.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tilefn.sandbox import LogPart

from ._auth import Principal
from ._replicas import OWNER, Replicas
from ._result_storage import ResultStorage, result_key
from ._status import R, ServiceError
from ._store import FINAL_STATES, Store, TaskQuery, TaskRecord, TaskStatus
from ._writer import FLUSH_SECONDS, StoreWriter

log = logging.getLogger(__name__)
#: How long a replica waits for another's final record of a task whose result is asked for.
SETTLE_SECONDS = 2 * FLUSH_SECONDS + 1.0


@dataclass(frozen=True)
class TaskSettings:
    """Where results are kept, how long, and how much a namespace may keep."""

    storage: ResultStorage
    default_ttl: float = 86400.0
    max_ttl: float = 30 * 86400.0
    quota_bytes: int = 10 << 30
    #: How long the record of a task without a stored result is kept after it ended.
    retention: float = 7 * 86400.0


#: Output of a running task kept for followers of its logs (the final logs keep the task's own
#: max_log_bytes tail).
LIVE_LOG_BYTES = 1 << 20


@dataclass
class LiveTask:
    """A task this process is running: its latest record, how to stop it, its output so far."""

    record: TaskRecord
    runner: asyncio.Task[Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: The last bytes printed so far, ending at byte ``log_total`` of all the task printed.
    log: bytearray = field(default_factory=bytearray)
    log_total: int = 0
    #: Set (and replaced) whenever output arrives or the task ends: wakes every follower.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Tasks:
    """Creates, updates, finds, lists and cancels tasks; keeps stored results tidy."""

    def __init__(
        self, store: Store, writer: StoreWriter, settings: TaskSettings, replicas: Replicas
    ) -> None:
        self._store = store
        self.replicas = replicas
        self._writer = writer
        self.settings = settings
        self._live: dict[str, LiveTask] = {}
        #: Called with a namespace whose stored results changed (metrics).
        self.on_stored: Callable[[str], None] | None = None

    # lifecycle

    def new_record(
        self, task_id: str, principal: Principal, method: str, udf: str, ttl: float
    ) -> TaskRecord:
        """A QUEUED task's record; ``ttl`` > 0 means its result will be stored that long."""
        now = time.time()
        return TaskRecord(
            task_id=task_id,
            namespace=principal.namespace,
            token_id=principal.token_id,
            method=method,
            udf=udf,
            arrays=(),
            status="QUEUED",
            owner=OWNER,
            created_at=now,
            result_expires_at=now + ttl if ttl else None,
        )

    def create(self, record: TaskRecord, runner: asyncio.Task[Any] | None) -> None:
        self._live[record.task_id] = LiveTask(record, runner)
        self._writer.save_task(record)

    def attach(self, task_id: str, runner: asyncio.Task[Any]) -> None:
        """Name the asyncio task that runs a (submitted) task, so that it can be cancelled."""
        if task_id in self._live:
            self._live[task_id].runner = runner

    def update(self, task_id: str, **changes: object) -> TaskRecord:
        live = self._live[task_id]
        live.record = dataclasses.replace(live.record, **changes)  # type: ignore[arg-type]
        self._writer.save_task(live.record)
        return live.record

    def started(self, task_id: str) -> None:
        if task_id in self._live:
            self.update(task_id, status="RUNNING", started_at=time.time())

    def log_part(self, task_id: str, part: LogPart) -> None:
        """Keep output a running task printed, for followers of its logs."""
        live = self._live.get(task_id)
        if live is None or part.total <= live.log_total:
            return
        live.log += part.data
        live.log_total = part.total
        del live.log[: max(0, len(live.log) - LIVE_LOG_BYTES)]
        live.wake()

    def live(self, task_id: str) -> LiveTask | None:
        """The task, if this process is running it."""
        return self._live.get(task_id)

    def finish(self, task_id: str, status: TaskStatus, **changes: object) -> None:
        """Record the final state and wake whoever waits for it."""
        if task_id not in self._live:
            return
        record = self.update(task_id, status=status, finished_at=time.time(), **changes)
        live = self._live.pop(task_id)
        live.done.set()
        live.wake()
        if record.result_path and self.on_stored is not None:
            self.on_stored(record.namespace)

    # queries

    def get(self, principal: Principal, task_id: str) -> TaskRecord:
        """The task, if the caller may see it (their namespaces, or any for admins)."""
        live = self._live.get(task_id)
        record = live.record if live else self._writer.pending_task(task_id)
        if record is None:
            record = self._store.task(task_id)
        if record is None or not principal.member_of(record.namespace):
            raise ServiceError(
                R.ERROR_REASON_TASK_NOT_FOUND, f"no task {task_id[:64]!r} is visible to you",
                task_id=task_id[:64],
            )  # fmt: skip
        return record

    def settled(self, principal: Principal, task_id: str) -> TaskRecord:
        """Like ``get``, but a task another live replica runs is read again from the store
        until it ends, for at most ``SETTLE_SECONDS`` (blocking): the other replica may have
        finished it and not yet written so."""
        record = self.get(principal, task_id)
        deadline = time.monotonic() + SETTLE_SECONDS
        while self.runs_elsewhere(record) and time.monotonic() < deadline:
            time.sleep(0.05)
            record = self._store.task(task_id) or record
        return record

    def runs_elsewhere(self, record: TaskRecord) -> bool:
        """Whether the task is unfinished and another live replica runs it (cheap)."""
        return (
            record.status not in FINAL_STATES
            and record.owner != OWNER
            and self.replicas.alive(record.owner)
        )

    def list(self, principal: Principal, query: TaskQuery) -> list[TaskRecord]:
        foreign = query.namespaces is not None and not query.namespaces <= principal.namespaces
        if foreign and not principal.admin:
            return []
        self._writer.flush()  # what this process knows is in the store before it is queried
        return self._store.tasks(query)

    async def wait(self, task_id: str) -> None:
        """Return once the task (run by this process) has ended."""
        live = self._live.get(task_id)
        if live is not None:
            await live.done.wait()

    async def cancel(self, principal: Principal, task_id: str) -> TaskRecord:
        """Stop a queued or running task: at once if this process runs it, else by a request
        to the replica that does; an ended one is returned as it is."""
        record = await asyncio.to_thread(self.get, principal, task_id)
        if record.status in FINAL_STATES or self.stop(task_id):
            return record
        if self.replicas.alive(record.owner):
            await asyncio.to_thread(self.replicas.request_cancel, task_id)
        return record

    def stop(self, task_id: str) -> bool:
        """Cancel the task if this process runs it; False if it does not."""
        live = self._live.get(task_id)
        if live is None:
            return False
        if live.runner is not None:
            live.runner.cancel()
        return True

    def running(self) -> tuple[str, ...]:
        """The ids of the tasks this process runs."""
        return tuple(self._live)

    async def wait_all(self, timeout: float) -> None:
        """Wait until no task of this process is queued or running, at most ``timeout`` s."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._live:
            waits = [asyncio.ensure_future(live.done.wait()) for live in self._live.values()]
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                for wait in waits:
                    wait.cancel()
                return
            _, pending = await asyncio.wait(waits, timeout=remaining)
            for wait in pending:
                wait.cancel()

    async def cancel_all(self, reason: str) -> None:
        """Cancel every task still running (the shutdown grace has ended) and wait for them."""
        runners = [live.runner for live in self._live.values() if live.runner is not None]
        for runner in runners:
            runner.cancel(reason)
        await asyncio.gather(*runners, return_exceptions=True)

    # recovery and expiry

    def recover(self) -> int:
        """Fail the unfinished tasks of server processes that are gone; return how many."""
        unfinished = self._store.unfinished_tasks()
        self.replicas.refresh()  # after the read: an owner's first heartbeat precedes its tasks
        orphans = [t for t in unfinished if not self.replicas.alive(t.owner)]
        now = time.time()
        failed = [
            dataclasses.replace(
                t,
                status="FAILED",
                finished_at=now,
                error_reason=R.Name(R.ERROR_REASON_SERVER_RESTARTED),
                error_message="the server running this task stopped before it finished",
                result_path="",
            )
            for t in orphans
        ]
        for task in orphans:
            self.settings.storage.forget_partial(result_key(task))
        if failed:
            self._store.save_tasks(failed)
        return len(failed)

    def sweep(self) -> tuple[int, int]:
        """Delete the stored results whose time-to-live has ended, and the records of tasks
        past their retention; return how many of each."""
        now = time.time()
        deleted = []
        for task in self._store.expired_results(now):  # replicas may sweep the same ones
            try:
                self.settings.storage.delete(result_key(task))
            except OSError as exc:  # e.g. the object store is unreachable: the next sweep
                log.warning("the expired result of task %s stays for now: %s", task.task_id, exc)
                continue
            deleted.append(dataclasses.replace(task, result_path=""))
        if deleted:
            self._store.save_tasks(deleted)
        return len(deleted), self._store.forget_tasks(now - self.settings.retention)

    def ttl(self, requested: float) -> float:
        if requested > self.settings.max_ttl:
            raise ServiceError(
                R.ERROR_REASON_OPTION_INVALID,
                f"result_ttl may be at most {self.settings.max_ttl:g} s",
                option="result_ttl",
            )
        return requested or self.settings.default_ttl
