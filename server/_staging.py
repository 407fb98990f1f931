"""Stage an execution's array inputs: read each (off the event loop) and attach it to the task.

Arrays named in ``ExecuteUdfRequest.arrays`` become the UDF's first argument (a dict for one
array, a list of dicts for several, as TileDB Cloud's ``apply`` does); an ``Argument.array``
placeholder becomes a dict in that argument's place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import tiledb

from tilefn.sandbox import ArgSpec, ArrayBatch, ProtocolViolationError, TaskSpec
from tilefn.v1 import udf_pb2, udf_service_pb2

from ._arrays import ArrayCatalog, ArrayRef
from ._auth import ArrayAccess
from ._config import ServerConfig
from ._ranges import plan_read
from ._reader import ArrayPayload, Budget, read, read_batches
from ._status import R, ServiceError

MAX_COLUMNS = 250


class StagedArrays:
    """The payloads of one execution; closed (fds released) once the task is over."""

    def __init__(self, catalog: ArrayCatalog, config: ServerConfig, access: ArrayAccess) -> None:
        self._catalog = catalog
        self._config = config
        self._access = access
        #: The names of the arrays read, in order (for the audit record).
        self.names: list[str] = []
        self._budget = Budget(config.array_memory_budget)
        self.payloads: list[ArrayPayload] = []
        self.fds: list[int] = []
        self.streams: list[BatchStream] = []

    async def stage(self, task: TaskSpec, request: udf_service_pb2.ExecuteUdfRequest) -> TaskSpec:
        """Read every array input and return the task with its "arrays" arguments filled in."""
        args = list(task.args)
        for i, argument in enumerate(request.args):
            if argument.HasField("array"):
                args[i] = await self._group([argument.array], as_list=False)
        kwargs = list(task.kwargs)
        for i, (name, _) in enumerate(kwargs):
            if request.kwargs[name].HasField("array"):
                kwargs[i] = (name, await self._group([request.kwargs[name].array], as_list=False))
        if request.arrays:
            args.insert(0, await self._group(list(request.arrays), as_list=len(request.arrays) > 1))
        if len(self.fds) > MAX_COLUMNS:
            raise ServiceError(
                R.ERROR_REASON_OPTION_INVALID,
                f"the request reads {len(self.fds)} columns; at most {MAX_COLUMNS} are allowed",
                option="attributes",
            )
        return dataclasses.replace(
            task, args=tuple(args), kwargs=tuple(kwargs), fds=tuple(self.fds)
        )

    async def _group(self, inputs: list[udf_pb2.ArrayInput], *, as_list: bool) -> ArgSpec:
        descriptors: list[dict[str, Any]] = []
        for spec in inputs:
            if spec.batched:
                stream = await _in_thread(
                    functools.partial(self._open_stream, spec), BatchStream.close
                )
                descriptors.append({"stream": len(self.streams), "array": spec.uri})
                self.streams.append(stream)
                continue
            payload = await _in_thread(functools.partial(self._read, spec), ArrayPayload.close)
            self.payloads.append(payload)
            descriptors.append(payload.descriptor(len(self.fds)))
            self.fds.extend(payload.fds())
        return ArgSpec("arrays", json.dumps({"arrays": descriptors, "as_list": as_list}).encode())

    def _resolve(self, uri: str) -> ArrayRef:
        """The array, if the caller may read it (a forbidden one is reported as missing)."""
        ref = self._catalog.resolve(uri)
        self._access.check(ref)
        self.names.append(ref.name)
        return ref

    def _read(self, spec: udf_pb2.ArrayInput) -> ArrayPayload:
        ref = self._resolve(spec.uri)
        with self._catalog.open(ref) as array:
            plan = plan_read(ref, array.schema, spec)
            return read(array, plan, self._budget, self._config.read_block_bytes)

    def _open_stream(self, spec: udf_pb2.ArrayInput) -> BatchStream:
        ref = self._resolve(spec.uri)
        array = self._catalog.open(ref)
        try:
            plan = plan_read(ref, array.schema, spec)
        except BaseException:
            array.close()
            raise
        batches = read_batches(
            array, plan, self._config.read_block_bytes, self._config.array_memory_budget
        )
        return BatchStream(array, batches)

    async def provide(self, stream: int) -> ArrayBatch | None:
        """The next block of batched stream ``stream`` (a worker asked for it)."""
        if not 0 <= stream < len(self.streams):
            raise ProtocolViolationError(f"the worker asked for unknown array stream {stream}")
        payload = await _in_thread(self.streams[stream].next, _close_payload)
        if payload is None:
            return None
        descriptor = json.dumps(payload.descriptor(0)).encode()
        return ArrayBatch(descriptor, tuple(payload.fds()), payload.close)

    def close(self) -> None:
        """Release every memfd and open array; idempotent."""
        for payload in self.payloads:
            payload.close()
        for stream in self.streams:
            stream.close()
        self.payloads.clear()
        self.streams.clear()
        self.fds.clear()


class BatchStream:
    """An open array and the lazy generator of its blocks."""

    def __init__(self, array: tiledb.Array, batches: Iterator[ArrayPayload]) -> None:
        self._array = array
        self._batches = batches

    def next(self) -> ArrayPayload | None:
        """Read the next block (blocking); None at the end."""
        return next(self._batches, None)

    def close(self) -> None:
        self._batches.close()  # type: ignore[attr-defined]
        self._array.close()


def _close_payload(payload: ArrayPayload | None) -> None:
    if payload is not None:
        payload.close()


async def _in_thread(work: Callable[[], Any], discard: Callable[[Any], None]) -> Any:
    """Run blocking storage work in a daemon thread; discard its result if nobody waits anymore.

    A daemon thread (not the loop's executor) so that a read stuck in storage can never keep
    the server from shutting down; the call itself gives up at its deadline.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def run() -> None:
        try:
            outcome: tuple[bool, Any] = (True, work())
        except BaseException as exc:  # carried to the waiting coroutine
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(_deliver, future, outcome, discard)
        except RuntimeError:  # the loop is closed: the server is gone
            if outcome[0]:
                discard(outcome[1])

    threading.Thread(target=run, name="tilefn-read", daemon=True).start()
    return await future


def _deliver(
    future: asyncio.Future[Any], outcome: tuple[bool, Any], discard: Callable[[Any], None]
) -> None:
    ok, value = outcome
    if future.cancelled():
        if ok:
            discard(value)
    elif ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def make_catalog(config: ServerConfig) -> ArrayCatalog:
    """The catalog, with a TileDB context built from the server's settings."""
    settings = tiledb.Config(path=config.tiledb_config) if config.tiledb_config else tiledb.Config()
    settings["py.init_buffer_bytes"] = str(max(config.read_block_bytes // 4, 1 << 20))
    return ArrayCatalog(
        config.data_root, allow_raw_uris=config.allow_raw_uris, ctx=tiledb.Ctx(settings)
    )
