"""Validate an ExecuteUdfRequest and turn it into a worker task, without decoding untrusted bytes.

The server only checks shapes, sizes and options here; UDF bytes and argument payloads stay
opaque until a sandboxed worker decodes them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

from tilefn.sandbox import ArgSpec, TaskSpec, UdfKind
from tilefn.v1 import udf_pb2, udf_service_pb2

from ._config import DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, ServerConfig
from ._status import R, ServiceError
from ._store import UdfVersion

SERVER_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
COMPRESSION: dict[int, str | None] = {
    udf_pb2.COMPRESSION_UNSPECIFIED: None,
    udf_pb2.COMPRESSION_NONE: None,
    udf_pb2.COMPRESSION_LZ4_FRAME: "lz4",
    udf_pb2.COMPRESSION_ZSTD: "zstd",
}


@dataclass(frozen=True)
class Execution:
    """A validated request: what to send the worker and how long it may take."""

    task: TaskSpec
    timeout: float
    max_result_bytes: int
    memory_bytes: int


def check_size(request: udf_service_pb2.ExecuteUdfRequest, config: ServerConfig) -> None:
    """REQUEST_TOO_LARGE past the server's request limit."""
    size = request.ByteSize()
    if size > config.max_request_bytes:
        raise ServiceError(
            R.ERROR_REASON_REQUEST_TOO_LARGE,
            f"the request is {size} bytes; this server accepts at most {config.max_request_bytes}",
            size=str(size),
            limit=str(config.max_request_bytes),
        )


def stored_refs(request: udf_service_pb2.ExecuteUdfRequest) -> set[str]:
    """The ids of the tasks whose stored results the arguments pass by reference."""
    found: set[str] = set()
    pending = [*request.args, *request.kwargs.values()]
    while pending:
        arg = pending.pop()
        kind = arg.WhichOneof("kind")
        if kind == "stored_result":
            found.add(arg.stored_result)
        elif kind == "stored_item":
            found.add(arg.stored_item.task_id)
        elif kind == "list":
            pending += arg.list.items
        elif kind == "map":
            pending += [entry.value for entry in arg.map.entries]
    return found


def plan_execution(
    request: udf_service_pb2.ExecuteUdfRequest,
    config: ServerConfig,
    registered: UdfVersion | None = None,
    stored: Mapping[str, bytes] | None = None,
) -> Execution:
    """Check the request; raise ServiceError with the precise reason for anything wrong.

    ``registered`` is the version ``request.udf.registered`` resolved to, ``stored`` the bytes
    of the stored results it passes by reference (see :func:`stored_refs`); the caller finds
    both, because that needs the store and the caller's rights.
    """
    check_size(request, config)
    udf_kind, udf, entry_point = _udf(request.udf, registered)
    options = request.options
    arguments = _Arguments(stored or {})
    return Execution(
        task=TaskSpec(
            udf_kind=udf_kind,
            udf=udf,
            entry_point=entry_point,
            args=tuple(arguments.top(f"args[{i}]", a) for i, a in enumerate(request.args)),
            kwargs=tuple(
                (name, arguments.top(f"kwargs[{name!r}]", a)) for name, a in request.kwargs.items()
            ),
            max_chunk_bytes=_chunk_bytes(options.max_chunk_bytes),
            compression=_compression(options.compression),
            cpu_seconds=_cpu_limit(options, config),
            max_log_bytes=_log_limit(options.max_log_bytes, config),
        ),
        timeout=_timeout(options, config),
        max_result_bytes=_result_limit(options.max_result_bytes, config),
        memory_bytes=_memory_limit(options.memory_bytes, config),
    )


def _udf(spec: udf_pb2.UdfSpec, registered: UdfVersion | None) -> tuple[UdfKind, bytes, str]:
    kind = spec.WhichOneof("kind")
    if kind == "pickled":
        if not spec.pickled.data:
            raise ServiceError(R.ERROR_REASON_UDF_MISSING, "the pickled UDF is empty")
        _check_python(spec.pickled, "the pickled UDF")
        return "pickled", spec.pickled.data, ""
    if kind == "source":
        if not spec.source.text.strip():
            raise ServiceError(R.ERROR_REASON_UDF_MISSING, "the UDF source text is empty")
        entry = spec.source.entry_point
        if entry and not entry.isidentifier():
            raise ServiceError(
                R.ERROR_REASON_UDF_ENTRY_POINT_MISSING,
                f"the entry point {entry[:80]!r} is not a Python identifier",
                entry_point=entry[:80],
            )
        return "source", spec.source.text.encode(), entry
    if kind == "registered" and registered is not None:
        return _registered(registered)
    raise ServiceError(
        R.ERROR_REASON_UDF_MISSING,
        "the request names no UDF: set udf.pickled, source or registered",
    )


def _registered(version: UdfVersion) -> tuple[UdfKind, bytes, str]:
    """A registered UDF runs as its pickle when it has one, else as its source."""
    draft = version.draft
    if draft.pickle:
        pickled = udf_pb2.PickledValue(python_version=draft.python_version)
        _check_python(pickled, f"the registered UDF {version.ref}")
        return "pickled", draft.pickle, ""
    return "source", draft.source.encode(), draft.entry_point


