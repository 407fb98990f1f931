"""Operator metrics: one Prometheus registry per server, scraped over HTTP on the server's loop.

Who feeds what::

    grpc.aio server ──▶ RpcMetrics (interceptor)  tilefn_rpc_requests_total{method,code}
                                                  tilefn_rpc_latency_seconds{method}
    UdfService ───────▶ Metrics.execution(ns)     tilefn_executions_in_flight{namespace}
                                                  tilefn_sandbox_violations_total{reason}
               ───────▶ Metrics.result_bytes(m)   tilefn_result_bytes_total{method}
    admission queue ──▶ Metrics.set_queue_depth   tilefn_queue_depth{namespace}
    stored results ───▶ Metrics.set_stored_bytes  tilefn_stored_result_bytes{namespace}
    WorkerPool ◀────── scrape (PoolCollector)     tilefn_workers{state}, tilefn_workers_max
    /proc/self ◀────── scrape (ProcessCollector)  process_* (CPU, memory, descriptors)

The admission queue and the stored results call ``set_queue_depth`` / ``set_stored_bytes``
whenever their totals for a namespace change (0 when a namespace has none left). Everything runs
on the event loop, the HTTP endpoint included, so collectors may read server state without locks
and no thread outlives the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeAlias

import grpc
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tilefn.sandbox import SandboxError, WorkerPool
from tilefn.v1 import error_pb2

from ._status import R, ServiceError, to_service_error

log = logging.getLogger(__name__)

#: From a trivial call (~2 ms) to long UDFs; seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
#: Failures that mean a UDF hit a sandbox boundary (counted by reason name).
VIOLATIONS = frozenset(
    {
        R.ERROR_REASON_WORKER_DIED,
        R.ERROR_REASON_WORKER_PROTOCOL_VIOLATION,
        R.ERROR_REASON_MEMORY_LIMIT,
        R.ERROR_REASON_CPU_LIMIT,
    }
)
#: A scraper gets this long to send its request line and headers.
REQUEST_TIMEOUT = 5.0
OK = grpc.StatusCode.OK


class Metrics:
    """The server's metrics, in a registry of their own (not prometheus_client's global one)."""

    def __init__(self, pool: WorkerPool | None = None) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "tilefn_rpc_requests",
            "RPCs finished, by short method name and gRPC status code name.",
            ("method", "code"),
            registry=registry,
        )
        self.latency = Histogram(
            "tilefn_rpc_latency_seconds",
            "Time from a call reaching its handler to its last response (or status), by method.",
            ("method",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._result_bytes = Counter(
            "tilefn_result_bytes",
            "Arrow IPC result bytes handed to callers (ExecuteUdf pieces, CallUdf replies).",
            ("method",),
            registry=registry,
        )
        self._in_flight = Gauge(
            "tilefn_executions_in_flight",
            "UDF executions running (staging arrays, waiting for or holding a worker).",
            ("namespace",),
            registry=registry,
        )
        self._violations = Counter(
            "tilefn_sandbox_violations",
            "Executions a sandbox boundary stopped, by ErrorReason name.",
            ("reason",),
            registry=registry,
        )
        for reason in VIOLATIONS:  # present (at 0) from the first scrape
            self._violations.labels(error_pb2.ErrorReason.Name(reason))
        self._queue_depth = Gauge(
            "tilefn_queue_depth",
            "Executions admitted but waiting for their turn, by namespace.",
            ("namespace",),
            registry=registry,
        )
        self._stored_bytes = Gauge(
            "tilefn_stored_result_bytes",
            "Bytes of results kept for later fetching, by namespace.",
            ("namespace",),
            registry=registry,
        )
        self._stored_namespaces: set[str] = set()
        self._graphs_running = Gauge(
            "tilefn_graphs_running",
            "Task graphs this server runs, by namespace.",
            ("namespace",),
            registry=registry,
        )
        self._graphs_ended = Counter(
            "tilefn_graphs",
            "Task graphs that ended on this server, by namespace and final status.",
            ("namespace", "status"),
            registry=registry,
        )
        self._graph_nodes = Counter(
            "tilefn_graph_nodes",
            "Nodes (and mapped nodes' instances) of the graphs that ended, by final state.",
            ("namespace", "status"),
            registry=registry,
        )
        ProcessCollector(registry=registry)
        if pool is not None:
            registry.register(PoolCollector(pool))
        #: The interceptor to give ``grpc.aio.server(interceptors=...)``.
        self.interceptor = RpcMetrics(self.requests, self.latency)

    @contextlib.contextmanager
    def execution(self, namespace: str) -> Iterator[None]:
        """Count an execution of ``namespace`` as in flight; count how a sandbox stopped it."""
        gauge = self._in_flight.labels(namespace)
        gauge.inc()
        try:
            yield
        except BaseException as exc:
            self._count_violation(exc)
            raise
        finally:
            gauge.dec()

    def result_bytes(self, method: str) -> Counter:
        """The counter of result bytes sent by ``method``; ``.inc(n)`` it per piece."""
        return self._result_bytes.labels(method)

    def graph_started(self, namespace: str) -> None:
        self._graphs_running.labels(namespace).inc()

    def graph_ended(self, namespace: str, status: str, nodes: dict[str, int]) -> None:
        """A graph of ``namespace`` ended with ``status``; ``nodes``: node state -> count."""
        self._graphs_running.labels(namespace).dec()
        self._graphs_ended.labels(namespace, status).inc()
        for state, count in nodes.items():
            self._graph_nodes.labels(namespace, state).inc(count)

    def set_queue_depth(self, namespace: str, depth: int) -> None:
        """Executions of ``namespace`` waiting for admission (call on every change)."""
        self._queue_depth.labels(namespace).set(depth)

    def set_stored_bytes(self, namespace: str, nbytes: int) -> None:
        """Bytes of stored results ``namespace`` holds (call on every change)."""
        self._stored_bytes.labels(namespace).set(nbytes)
        self._stored_namespaces.add(namespace)

    def set_all_stored_bytes(self, totals: dict[str, int]) -> None:
        """Every namespace's stored bytes at once (namespaces no longer listed drop to 0)."""
        for namespace in self._stored_namespaces - totals.keys():
            self._stored_bytes.labels(namespace).set(0)
        for namespace, nbytes in totals.items():
            self._stored_bytes.labels(namespace).set(nbytes)
        self._stored_namespaces = set(totals)

    def _count_violation(self, exc: BaseException) -> None:
        # Only errors with a known reason: to_service_error logs anything else as internal,
        # and the status mapping does that once already.
        if isinstance(exc, ServiceError | SandboxError):
            reason = to_service_error(exc).reason
            if reason in VIOLATIONS:
                self._violations.labels(error_pb2.ErrorReason.Name(reason)).inc()


