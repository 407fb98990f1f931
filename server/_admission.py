"""Admission control: how many executions run at once, who waits, and who is turned away.

::

    slot(ns) ──▶ a slot free overall, ns under its cap, nobody of ns waiting? ──yes──▶ run
                   │ no
                   ▼
                 ns's queue or the server's queue full? ──yes──▶ QUEUE_FULL (RESOURCE_EXHAUSTED
                   │ no                                          + RetryInfo), at once
                   ▼
                 wait in ns's FIFO ◀── a slot frees: the waiting namespace served least
                                       recently (among those under their cap) gets it

Fairness is between namespaces, not calls: each namespace waits in its own FIFO queue, and a
freed slot goes to the namespace whose last slot was granted longest ago (a namespace that has
never been served, or has gone idle, comes first). Two busy namespaces therefore alternate
whatever their queue lengths, and a tenant with 100 queued calls delays another tenant's next
call by at most one slot release per busy namespace.

Everything runs on the server's one event loop, so no locks: a grant counts as running the moment
it is made, and a waiter cancelled just as it was granted hands its slot straight on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ._config import ConfigError, ServerConfig
from ._status import R, ServiceError

#: The retry delay suggested to a refused caller stays within these bounds, in seconds.
MIN_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 30.0
#: Weight of the newest run in the moving average of how long a slot is held.
HOLD_SMOOTHING = 0.2


@dataclass(frozen=True)
class AdmissionLimits:
    """The effective limits (``ServerConfig`` spells them with 0 = "derive from the pool")."""

    #: Executions running at once on this server.
    max_running: int
    #: Executions one namespace may run at once.
    max_running_per_namespace: int
    #: Calls waiting for a slot, over all namespaces.
    max_queued: int
    #: Calls one namespace may have waiting.
    max_queued_per_namespace: int

    @classmethod
    def from_config(cls, config: ServerConfig) -> AdmissionLimits:
        """Resolve the defaults; ConfigError for limits that cannot work."""
        workers = config.pool.max_workers
        running = config.max_running or workers
        limits = cls(
            max_running=running,
            max_running_per_namespace=config.max_running_per_namespace or running,
            max_queued=config.max_queued,
            max_queued_per_namespace=config.max_queued_per_namespace,
        )
        if min(config.max_running, config.max_running_per_namespace) < 0:
            raise ConfigError("--max-running and --max-running-per-namespace cannot be negative")
        if min(limits.max_queued, limits.max_queued_per_namespace) < 0:
            raise ConfigError("--max-queued and --max-queued-per-namespace cannot be negative")
        if running > workers:
            # Past the pool's size, admitted calls would wait for a worker in the pool's own
            # queue, which is neither bounded nor fair.
            raise ConfigError(f"--max-running {running} exceeds --max-workers {workers}")
        return limits


class Admission:
    """Bounded, fair admission of executions; use ``async with admission.slot(namespace)``."""

    def __init__(
        self, limits: AdmissionLimits, on_change: Callable[[str], None] | None = None
    ) -> None:
        """``on_change(namespace)`` is called (and must not raise) whenever that namespace's
        ``depth`` or ``running`` changed; the overall counts may have changed with them."""
        self.limits = limits
        self._on_change = on_change
        self._running: dict[str, int] = {}
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        #: When each namespace last got a slot (a tick of ``_clock``); forgotten once idle.
        self._served: dict[str, int] = {}
        self._clock = itertools.count(1)
        self._total_running = 0
        self._total_queued = 0
        #: Moving average of how long a slot is held, in seconds (for the retry hint).
        self._hold_seconds = MIN_RETRY_DELAY

    def depth(self, namespace: str) -> int:
        """Calls of ``namespace`` waiting for a slot."""
        return len(self._queues.get(namespace, ()))

    def running(self, namespace: str) -> int:
        """Executions of ``namespace`` holding a slot."""
        return self._running.get(namespace, 0)

    @property
    def total_queued(self) -> int:
        """Calls waiting for a slot, over all namespaces."""
        return self._total_queued

    @property
    def total_running(self) -> int:
        """Executions holding a slot, over all namespaces."""
        return self._total_running

    @contextlib.asynccontextmanager
    async def slot(self, namespace: str) -> AsyncIterator[None]:
        """Hold one execution slot for ``namespace``; wait for it, or fail with QUEUE_FULL."""
        if self._admissible(namespace):
            self._grant(namespace)
        else:
            await self._wait(namespace)
        started = time.monotonic()
        try:
            yield
        finally:
            held = time.monotonic() - started
            self._hold_seconds += HOLD_SMOOTHING * (held - self._hold_seconds)
            self._release(namespace)

    def check(self, namespace: str) -> None:
        """QUEUE_FULL now if a call of ``namespace`` could neither run nor wait (used by
        SubmitUdf, which answers before its task asks for a slot)."""
        if not self._admissible(namespace):
            self._check_room(namespace)

    def retry_delay(self) -> float:
        """Seconds after which a refused call may find room: the time the calls queued now
        need to start, at the recent pace (bounded to ``MIN_RETRY_DELAY``..``MAX_RETRY_DELAY``)."""
        pace = self._hold_seconds / self.limits.max_running
        return min(MAX_RETRY_DELAY, max(MIN_RETRY_DELAY, pace * (self._total_queued + 1)))

    def _admissible(self, namespace: str) -> bool:
        """A slot is free for ``namespace`` now, and none of its calls waits before it."""
        return (
            self._total_running < self.limits.max_running
            and self.running(namespace) < self.limits.max_running_per_namespace
            and not self.depth(namespace)
        )

    async def _wait(self, namespace: str) -> None:
        self._check_room(namespace)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(namespace, deque()).append(waiter)
        self._total_queued += 1
        self._changed(namespace)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(namespace)  # granted just as we were cancelled: pass it on
            else:
                self._drop(namespace, waiter)
            raise

    def _check_room(self, namespace: str) -> None:
        if self.depth(namespace) >= self.limits.max_queued_per_namespace:
            scope, limit = "namespace", self.limits.max_queued_per_namespace
            where = f"namespace {namespace!r} has {limit} calls"
        elif self._total_queued >= self.limits.max_queued:
            scope, limit = "server", self.limits.max_queued
            where = f"the server has {limit} calls"
        else:
            return
        error = ServiceError(
            R.ERROR_REASON_QUEUE_FULL,
            f"{where} waiting for a slot already (the most it queues); retry later",
            namespace=namespace,
            limit=str(limit),
            scope=scope,
        )
        error.retry_after = self.retry_delay()
        raise error

    def _drop(self, namespace: str, waiter: asyncio.Future[None]) -> None:
        """Forget a waiter that left the queue without a slot (if still queued)."""
        queue = self._queues.get(namespace)
        if queue is None or waiter not in queue:
            return
        queue.remove(waiter)
        self._total_queued -= 1
        self._forget_if_idle(namespace)
        self._changed(namespace)

    def _grant(self, namespace: str) -> None:
        self._running[namespace] = self.running(namespace) + 1
        self._total_running += 1
        self._served[namespace] = next(self._clock)
        self._changed(namespace)

    def _release(self, namespace: str) -> None:
        self._running[namespace] -= 1
        self._total_running -= 1
        self._forget_if_idle(namespace)
        self._changed(namespace)
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to waiters, least recently served namespace first."""
        while self._total_running < self.limits.max_running:
            namespace = self._next_turn()
            if namespace is None:
                return
            queue = self._queues[namespace]
            waiter = queue.popleft()
            self._total_queued -= 1
            if waiter.cancelled():  # its task has not run its cleanup yet; it finds it gone
                self._forget_if_idle(namespace)
                self._changed(namespace)
                continue
            waiter.set_result(None)
            self._grant(namespace)
            self._forget_if_idle(namespace)

    def _next_turn(self) -> str | None:
        cap = self.limits.max_running_per_namespace
        eligible = [ns for ns, queue in self._queues.items() if queue and self.running(ns) < cap]
        return min(eligible, key=lambda ns: self._served.get(ns, 0), default=None)

    def _forget_if_idle(self, namespace: str) -> None:
        """Drop a namespace's entries once it neither runs nor waits (bounded memory)."""
        if self.running(namespace) or self.depth(namespace):
            return
        self._running.pop(namespace, None)
        self._queues.pop(namespace, None)
        self._served.pop(namespace, None)

    def _changed(self, namespace: str) -> None:
        if self._on_change is not None:
            self._on_change(namespace)
