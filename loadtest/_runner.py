"""Open-model load: arrivals at fixed intended times, whatever the server does.

::

    scheduler ── at t0 + i/rate ──▶ arrival task ── waits for a slot ──▶ ExecuteUdf ──▶ Sample
      (sleeps until the next        (concurrency cap: the wait counts     (deadline: intended
       intended time; catches up      as latency, so a slow server        time + timeout)
       at once if it woke late)       cannot slow the arrivals)

Every latency is measured from the request's *intended* send time, not from when it got on
the wire: a stalled server or a busy client shows as latency instead of silently lowering
the rate (no coordinated omission). How late arrivals started (``lag``) and how long they
waited for a slot (``queue wait``) are kept too, so a saturated client can be told apart from
a saturated server.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._config import PhaseConfig
from ._target import Outcome, Target
from ._workloads import MixPicker, Workload

#: Reason recorded for a request whose deadline passed while it waited for a slot.
CLIENT_QUEUE_REASON = "CLIENT_QUEUE_TIMEOUT"


@dataclass(frozen=True, slots=True)
class Sample:
    """One request; times in seconds since the phase started."""

    workload: str
    #: When the open model says it was sent.
    intended: float
    #: When its arrival task ran (intended + the client's own lateness).
    arrived: float
    #: When it got a concurrency slot and went on the wire (None: its deadline passed first).
    started: float | None
    finished: float
    code: str
    reason: str
    #: Whether it ended as its workload should (OK, or the fail workload's error code).
    expected: bool
    ipc_bytes: int

    @property
    def latency(self) -> float:
        return self.finished - self.intended


@dataclass
class LiveCounters:
    """What the progress line shows, updated as requests go and come back."""

    sent: int = 0
    done: int = 0
    in_flight: int = 0
    errors: int = 0
    #: Latencies (seconds) of the latest completions, for a moving p99.
    recent: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=2000))


@dataclass(frozen=True)
class PhaseResult:
    """Everything one phase measured."""

    config: PhaseConfig
    samples: list[Sample]
    #: Seconds from the first intended send to the last answer.
    wall_seconds: float
    #: CPU seconds this process used during the phase (all threads).
    cpu_seconds: float
    max_in_flight: int


class _Phase:
    def __init__(
        self,
        target: Target,
        workloads: Mapping[str, Workload],
        config: PhaseConfig,
        live: LiveCounters,
    ) -> None:
        self._target, self._workloads, self._config, self._live = target, workloads, config, live
        self._slots = asyncio.Semaphore(config.concurrency)
        self._picker = MixPicker(config.mix)
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._tasks: set[asyncio.Task[None]] = set()
        self.samples: list[Sample] = []
        self.max_in_flight = 0

    def now(self) -> float:
        return self._loop.time() - self._start

    async def schedule(self) -> None:
        """Launch every arrival at its intended time, then wait for all of them to end."""
        rate, total = self._config.rate, round(self._config.rate * self._config.duration)
        sent = 0
        while sent < total:
            due, now = sent / rate, self.now()
            if due > now:
                await asyncio.sleep(due - now)
                continue
            while sent < total and sent / rate <= now:  # woke late: catch up, skip nothing
                self._launch(sent / rate)
                sent += 1
        await asyncio.gather(*list(self._tasks))

    def _launch(self, intended: float) -> None:
        workload = self._workloads[self._picker.next()]
        task = asyncio.create_task(self._request(workload, intended))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request(self, workload: Workload, intended: float) -> None:
        arrived = self.now()
        self._live.sent += 1
        deadline = intended + self._config.timeout
        try:
            async with asyncio.timeout_at(self._start + deadline):
                await self._slots.acquire()
        except TimeoutError:  # what gRPC would say had it been sent: its deadline passed
            expired = Outcome("DEADLINE_EXCEEDED", CLIENT_QUEUE_REASON)
            self._record(workload, intended, arrived, None, expired)
            return
        try:
            started = self.now()
            outcome = await self._send(workload, deadline - started)
        finally:
            self._slots.release()
        self._record(workload, intended, arrived, started, outcome)

    async def _send(self, workload: Workload, timeout: float) -> Outcome:
        self._live.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._live.in_flight)
        try:
            return await self._target.execute(workload.request, max(timeout, 0.001))
        finally:
            self._live.in_flight -= 1

    def _record(
        self,
        workload: Workload,
        intended: float,
        arrived: float,
        started: float | None,
        outcome: Outcome,
    ) -> None:
        sample = Sample(
            workload=workload.name,
            intended=intended,
            arrived=arrived,
            started=started,
            finished=self.now(),
            code=outcome.code,
            reason=outcome.reason,
            expected=outcome.code == workload.expected_code,
            ipc_bytes=outcome.ipc_bytes,
        )
        self.samples.append(sample)
        self._live.done += 1
        self._live.errors += outcome.code != "OK"
        self._live.recent.append(sample.latency)


async def run_phase(
    target: Target,
    workloads: Mapping[str, Workload],
    config: PhaseConfig,
    live: LiveCounters | None = None,
) -> PhaseResult:
    """Drive ``config.rate`` arrivals per second for ``config.duration`` seconds."""
    cpu = time.process_time()
    phase = _Phase(target, workloads, config, live or LiveCounters())
    await phase.schedule()
    return PhaseResult(
        config=config,
        samples=sorted(phase.samples, key=lambda s: s.intended),
        wall_seconds=phase.now(),
        cpu_seconds=time.process_time() - cpu,
        max_in_flight=phase.max_in_flight,
    )
