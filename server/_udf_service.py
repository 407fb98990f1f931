"""UdfService: run a UDF in a leased worker and stream its Arrow result."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from hashlib import sha256
from typing import Any

import grpc

from tilefn.sandbox import LogPart, TaskLogs, TaskSummary, WorkerPool
from tilefn.v1 import udf_service_pb2 as pb

from ._admission import Admission
from ._arrays import ArrayCatalog
from ._auth import ArrayAccess, Principal
from ._config import ServerConfig
from ._graph_run import NodeOutcome
from ._identity import Call, Identity
from ._logging import bind_task
from ._metrics import Metrics
from ._request import Execution, check_size, plan_execution, stored_refs
from ._results import ResultSink, read_whole
from ._staging import StagedArrays
from ._status import (
    TASK_ID_KEY,
    R,
    ServiceError,
    status_mapped,
    to_service_error,
    unary_status_mapped,
)
from ._store import UdfVersion
from ._task_service import TaskQueries, task_message
from ._times import duration

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["UdfService"].full_name
#: Field 2 (``ipc``), wire type 2 (length-delimited), of ExecuteUdfResponse.
IPC_TAG = bytes([2 << 3 | 2])
#: Code up to this size is hashed on the loop (~0.1 ms); larger pickles in a thread.
INLINE_HASH_BYTES = 256 << 10


class UdfService:
    """Serves tilefn.v1.UdfService's execution methods (task queries: ``_task_service``)."""

    def __init__(
        self,
        config: ServerConfig,
        pool: WorkerPool,
        catalog: ArrayCatalog,
        identity: Identity,
        *,
        admission: Admission,
        metrics: Metrics,
    ) -> None:
        self._config = config
        self._pool = pool
        self._catalog = catalog
        self._identity = identity
        self._tasks = identity.tasks
        self._submitted: set[asyncio.Task[None]] = set()
        self._admission = admission
        self._metrics = metrics
        self._streamed = metrics.result_bytes("ExecuteUdf")
        self._replied = metrics.result_bytes("CallUdf")
        self.draining = False

    @status_mapped
    async def ExecuteUdf(
        self, request: pb.ExecuteUdfRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ExecuteUdfResponse | bytes]:
        """Responses are messages, or the wire bytes of an ``ipc`` one (see ``add_to_server``)."""
        call = self._begin("ExecuteUdf", context)
        with self._identity.recorded(call):
            execution = await self._plan(call, request, asyncio.current_task())
            yield pb.ExecuteUdfResponse(task=pb.TaskInfo(task_id=call.task_id))
            async for item in self._execute(execution, request, call, execution.max_result_bytes):
                if isinstance(item, TaskSummary):
                    yield pb.ExecuteUdfResponse(summary=_summary(call.task_id, item))
                elif isinstance(item, TaskLogs):
                    yield pb.ExecuteUdfResponse(logs=_logs(item))
                else:
                    yield ipc_response(item)
                    self._streamed.inc(len(item))

    @unary_status_mapped
    async def CallUdf(
        self, request: pb.ExecuteUdfRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CallUdfResponse:
        call = self._begin("CallUdf", context)
        with self._identity.recorded(call):
            return await self._call(call, request)

    async def _call(self, call: Call, request: pb.ExecuteUdfRequest) -> pb.CallUdfResponse:
        execution = await self._plan(call, request, asyncio.current_task())
        limit = min(execution.max_result_bytes, self._config.max_unary_result_bytes)
        reply, pieces = pb.CallUdfResponse(task_id=call.task_id), []
        try:
            async for item in self._execute(execution, request, call, limit):
                if isinstance(item, TaskSummary):
                    reply.summary.CopyFrom(_summary(call.task_id, item))
                elif isinstance(item, TaskLogs):
                    reply.logs.CopyFrom(_logs(item))
                else:
                    pieces.append(item)
        except Exception as exc:
            error = to_service_error(exc)
            error.logs = reply.logs if reply.HasField("logs") else None
            raise error from None
        reply.ipc = b"".join(pieces)
        self._replied.inc(len(reply.ipc))
        return reply

    @unary_status_mapped
    async def SubmitUdf(
        self, request: pb.ExecuteUdfRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Task:
        """Validate now, run in the background, store the result."""
        call = self._begin("SubmitUdf", context)
        with self._identity.recorded(call):
            self._admission.check(call.principal.namespace)  # refuse now, not in the background
            execution = await self._plan(call, request, None, store=True)
            call.handed_off = True  # valid: the background run records the rest
        runner = asyncio.get_running_loop().create_task(self._background(call, execution, request))
        self._tasks.attach(call.task_id, runner)
        self._submitted.add(runner)
        runner.add_done_callback(self._submitted.discard)
        record = self._tasks.get(call.principal, call.task_id)
        # In the store before its id is given out: the next call may reach another replica.
        await asyncio.to_thread(self._identity.writer.flush)
        return task_message(record)

    async def _background(
        self, call: Call, execution: Execution, request: pb.ExecuteUdfRequest
    ) -> None:
        call.handed_off = False
        with contextlib.suppress(Exception), self._identity.recorded(call):
            async for _ in self._execute(execution, request, call, execution.max_result_bytes):
                pass

    async def run_node(
        self,
        principal: Principal,
        request: pb.ExecuteUdfRequest,
        task_id: str,
        on_started: Callable[[], None],
    ) -> NodeOutcome:
        """Run a graph's node as a task of ``principal`` whose result is stored; raises
        ServiceError when it fails (CancelledError when cancelled: the task records it).
        Nodes still start while the server drains: the graphs stop at the end of the grace."""
        call = Call(task_id, "GraphNode", principal, on_started=on_started)
        bind_task(task_id, principal.namespace)
        with self._identity.recorded(call):
            execution = await self._plan(call, request, asyncio.current_task(), store=True)
            async for _ in self._execute(execution, request, call, execution.max_result_bytes):
                pass
        written = call.sink.bytes if call.sink is not None else 0
        return NodeOutcome(written, call.summary.items if call.summary is not None else None)

    async def drain(self, grace: float) -> None:
        """Give running tasks (calls and submitted ones) ``grace`` seconds, then cancel and
        record the rest."""
        await self._tasks.wait_all(grace)
        await self._tasks.cancel_all("the server shut down before the task finished")

    def _begin(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Call:
        """Name the task (in the trailing metadata too) and authenticate the caller."""
        task_id = uuid.uuid4().hex
        context.set_trailing_metadata(((TASK_ID_KEY, task_id),))
        if self.draining:
            raise ServiceError(R.ERROR_REASON_SHUTTING_DOWN, "the server is shutting down")
        principal = self._identity.auth.principal(context)
        bind_task(task_id, principal.namespace)
        principal.require("run")
        return Call(task_id, method, principal)

    async def _plan(
        self,
        call: Call,
        request: pb.ExecuteUdfRequest,
        runner: asyncio.Task[Any] | None,
        *,
        store: bool = False,
    ) -> Execution:
        """Validate the request (resolving a registered UDF the caller may run and results
        passed by reference), then create its task, QUEUED."""
        registered = await self._permitted(call.principal, request)
        stored = await self._stored_results(call, request)
        execution = plan_execution(request, self._config, registered, stored)
        call.udf = registered.ref if registered else await _digest(execution.task.udf)
        store = store or request.options.store_result
        ttl = self._tasks.ttl(request.options.result_ttl.ToNanoseconds() / 1e9) if store else 0.0
        record = self._tasks.new_record(call.task_id, call.principal, call.method, call.udf, ttl)
        self._tasks.create(record, runner)
        call.tracked = True  # from here on, however the call ends, the task gets a final state
        if store:
            settings = self._tasks.settings
            call.sink = await ResultSink.open(
                self._identity.totals, settings.storage, record, settings.quota_bytes
            )
        return execution

    async def _permitted(
        self, principal: Principal, request: pb.ExecuteUdfRequest
    ) -> UdfVersion | None:
        """Check the caller's scopes for the request; resolve a registered UDF they may run."""
        if (
            request.arrays
            or any(a.HasField("array") for a in request.args)
            or any(a.HasField("array") for a in request.kwargs.values())
        ):
            principal.require("read_arrays")
        if request.udf.WhichOneof("kind") != "registered":
            return None
        return await asyncio.to_thread(
            self._identity.registry.resolve, principal, request.udf.registered
        )

    async def check(self, principal: Principal, request: pb.ExecuteUdfRequest) -> None:
        """Validate a request as ExecuteUdf would, without running it (a graph's nodes at
        submission, their references to other nodes and stored results left empty)."""
        registered = await self._permitted(principal, request)
        plan_execution(request, self._config, registered, {})

    async def _stored_results(self, call: Call, request: pb.ExecuteUdfRequest) -> dict[str, bytes]:
        """The bytes of the stored results the arguments pass by reference, read together
        within one budget (``array_memory_budget``)."""
        refs = stored_refs(request)
        if not refs:
            return {}
        check_size(request, self._config)  # before reading anything for it

        def load() -> dict[str, bytes]:
            budget, found = self._config.array_memory_budget, {}
            storage = self._tasks.settings.storage
            for task_id in sorted(refs):
                task = self._tasks.settled(call.principal, task_id)
                found[task_id] = read_whole(storage, task, budget)
                budget -= len(found[task_id])
            return found

        return await asyncio.to_thread(load)

    async def _execute(
        self, execution: Execution, request: pb.ExecuteUdfRequest, call: Call, limit: int
    ) -> AsyncIterator[bytes | TaskLogs | TaskSummary]:
        """Run the task; yield its IPC pieces (at most ``limit`` bytes), logs and summary."""
        log.debug("task %s started", call.task_id)
        access = ArrayAccess(self._identity.store, call.principal)
        staged = StagedArrays(self._catalog, self._config, access)
        call.arrays = staged.names
        try:
            with self._metrics.execution(call.principal.namespace):
                async for item in self._run(execution, request, staged, call, limit):
                    if isinstance(item, LogPart):  # for followers of the task's logs only
                        self._tasks.log_part(call.task_id, item)
                        continue
                    if isinstance(item, bytes):
                        if call.sink is not None:
                            await call.sink.write(item)
                    elif isinstance(item, TaskSummary):
                        call.summary = item
                    else:
                        call.logs = item
                    yield item
                if call.sink is not None:  # the whole result was written
                    await call.sink.finish()
        except TimeoutError:
            raise ServiceError(
                R.ERROR_REASON_TIMEOUT,
                f"the UDF ran longer than its timeout of {execution.timeout:g} s and was stopped",
                timeout_seconds=f"{execution.timeout:g}",
            ) from None
        finally:
            staged.close()
            log.debug("task %s ended", call.task_id)

    async def _run(
        self,
        execution: Execution,
        request: pb.ExecuteUdfRequest,
        staged: StagedArrays,
        call: Call,
        limit: int,
    ) -> AsyncIterator[bytes | LogPart | TaskLogs | TaskSummary]:
        """Be admitted, read the arrays, lease a worker, relay its frames; TimeoutError past
        the deadline.

        The arrays are read inside the slot, so that server memory for staged reads is bounded
        by ``max_running``, not by the queue; the timeout starts once admitted (waiting is
        bounded by the queue limits and the client's deadline, not by the UDF's timeout).
        """
        async with self._admission.slot(call.principal.namespace):
            deadline = asyncio.get_running_loop().time() + execution.timeout
            async with asyncio.timeout_at(deadline):  # reading the arrays counts too
                task = await staged.stage(execution.task, request)
            sent = 0
            custom_memory = execution.memory_bytes != 0
            # Workers are reused only within one namespace (the caller's own).
            async with self._pool.lease(call.principal.namespace, fresh=custom_memory) as worker:
                self._tasks.started(call.task_id)
                if call.on_started is not None:
                    call.on_started()
                await self._pool.limit(worker, execution.memory_bytes)
                frames = worker.run(task, staged.provide)
                # The deadline covers the worker, not time spent waiting on a slow reader.
                while (item := await _next_before(frames, deadline)) is not None:
                    if isinstance(item, bytes):
                        sent += len(item)
                        if sent > limit:
                            raise _too_large(limit)
                    yield item


async def _digest(code: bytes) -> str:
    """``sha256:<hex>`` of a UDF's code; a large pickle is hashed off the event loop."""
    if len(code) < INLINE_HASH_BYTES:
        return f"sha256:{sha256(code).hexdigest()}"
    return f"sha256:{await asyncio.to_thread(lambda: sha256(code).hexdigest())}"


def add_to_server(service: UdfService, queries: TaskQueries, server: grpc.aio.Server) -> None:
    """Register the service like the generated ``add_UdfServiceServicer_to_server``, except that
    ExecuteUdf's serializer passes prebuilt wire bytes through (result pieces skip protobuf) and
    the task queries are served by their own object."""
    requests = pb.ExecuteUdfRequest.FromString
    handlers = {
        "ExecuteUdf": grpc.unary_stream_rpc_method_handler(
            service.ExecuteUdf, request_deserializer=requests, response_serializer=_serialize
        ),
        "CallUdf": grpc.unary_unary_rpc_method_handler(
            service.CallUdf,
            request_deserializer=requests,
            response_serializer=pb.CallUdfResponse.SerializeToString,
        ),
        "SubmitUdf": grpc.unary_unary_rpc_method_handler(
            service.SubmitUdf,
            request_deserializer=requests,
            response_serializer=pb.Task.SerializeToString,
        ),
        **queries.handlers(),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)  # type: ignore[attr-defined]


def _serialize(response: pb.ExecuteUdfResponse | bytes) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def ipc_response(piece: bytes) -> bytes:
    """The wire bytes of ``ExecuteUdfResponse(ipc=piece)``, with one copy of ``piece``.

    Building the message object and serializing it would copy a 1 MiB piece three times.
    """
    size, prefix = len(piece), bytearray(IPC_TAG)
    while size > 0x7F:  # base-128 varint, low groups first
        prefix.append(size & 0x7F | 0x80)
        size >>= 7
    prefix.append(size)
    return bytes(prefix) + piece


async def _next_before(
    frames: AsyncIterator[bytes | LogPart | TaskLogs | TaskSummary], deadline: float
) -> bytes | LogPart | TaskLogs | TaskSummary | None:
    async with asyncio.timeout_at(deadline):
        return await anext(frames, None)


def _too_large(limit: int) -> ServiceError:
    return ServiceError(
        R.ERROR_REASON_RESULT_TOO_LARGE,
        f"the result grew past {limit} bytes and the UDF was stopped; return less, or raise "
        "max_result_bytes",
        limit_bytes=str(limit),
    )


def _summary(task_id: str, item: TaskSummary) -> pb.ExecutionSummary:
    return pb.ExecutionSummary(
        task_id=task_id,
        rows=item.rows,
        batches=item.batches,
        ipc_bytes=item.ipc_bytes,
        wall_time=duration(item.wall_seconds),
        cpu_time=duration(item.cpu_seconds),
        peak_memory_bytes=item.peak_memory_bytes,
    )


def _logs(item: TaskLogs) -> pb.TaskLogs:
    return pb.TaskLogs(text=item.text, total_bytes=item.total_bytes, truncated=item.truncated)
