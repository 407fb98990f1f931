"""A trivial call, sequential (latency) and from 32 concurrent callers (calls/s).

tilefn runs ``lambda: 1`` in a sandboxed worker through ``call`` (the unary CallUdf: a small
result in one round trip); the yardstick is a raw grpc.aio unary echo of a tiny payload. Both
clients use the same method: the synchronous channel/``Client`` for the sequential loop, one
asyncio loop with 32 coroutines on one ``grpc.aio`` channel/``AsyncClient`` for the concurrent
one. Each measurement first warms up for ``WARMUP_SECONDS``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bench._stats import Metrics, latency_metrics

WARMUP_SECONDS = 0.5
CALLERS = 32
#: The echo's request: a tiny payload.
PAYLOAD = b"x" * 64


TRIVIAL: Callable[[], int] = lambda: 1  # noqa: E731 - the issue's workload is this lambda


def sequential(call: Callable[[], object], seconds: float) -> Metrics:
    deadline = time.perf_counter() + WARMUP_SECONDS
    while time.perf_counter() < deadline:
        call()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return latency_metrics(times)


async def concurrent(call: Callable[[], Awaitable[object]], seconds: float) -> Metrics:
    """Calls/s of CALLERS coroutines looping until the deadline (calls in flight at the
    deadline finish and are not counted)."""

    async def caller(deadline: float, counts: list[int]) -> None:
        while time.perf_counter() < deadline:
            await call()
            if time.perf_counter() <= deadline:
                counts.append(1)

    await asyncio.gather(
        *(caller(time.perf_counter() + WARMUP_SECONDS, []) for _ in range(CALLERS))
    )
    counts: list[int] = []
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(caller(deadline, counts) for _ in range(CALLERS)))
    return {"calls_per_s": len(counts) / seconds, "calls": float(len(counts))}


def tilefn_sequential(target: str, seconds: float) -> Metrics:
    from tilefn.client import Client

    with Client(target) as client:
        if client.call(TRIVIAL) != 1 or client.exec(TRIVIAL) != 1:
            raise RuntimeError("tilefn returned the wrong value")
        return sequential(lambda: client.call(TRIVIAL), seconds)


def echo_sequential(target: str, seconds: float) -> Metrics:
    import grpc

    from bench.peers.echo_server import METHOD

    with grpc.insecure_channel(target) as channel:
        echo = channel.unary_unary(METHOD, None, None)
        if echo(PAYLOAD) != PAYLOAD:
            raise RuntimeError("echo returned the wrong bytes")
        return sequential(lambda: echo(PAYLOAD), seconds)


def tilefn_concurrent(target: str, seconds: float) -> Metrics:
    from tilefn.client import AsyncClient

    async def run() -> Metrics:
        async with AsyncClient(target) as client:
            return await concurrent(lambda: client.call(TRIVIAL), seconds)

    return asyncio.run(run())


def echo_concurrent(target: str, seconds: float) -> Metrics:
    import grpc

    from bench.peers.echo_server import METHOD

    async def run() -> Metrics:
        async with grpc.aio.insecure_channel(target) as channel:
            echo = channel.unary_unary(METHOD, None, None)
            return await concurrent(lambda: echo(PAYLOAD), seconds)

    return asyncio.run(run())