def _check_python(value: udf_pb2.PickledValue, what: str) -> None:
    if value.python_version == SERVER_PYTHON:
        return
    client = value.python_version or "unstated"
    raise ServiceError(
        R.ERROR_REASON_PYTHON_VERSION_MISMATCH,
        f"{what} was made by Python {client}, but workers run Python {SERVER_PYTHON}; pickles only "
        f"load in the same minor version: use Python {SERVER_PYTHON}, or send source text",
        client_python=client[:16],
        server_python=SERVER_PYTHON,
    )


class _Arguments:
    """Turns Arguments into ArgSpecs, with the bytes of the stored results they refer to."""

    def __init__(self, stored: Mapping[str, bytes]) -> None:
        self._stored = stored

    def top(self, label: str, arg: udf_pb2.Argument) -> ArgSpec:
        """A positional or keyword argument (array inputs only here: staging fills them in)."""
        if arg.WhichOneof("kind") == "array":
            return ArgSpec("arrays", b"")
        return self.value(label, arg)

    def value(self, label: str, arg: udf_pb2.Argument) -> ArgSpec:
        kind = arg.WhichOneof("kind")
        if kind == "list":
            items = enumerate(arg.list.items)
            return ArgSpec("list", items=tuple(self.value(f"{label}[{i}]", a) for i, a in items))
        if kind == "map":
            return self._map(label, arg.map)
        if kind == "stored_result":
            return ArgSpec("arrow", self._stored.get(arg.stored_result, b""))
        if kind == "stored_item":
            data = self._stored.get(arg.stored_item.task_id, b"")
            return ArgSpec("item", data, index=arg.stored_item.index)
        return _leaf(label, arg)

    def _map(self, label: str, value: udf_pb2.ArgumentMap) -> ArgSpec:
        keys = [entry.key for entry in value.entries]
        if len(set(keys)) != len(keys):
            raise ServiceError(
                R.ERROR_REASON_ARGUMENT_INVALID,
                f"argument {label} repeats a key",
                argument=label,
            )
        items = tuple(self.value(f"{label}[{e.key!r}]", e.value) for e in value.entries)
        return ArgSpec("dict", items=items, keys=tuple(keys))


def _leaf(label: str, arg: udf_pb2.Argument) -> ArgSpec:
    kind = arg.WhichOneof("kind")
    if kind == "json":
        return ArgSpec("json", arg.json.encode())
    if kind == "arrow_ipc":
        return ArgSpec("arrow", arg.arrow_ipc)
    if kind == "pickled":
        _check_python(arg.pickled, f"argument {label}")
        return ArgSpec("pickled", arg.pickled.data)
    if kind in ("array", "node"):
        what, where = (
            ("an array input", "a top-level argument")
            if kind == "array"
            else ("a node reference", "an argument of a graph node")
        )
        raise ServiceError(
            R.ERROR_REASON_ARGUMENT_INVALID,
            f"argument {label}: {what} can only be {where}",
            argument=label,
        )
    raise ServiceError(
        R.ERROR_REASON_ARGUMENT_INVALID, f"argument {label} has no value", argument=label
    )


#: Listings: the page size when a request sets none, and the largest one allowed.
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def page_size(requested: int) -> int:
    """A listing's page size: ``requested``, or the default for 0; OPTION_INVALID past the max."""
    if requested == 0:
        return DEFAULT_PAGE
    _in_range("page_size", requested, 1, MAX_PAGE)
    return requested


def _in_range(option: str, value: float, low: float, high: float) -> None:
    """Refuse an option outside [low, high] with OPTION_INVALID naming it."""
    if not low <= value <= high:
        raise ServiceError(
            R.ERROR_REASON_OPTION_INVALID,
            f"{option} must be between {low:g} and {high:g}; got {value:g}",
            option=option,
        )


def _chunk_bytes(requested: int) -> int:
    if requested == 0:
        return DEFAULT_CHUNK_BYTES
    _in_range("max_chunk_bytes", requested, MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)
    return requested


def _compression(value: int) -> str | None:
    if value not in COMPRESSION:
        raise ServiceError(
            R.ERROR_REASON_OPTION_INVALID,
            f"unknown compression {value}",
            option="compression",
        )
    return COMPRESSION[value]


def _timeout(options: udf_pb2.ExecutionOptions, config: ServerConfig) -> float:
    if not options.HasField("timeout"):
        return config.default_timeout
    seconds = options.timeout.ToTimedelta().total_seconds()
    _in_range("timeout", seconds, 0, config.max_timeout)
    return seconds or config.default_timeout


def _result_limit(requested: int, config: ServerConfig) -> int:
    _in_range("max_result_bytes", requested, 0, config.max_result_bytes)
    return requested or config.max_result_bytes


def _log_limit(requested: int, config: ServerConfig) -> int:
    _in_range("max_log_bytes", requested, 0, config.max_log_bytes)
    return requested or config.default_log_bytes


def _memory_limit(requested: int, config: ServerConfig) -> int:
    _in_range("memory_bytes", requested, 0, config.pool.worker_memory_bytes)
    return requested


def _cpu_limit(options: udf_pb2.ExecutionOptions, config: ServerConfig) -> float:
    seconds = options.cpu_time.ToTimedelta().total_seconds() if options.HasField("cpu_time") else 0
    _in_range("cpu_time", seconds, 0, config.max_timeout)
    return seconds
