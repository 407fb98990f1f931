"""The warm worker pool: ready workers forked ahead of demand, leased one task at a time.

::

    lease(ns) ──▶ reusable worker of ns? ──yes──▶ run task ──clean──▶ back to ns's idle list
                     │ no                                    └─killed/cancelled/failed─▶ SIGKILL
                     ▼
                  fresh ready worker (or wait for one) ◀── template forks ◀── replenish

A worker is reused only by the namespace that first used it (and at most ``max_tasks_per_worker``
times); a fresh worker has never run anyone's code. Cancellation or any failure other than a
clean, reported UDF error kills the worker; the template reaps it and a new one is forked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ._errors import (
    PoolClosedError,
    SandboxError,
    SandboxUnavailableError,
    UdfFailedError,
    WorkersUnavailableError,
)
from ._template import TemplateProcess
from ._worker import WorkerHandle

log = logging.getLogger(__name__)

#: Layers strict mode does without when the kernel lacks them (they back up other layers).
OPTIONAL_LAYERS = frozenset({"landlock"})
#: Workers failing to start in a row before the pool reports itself unhealthy and fails fast.
MAX_START_FAILURES = 3
#: Seconds between attempts to start a worker while they keep failing.
START_RETRY_DELAY = 1.0


def missing_layers(layers: dict[str, bool]) -> list[str]:
    """The required layers a worker reported as unavailable."""
    return sorted(k for k, v in layers.items() if not v and k not in OPTIONAL_LAYERS)


@dataclass(frozen=True)
class PoolConfig:
    """How many workers to keep and how to use them."""

    #: Fresh workers kept forked and ready beyond current demand.
    ready_workers: int = 2
    #: Workers running tasks at once; further leases wait.
    max_workers: int = 8
    #: Tasks one worker may run (all for the same namespace) before it is retired; 1 = one-shot.
    max_tasks_per_worker: int = 1000
    #: Seconds a forked worker may take to confine itself and report ready.
    ready_timeout: float = 30.0
    #: The Python interpreter that runs the template (the server's own by default).
    python: str = sys.executable
    #: Address space (virtual memory) each worker may use, in bytes; array inputs count too.
    worker_memory_bytes: int = 8 << 30
    #: "strict": refuse to run unless every sandbox layer is active; "degraded": run with
    #: whatever layers this machine allows, and say so in the log.
    sandbox: str = "strict"


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of the pool."""

    fresh: int
    reusable: int
    leased: int
    starting: int
    pids: tuple[int, ...]
    template_pid: int | None
    #: Seconds recent workers took from being forked to READY (their sandbox setup).
    setup_seconds: tuple[float, ...] = ()


