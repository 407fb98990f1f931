"""Admission on its own (pure asyncio, no server): limits, round-robin, cancellation races."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tilefn.client._exceptions import from_rpc_error
from tilefn.sandbox import PoolConfig
from tilefn.server import ServerConfig
from tilefn.server._admission import (
    MAX_RETRY_DELAY,
    MIN_RETRY_DELAY,
    Admission,
    AdmissionLimits,
)
from tilefn.server._config import ConfigError
from tilefn.server._status import R, ServiceError, to_status


def limits(
    running: int = 1, per_ns: int = 0, queued: int = 100, queued_per_ns: int = 100
) -> AdmissionLimits:
    return AdmissionLimits(running, per_ns or running, queued, queued_per_ns)


class Tenant:
    """Calls that each hold their slot until released by the test."""

    def __init__(self, admission: Admission, order: list[str]) -> None:
        self.admission = admission
        self.order = order  # names of calls, in the order they were admitted
        self.release: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def submit(self, namespace: str, name: str) -> asyncio.Task[None]:
        self.release[name] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._hold(namespace, name))
        self.tasks[name] = task
        return task

    async def _hold(self, namespace: str, name: str) -> None:
        async with self.admission.slot(namespace):
            self.order.append(name)
            await self.release[name].wait()

    async def finish(self, name: str) -> None:
        """Let ``name`` end, and wait for the slot to have been handed on."""
        self.release[name].set()
        await self.tasks[name]
        await settle()


async def settle() -> None:
    """Let every ready task run until nothing changes (grants are immediate, wakeups a turn)."""
    for _ in range(10):
        await asyncio.sleep(0)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


def test_admits_up_to_max_running_then_queues_fifo() -> None:
    async def main() -> None:
        admission = Admission(limits(running=2))
        order: list[str] = []
        calls = Tenant(admission, order)
        for name in ("a1", "a2", "a3", "a4"):
            calls.submit("a", name)
        await settle()
        assert order == ["a1", "a2"]
        assert (admission.running("a"), admission.depth("a")) == (2, 2)
        assert (admission.total_running, admission.total_queued) == (2, 2)
        await calls.finish("a2")
        await calls.finish("a1")
        assert order == ["a1", "a2", "a3", "a4"]
        await calls.finish("a3")
        await calls.finish("a4")
        assert (admission.total_running, admission.total_queued) == (0, 0)
        assert admission._running == admission._queues == admission._served == {}

    run(main)


def test_two_namespaces_alternate_whatever_their_queue_lengths() -> None:
    async def main() -> None:
        admission = Admission(limits(running=1))
        order: list[str] = []
        calls = Tenant(admission, order)
        calls.submit("a", "a0")
        await settle()
        for i in range(1, 9):
            calls.submit("a", f"a{i}")
        await settle()
        calls.submit("b", "b1")
        calls.submit("b", "b2")
        await settle()
        for name in ["a0", "b1", "a1", "b2", "a2", "a3", "a4", "a5", "a6", "a7"]:
            await calls.finish(name)
        assert order == ["a0", "b1", "a1", "b2", "a2", "a3", "a4", "a5", "a6", "a7", "a8"]

    run(main)


def test_three_namespaces_take_turns() -> None:
    async def main() -> None:
        admission = Admission(limits(running=1))
        order: list[str] = []
        calls = Tenant(admission, order)
        calls.submit("a", "a0")
        await settle()
        for i in (1, 2, 3):
            for ns in ("a", "b", "c"):
                calls.submit(ns, f"{ns}{i}")
        await settle()
        for name in ["a0", "b1", "c1", "a1", "b2", "c2", "a2", "b3", "c3"]:
            await calls.finish(name)
        assert order[1:] == ["b1", "c1", "a1", "b2", "c2", "a2", "b3", "c3", "a3"]

    run(main)


def test_per_namespace_running_cap_skips_a_capped_namespace() -> None:
    async def main() -> None:
        admission = Admission(limits(running=3, per_ns=2))
        order: list[str] = []
        calls = Tenant(admission, order)
        for name in ("a1", "a2", "a3", "a4"):
            calls.submit("a", name)
        await settle()
        assert order == ["a1", "a2"]  # a third slot is free, but not for "a"
        calls.submit("b", "b1")
        await settle()
        assert order == ["a1", "a2", "b1"]  # admitted at once: under both limits
        calls.submit("b", "b2")
        await settle()
        await calls.finish("b1")  # frees a slot "a" may not use: it goes to "b"
        assert order[-1] == "b2"
        await calls.finish("a1")
        assert order[-1] == "a3"
        assert admission.running("a") == 2

    run(main)


def test_queue_full_per_namespace_and_server() -> None:
    async def main() -> None:
        admission = Admission(limits(running=1, queued=3, queued_per_ns=2))
        calls = Tenant(admission, [])
        calls.submit("a", "a0")
        calls.submit("a", "a1")
        calls.submit("a", "a2")
        await settle()
        with pytest.raises(ServiceError) as caught:
            async with admission.slot("a"):
                pytest.fail("admitted past the namespace's queue")
        error = caught.value
        assert error.reason == R.ERROR_REASON_QUEUE_FULL
        assert error.metadata == {"namespace": "a", "limit": "2", "scope": "namespace"}
        assert error.retry_after is not None
        assert MIN_RETRY_DELAY <= error.retry_after <= MAX_RETRY_DELAY
        calls.submit("b", "b1")
        await settle()
        with pytest.raises(ServiceError) as caught:
            async with admission.slot("c"):
                pytest.fail("admitted past the server's queue")
        assert caught.value.metadata == {"namespace": "c", "limit": "3", "scope": "server"}
        assert admission.depth("c") == 0
        for name in ("a0", "b1", "a1", "a2"):
            await calls.finish(name)

    run(main)


def test_no_queue_refuses_at_once_when_busy() -> None:
    async def main() -> None:
        admission = Admission(limits(running=1, queued_per_ns=0))
        calls = Tenant(admission, [])
        calls.submit("a", "a0")
        await settle()
        with pytest.raises(ServiceError):
            async with admission.slot("a"):
                pass
        await calls.finish("a0")

    run(main)


def test_cancelled_waiter_leaves_the_queue() -> None:
    async def main() -> None:
        admission = Admission(limits(running=1, queued_per_ns=1))
        order: list[str] = []
        calls = Tenant(admission, order)
        calls.submit("a", "a0")
        waiting = calls.submit("a", "a1")
        await settle()
        assert admission.depth("a") == 1
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert admission.depth("a") == 0
        calls.submit("a", "a2")  # the place is free again
        await settle()
        await calls.finish("a0")
        assert order == ["a0", "a2"]
        await calls.finish("a2")
        assert (admission.total_running, admission.total_queued) == (0, 0)

    run(main)


def test_waiter_cancelled_before_its_task_runs_is_skipped() -> None:
    """Cancelled, then a slot frees before the task ran its cleanup: the next waiter gets it."""

    async def main() -> None:
        admission = Admission(limits(running=1))
        order: list[str] = []
        calls = Tenant(admission, order)
        async with contextlib.AsyncExitStack() as held:
            await held.enter_async_context(admission.slot("a"))
            doomed = calls.submit("b", "b1")
            calls.submit("c", "c1")
            await settle()
            doomed.cancel()  # its future is cancelled now; its except clause runs later
        # Leaving the block released the slot without yielding to the loop.
        await settle()
        assert order == ["c1"]
        assert doomed.cancelled()
        await calls.finish("c1")
        assert (admission.total_running, admission.total_queued) == (0, 0)

    run(main)


def test_waiter_granted_and_cancelled_at_once_passes_the_slot_on() -> None:
    async def main() -> None:
        admission = Admission(limits(running=1))
        order: list[str] = []
        calls = Tenant(admission, order)
        async with contextlib.AsyncExitStack() as held:
            await held.enter_async_context(admission.slot("a"))
            doomed = calls.submit("b", "b1")
            calls.submit("c", "c1")
            await settle()
        # Leaving the block granted b1's waiter; b1's task has not run since.
        assert admission.running("b") == 1
        doomed.cancel()
        await settle()
        assert doomed.cancelled()
        assert order == ["c1"]
        assert admission.running("b") == 0
        await calls.finish("c1")
        assert (admission.total_running, admission.total_queued) == (0, 0)

    run(main)


def test_on_change_reports_each_namespace() -> None:
    async def main() -> None:
        seen: list[tuple[str, int, int]] = []
        admission: Admission

        def changed(namespace: str) -> None:
            seen.append((namespace, admission.running(namespace), admission.depth(namespace)))

        admission = Admission(limits(running=1), on_change=changed)
        calls = Tenant(admission, [])
        calls.submit("a", "a0")
        calls.submit("b", "b1")
        await settle()
        await calls.finish("a0")
        await calls.finish("b1")
        assert seen == [
            ("a", 1, 0),  # a0 admitted
            ("b", 0, 1),  # b1 queued
            ("a", 0, 0),  # a0 done
            ("b", 1, 0),  # b1 admitted
            ("b", 0, 0),  # b1 done
        ]

    run(main)


def test_limits_from_config() -> None:
    pool = PoolConfig(max_workers=4)
    resolved = AdmissionLimits.from_config(ServerConfig(pool=pool))
    assert resolved == AdmissionLimits(4, 4, 256, 64)
    config = ServerConfig(pool=pool, max_running=3, max_running_per_namespace=1)
    assert AdmissionLimits.from_config(config) == AdmissionLimits(3, 1, 256, 64)
    for bad in (
        {"max_running": 5},
        {"max_running": -1},
        {"max_queued": -1},
        {"max_queued_per_namespace": -1},
    ):
        with pytest.raises(ConfigError):
            AdmissionLimits.from_config(ServerConfig(pool=pool, **bad))  # type: ignore[arg-type]


class _FakeRpcError(Exception):
    """What from_rpc_error reads of a grpc.RpcError."""

    def __init__(self, status: Any) -> None:
        self._status = status

    def code(self) -> Any:
        return self._status.code

    def details(self) -> str:
        return str(self._status.details)

    def trailing_metadata(self) -> Any:
        return self._status.trailing_metadata


def test_retry_info_reaches_the_client_exception() -> None:
    error = ServiceError(R.ERROR_REASON_QUEUE_FULL, "full", namespace="a", limit="2", scope="x")
    error.retry_after = 2.5
    failure = from_rpc_error(_FakeRpcError(to_status(error, "task")))  # type: ignore[arg-type]
    assert failure.reason == "ERROR_REASON_QUEUE_FULL"
    assert failure.retry_after == 2.5
    assert failure.metadata == {"namespace": "a", "limit": "2", "scope": "x"}
    plain = ServiceError(R.ERROR_REASON_INTERNAL, "bug")
    assert from_rpc_error(_FakeRpcError(to_status(plain))).retry_after is None  # type: ignore[arg-type]