class PoolCollector(Collector):
    """Worker counts by state, read from the pool at scrape time (on the loop)."""

    def __init__(self, pool: WorkerPool) -> None:
        self._pool = pool

    def collect(self) -> Iterable[Metric]:
        stats = self._pool.stats()
        workers = GaugeMetricFamily(
            "tilefn_workers",
            "Worker processes by state: ready (fresh, any namespace), idle (kept for one "
            "namespace), busy (leased to a task), starting.",
            labels=("state",),
        )
        workers.add_metric(("ready",), stats.fresh)
        workers.add_metric(("idle",), stats.reusable)
        workers.add_metric(("busy",), stats.leased)
        workers.add_metric(("starting",), stats.starting)
        yield workers
        yield GaugeMetricFamily(
            "tilefn_workers_max",
            "Workers that may run tasks at once (--max-workers).",
            value=self._pool.config.max_workers,
        )


class _Site:
    """One method's latency child and its request counters by code, resolved once."""

    __slots__ = ("_codes", "_latency", "_method", "_requests")

    def __init__(self, method: str, requests: Counter, latency: Histogram) -> None:
        self._method = method
        self._requests = requests
        self._latency = latency.labels(method)
        self._codes: dict[grpc.StatusCode, Counter] = {}

    def finish(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        started: float,
        error: BaseException | None,
    ) -> None:
        self._latency.observe(time.perf_counter() - started)
        # Our handlers end failures with abort_with_status or set_code: the context knows.
        code: grpc.StatusCode | None = context.code()
        if code is None:
            if error is None:
                code = OK
            elif isinstance(error, asyncio.CancelledError | GeneratorExit) or context.cancelled():
                code = grpc.StatusCode.CANCELLED  # GeneratorExit: grpc stopped reading a stream
            else:  # grpc answers an escaped exception with UNKNOWN
                code = grpc.StatusCode.UNKNOWN
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes[code] = self._requests.labels(self._method, code.name)
        counter.inc()


Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class RpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Counts and times unary-unary and unary-stream calls; other kinds pass through as they are.

    Wrapped handlers are cached per method, so a call costs one extra coroutine (or generator
    hop per response), a clock read, a histogram observation and a counter increment.
    """

    def __init__(self, requests: Counter, latency: Histogram) -> None:
        self._requests = requests
        self._latency = latency
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(  # type: ignore[override]  # None: no such method
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: nothing cached for names callers make up
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[method] = (handler, self._wrap(method, handler))
        return cached[1]

    def _wrap(self, method: str, handler: Handler) -> Handler:
        site = _Site(method.rpartition("/")[2], self._requests, self._latency)
        if handler.unary_unary is not None and inspect.iscoroutinefunction(handler.unary_unary):
            return handler._replace(unary_unary=_timed(site, handler.unary_unary))  # type: ignore[attr-defined,no-any-return]
        behavior = handler.unary_stream
        if behavior is not None and inspect.isasyncgenfunction(behavior):
            return handler._replace(unary_stream=_timed_stream(site, behavior))  # type: ignore[attr-defined,no-any-return]
        if behavior is not None and inspect.iscoroutinefunction(behavior):  # context.write style
            return handler._replace(unary_stream=_timed(site, behavior))  # type: ignore[attr-defined,no-any-return]
        return handler


def _timed(site: _Site, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def timed(request: Any, context: Context) -> Any:
        started, error = time.perf_counter(), None
        try:
            return await behavior(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            site.finish(context, started, error)

    return timed


def _timed_stream(
    site: _Site, behavior: Callable[..., AsyncGenerator[Any, None]]
) -> Callable[..., AsyncGenerator[Any, None]]:
    async def timed(request: Any, context: Context) -> AsyncGenerator[Any, None]:
        started, error = time.perf_counter(), None
        try:  # closed here when grpc stops reading, not later by the loop's finalizer
            async with contextlib.aclosing(behavior(request, context)) as responses:
                async for response in responses:
                    yield response
        except BaseException as exc:
            error = exc
            raise
        finally:
            site.finish(context, started, error)

    return timed


class MetricsEndpoint:
    """``GET /metrics`` in the Prometheus text format, served on the running loop.

    One request per connection; no thread, so nothing can outlive ``close()``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (port 0: any free one); return the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            writer.write(self._respond(head.split(b"\r\n", 1)[0].split()))
            await writer.drain()
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:  # a scraper that hung up, stalled or sent junk
            log.debug("metrics request dropped: %r", exc)
        finally:
            writer.close()

    def _respond(self, request_line: list[bytes]) -> bytes:
        if len(request_line) != 3 or request_line[0] not in (b"GET", b"HEAD"):
            return _http(b"405 Method Not Allowed", b"text/plain", b"GET /metrics\n")
        if request_line[1].split(b"?", 1)[0] not in (b"/metrics", b"/"):
            return _http(b"404 Not Found", b"text/plain", b"GET /metrics\n")
        body = generate_latest(self._registry)
        return _http(b"200 OK", CONTENT_TYPE_LATEST.encode(), body, head=request_line[0] == b"HEAD")


def _http(status: bytes, content_type: bytes, body: bytes, *, head: bool = False) -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 " + status + b"\r\n",
            b"Content-Type: " + content_type + b"\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: close\r\n\r\n",
            b"" if head else body,
        )
    )