class WorkerPool:
    """Leases sandboxed workers; ``start()`` before gRPC exists, then ``open()`` on the loop."""

    def __init__(
        self,
        config: PoolConfig | None = None,
        on_health: Callable[[bool], None] | None = None,
    ) -> None:
        """``on_health(False)`` is called while no worker can be had, ``on_health(True)`` after."""
        self.config = config or PoolConfig()
        self._on_health = on_health
        self._restarting = False
        self._template = TemplateProcess(self.config.python, self.config.worker_memory_bytes)
        self._slots: asyncio.Semaphore | None = None
        self._fresh: deque[WorkerHandle] = deque()
        self._reusable: dict[str, deque[WorkerHandle]] = {}
        self._waiters: deque[asyncio.Future[WorkerHandle]] = deque()
        self._workers: dict[int, WorkerHandle] = {}
        self._leased = 0
        self._starting = 0  # spawned, not yet ready
        self._requested = 0  # asked of the template, not yet spawned
        self._closed = False
        self._start_failures = 0  # in a row
        self._retry_at = 0.0  # while workers keep failing: no new attempt before this
        self._tasks: set[asyncio.Task[None]] = set()
        #: The sandbox layers the workers report as active.
        self.layers: dict[str, bool] = {}
        self._first_ready: asyncio.Future[dict[str, bool]] | None = None
        self._setup_seconds: deque[float] = deque(maxlen=256)

    def start(self) -> None:
        """Exec the template (blocking, ~0.5 s: it imports numpy and pyarrow)."""
        self._template.start()

    async def open(self) -> None:
        """Attach to the running loop, fork the first workers and check their sandbox layers.

        In strict mode a missing layer closes the pool and raises SandboxUnavailableError.
        """
        self._slots = asyncio.Semaphore(self.config.max_workers)
        self._first_ready = asyncio.get_running_loop().create_future()
        self._attach(self._template)
        self._replenish()
        try:
            layers = await asyncio.wait_for(self._first_ready, self.config.ready_timeout)
        except TimeoutError:
            await self.close()
            raise SandboxUnavailableError("no worker became ready; see the log") from None
        missing = missing_layers(layers)
        if missing and self.config.sandbox == "strict":
            await self.close()
            raise SandboxUnavailableError(
                f"sandbox layers unavailable on this machine: {', '.join(missing)}; run the "
                "server as root on Linux x86-64, or accept less isolation with --sandbox degraded"
            )

    @contextlib.asynccontextmanager
    async def lease(self, namespace: str, *, fresh: bool = False) -> AsyncIterator[WorkerHandle]:
        """Hold a worker for one task; it is killed unless the task ended cleanly.

        ``fresh`` asks for a worker that has run nothing (needed to lower its memory limit).
        """
        if self._closed or self._slots is None:
            raise PoolClosedError("the worker pool is closed")
        async with self._slots:
            reused = None if fresh else self._take_reusable(namespace)
            worker = reused or await self._take_fresh()
            self._leased += 1
            clean = False
            try:
                yield worker
                clean = True
            except UdfFailedError:
                clean = True  # the worker reported the failure and is ready for more
                raise
            finally:
                self._leased -= 1
                self._give_back(worker, namespace, clean)

    async def limit(self, worker: WorkerHandle, memory_bytes: int) -> None:
        """Set a leased worker's memory limit for its next task (0: the pool's default).

        Lowering the limit may fail on a worker that already holds more memory: lease a fresh
        worker for a custom limit.
        """
        wanted = memory_bytes or self.config.worker_memory_bytes
        if wanted == (worker.memory_limit or self.config.worker_memory_bytes):
            return  # unchanged: no round trip to the template
        await self._template.set_memory_limit(worker.pid, wanted)
        worker.memory_limit = wanted

    def stats(self) -> PoolStats:
        return PoolStats(
            fresh=len(self._fresh),
            reusable=sum(len(q) for q in self._reusable.values()),
            leased=self._leased,
            starting=self._starting + self._requested,
            pids=tuple(sorted(self._workers)),
            template_pid=self._template.pid,
            setup_seconds=tuple(self._setup_seconds),
        )

    async def close(self) -> None:
        """Kill every worker and stop the template; idempotent."""
        self._shut("the worker pool is closed")
        for task in list(self._tasks):
            task.cancel()
        self._template.detach()
        await asyncio.to_thread(self._template.stop)

    def _take_reusable(self, namespace: str) -> WorkerHandle | None:
        idle = self._reusable.get(namespace)
        while idle:
            worker = idle.popleft()
            if worker.alive:
                return worker
        return None

    async def _take_fresh(self) -> WorkerHandle:
        while self._fresh:
            worker = self._fresh.popleft()
            if worker.alive:
                self._replenish()
                return worker
        if self._failing:
            raise WorkersUnavailableError(self._failing_message())
        waiter: asyncio.Future[WorkerHandle] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._replenish()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._offer(waiter.result())  # handed over just as we were cancelled
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _give_back(self, worker: WorkerHandle, namespace: str, clean: bool) -> None:
        reusable = clean and worker.tasks_run < self.config.max_tasks_per_worker
        reusable = reusable and not worker.retire_requested
        if reusable and worker.alive and not self._closed:
            worker.namespace = namespace
            self._reusable.setdefault(namespace, deque()).append(worker)
        else:
            # Killing wakes the worker, and the kernel may run its exit before returning to
            # us: done on the next turn of the loop, it stays off this call's response.
            asyncio.get_running_loop().call_soon(worker.kill)
        self._replenish()

    def _replenish(self) -> None:
        if self._closed or self._restarting or time.monotonic() < self._retry_at:
            return
        pending = self._starting + self._requested
        wanted = self.config.ready_workers + len(self._waiters) - len(self._fresh) - pending
        room = self.config.max_workers + self.config.ready_workers - len(self._workers)
        room -= self._requested
        if wanted > room:
            room += self._evict_reusable(wanted - room)
        count = min(wanted, room)
        if count > 0:
            self._requested += count
            try:
                self._template.request(count)
            except PoolClosedError:
                self._requested -= count
                self._on_template_lost()

    def _evict_reusable(self, count: int) -> int:
        evicted = 0
        for idle in self._reusable.values():
            while idle and evicted < count:
                idle.popleft().kill()
                evicted += 1
        return evicted

    def _on_spawned(self, pid: int, channel: socket.socket, pidfd: int) -> None:
        worker = WorkerHandle(pid, channel, pidfd)
        self._workers[pid] = worker
        self._requested = max(0, self._requested - 1)
        self._starting += 1
        task = asyncio.create_task(self._await_ready(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_ready(self, worker: WorkerHandle) -> None:
        forked = time.perf_counter()
        try:
            await asyncio.wait_for(worker.wait_ready(), self.config.ready_timeout)
            self._check_layers(worker)
            self._setup_seconds.append(time.perf_counter() - forked)
        except (SandboxError, TimeoutError, OSError) as exc:
            worker.kill()
            self._start_failed(f"worker {worker.pid} failed to start: {exc}")
            return
        finally:
            self._starting -= 1
        self._start_succeeded()
        self._offer(worker)

    @property
    def _failing(self) -> bool:
        return self._start_failures >= MAX_START_FAILURES

    def _failing_message(self) -> str:
        return f"{self._start_failures} sandboxed workers in a row failed to start; see the log"

    def _start_failed(self, why: str) -> None:
        """Count a worker that did not start; past a few in a row, fail fast and retry slowly."""
        log.error("%s", why)
        self._start_failures += 1
        if not self._failing:
            return
        if self._start_failures == MAX_START_FAILURES:
            self._set_healthy(False)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(WorkersUnavailableError(self._failing_message()))
        self._retry_at = time.monotonic() + START_RETRY_DELAY
        asyncio.get_running_loop().call_later(START_RETRY_DELAY, self._retry)

    def _retry(self) -> None:
        # asyncio may fire a timer a clock tick early: the gate must not turn this attempt away.
        self._retry_at = 0.0
        self._replenish()

    def _start_succeeded(self) -> None:
        if self._failing:
            log.info("workers start again")
            self._set_healthy(True)
        self._start_failures = 0
        self._retry_at = 0.0

    def _on_spawn_failed(self, error: str) -> None:
        self._requested = max(0, self._requested - 1)
        self._start_failed(f"the template could not fork a worker: {error}")

    def _check_layers(self, worker: WorkerHandle) -> None:
        """In strict mode, once the pool is open, a worker missing a layer is never used."""
        started = self._first_ready is not None and self._first_ready.done()
        missing = missing_layers(worker.layers)
        if started and missing and self.config.sandbox == "strict":
            failures = "; ".join(f"{k}: {worker.layer_failures.get(k, '?')}" for k in missing)
            raise SandboxError(f"sandbox layers failed in this worker ({failures})")

    def _offer(self, worker: WorkerHandle) -> None:
        if self._first_ready is not None and not self._first_ready.done():
            self._first_ready.set_result(worker.layers)
        if worker.layers != self.layers:
            self.layers = worker.layers
            active = ", ".join(k for k, v in sorted(worker.layers.items()) if v) or "none"
            missing = ", ".join(k for k, v in sorted(worker.layers.items()) if not v) or "none"
            log.info("sandbox layers active: %s; unavailable: %s", active, missing)
            for name, why in sorted(worker.layer_failures.items()):
                log.warning("sandbox layer %s failed: %s", name, why)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._fresh.append(worker)

    def _on_exited(self, pid: int, returncode: int | None, out_of_memory: bool) -> None:
        worker = self._workers.pop(pid, None)
        if worker is not None:
            worker.out_of_memory = out_of_memory
            worker.set_exited(returncode)
            with contextlib.suppress(ValueError):  # a ready worker died: it must be replaced
                self._fresh.remove(worker)
            self._replenish()

    def _on_template_lost(self) -> None:
        if self._closed or self._restarting:
            return
        log.error("the worker template exited; restarting it")
        self._restarting = True
        self._set_healthy(False)
        for pid, worker in list(self._workers.items()):
            worker.kill()  # they die with the template anyway (parent-death signal)
            worker.set_exited(None)
            del self._workers[pid]
        self._fresh.clear()
        self._reusable.clear()
        self._requested = 0  # the old template will never answer them
        task = asyncio.create_task(self._restart_template())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart_template(self) -> None:
        """Start a new template; if that fails too, fail pending and future work fast."""
        template = TemplateProcess(self.config.python, self.config.worker_memory_bytes)
        try:
            await asyncio.to_thread(template.start)
        except SandboxError as exc:
            log.error("could not restart the worker template: %s", exc)
            self._shut(f"the worker template exited and could not restart: {exc}")
            return
        finally:
            self._restarting = False
        self._template = template
        self._attach(template)
        self._set_healthy(not self._failing)  # workers may still be failing to start
        self._replenish()

    def _attach(self, template: TemplateProcess) -> None:
        template.attach(
            self._on_spawned, self._on_exited, self._on_template_lost, self._on_spawn_failed
        )

    def _set_healthy(self, healthy: bool) -> None:
        if self._on_health is not None:
            self._on_health(healthy)

    def _shut(self, why: str) -> None:
        """Take no more work: fail the waiting leases and kill every worker."""
        self._closed = True
        self._set_healthy(False)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolClosedError(why))
        for worker in list(self._workers.values()):
            worker.kill()
