"""Build ExecuteUdfRequest messages from Python functions, source text and values."""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import re
import sys
import sysconfig
import threading
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pyarrow as pa

from tilefn import codec
from tilefn.v1 import udf_pb2, udf_service_pb2

from ._arrays import ArrayRead
from ._tasks import StoredResult

#: A string that is a registered UDF's name (source text never looks like this).
REGISTERED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(@\S+)?\Z")
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
COMPRESSION = {
    None: udf_pb2.COMPRESSION_UNSPECIFIED,
    "none": udf_pb2.COMPRESSION_NONE,
    "lz4": udf_pb2.COMPRESSION_LZ4_FRAME,
    "zstd": udf_pb2.COMPRESSION_ZSTD,
}


@dataclass(frozen=True)
class Source:
    """A UDF given as Python source text; ``entry_point`` names the function to call.

    With no entry point, the source must define exactly one top-level function.
    """

    text: str
    entry_point: str = ""


@dataclass(frozen=True)
class Registered:
    """A registered UDF, by name: "namespace/name", "namespace/name@N" or "...@<UTC time>"."""

    name: str


@dataclass(frozen=True)
class Options:
    """Per-call settings; see ``Client.with_options``."""

    #: Seconds the UDF may run (also the call's deadline, plus a margin); None: server default.
    timeout: float | None = None
    #: Arrow buffer compression of the result: None, "none", "lz4" or "zstd".
    compression: str | None = None
    #: Largest piece of the result per response message, in bytes; 0 means the server default.
    max_chunk_bytes: int = 0
    #: The most bytes of Arrow IPC the result may have; 0 means the server's maximum.
    max_result_bytes: int = 0
    #: The most memory the UDF's worker may use, in bytes; 0 means the server's limit.
    memory_bytes: int = 0
    #: The most CPU seconds the UDF may use; None means no limit but the timeout.
    cpu_time: float | None = None
    #: Bytes of the UDF's printed output to keep (the last ones); 0 means the server default.
    max_log_bytes: int = 0
    #: Keep the result on the server (``fetch``, or pass it on with ``StoredResult``); submitted
    #: tasks always keep theirs.
    store_result: bool = False
    #: Seconds a stored result is kept; None means the server default (24 h).
    result_ttl: float | None = None

    def deadline(self) -> float | None:
        """The gRPC deadline: a margin past the UDF timeout so the server's own error wins."""
        return None if self.timeout is None else self.timeout + 5.0


Udf = Callable[..., Any] | str | Source | Registered


def build_request(
    fn: Udf,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    options: Options,
    arrays: Sequence[ArrayRead] = (),
) -> udf_service_pb2.ExecuteUdfRequest:
    """The request running ``fn(*arrays?, *args, **kwargs)`` with ``options``."""
    if options.compression not in COMPRESSION:
        raise ValueError(f"compression must be one of {sorted(filter(None, COMPRESSION))}")
    execution = udf_pb2.ExecutionOptions(
        max_chunk_bytes=options.max_chunk_bytes,
        max_result_bytes=options.max_result_bytes,
        memory_bytes=options.memory_bytes,
        max_log_bytes=options.max_log_bytes,
        compression=COMPRESSION[options.compression],
    )
    if options.timeout is not None:
        execution.timeout.FromTimedelta(timedelta(seconds=options.timeout))
    if options.cpu_time is not None:
        execution.cpu_time.FromTimedelta(timedelta(seconds=options.cpu_time))
    execution.store_result = options.store_result
    if options.result_ttl is not None:
        execution.result_ttl.FromTimedelta(timedelta(seconds=options.result_ttl))
    return udf_service_pb2.ExecuteUdfRequest(
        udf=udf_spec(fn),
        args=[encode_argument(a) for a in args],
        kwargs={name: encode_argument(v) for name, v in kwargs.items()},
        arrays=[a.to_proto() for a in arrays],
        options=execution,
    )


def udf_spec(fn: Udf) -> udf_pb2.UdfSpec:
    """Describe a UDF: a callable is cloudpickled, "namespace/name[@version]" names a
    registered UDF, other text is sent as source."""
    if isinstance(fn, Registered):
        return udf_pb2.UdfSpec(registered=fn.name)
    if isinstance(fn, str) and REGISTERED_NAME.match(fn):
        return udf_pb2.UdfSpec(registered=fn)
    if isinstance(fn, str):
        fn = Source(fn)
    if isinstance(fn, Source):
        return udf_pb2.UdfSpec(source=udf_pb2.SourceUdf(text=fn.text, entry_point=fn.entry_point))
    if not callable(fn):
        raise TypeError(
            f"a UDF must be a callable, source text, Source or Registered, not {type(fn).__name__}"
        )
    return udf_pb2.UdfSpec(pickled=_pickled(fn))


def encode_argument(value: Any) -> udf_pb2.Argument:
    """Encode one argument: Arrow for arrays and tables, JSON for plain data, else a pickle."""
    if isinstance(value, ArrayRead):
        return udf_pb2.Argument(array=value.to_proto())
    if isinstance(value, StoredResult):
        return udf_pb2.Argument(stored_result=value.task_id)
    if _is_arrow_value(value):
        try:
            return udf_pb2.Argument(arrow_ipc=codec.to_ipc(value))
        except codec.CodecError:
            pass  # e.g. an object array of arbitrary items: only a pickle carries it
    if _is_json(value):
        return udf_pb2.Argument(json=json.dumps(value, allow_nan=False))
    return udf_pb2.Argument(pickled=_pickled(value))


def _pickled(value: Any) -> udf_pb2.PickledValue:
    """Cloudpickle a value; code from the caller's own modules travels by value.

    cloudpickle refers to functions of importable modules by name, which only works if the
    server has the module too: true for installed packages, not for the caller's own scripts.
    So the value's module, and the caller's modules its code refers to, go by value.
    """
    local = _local_modules(value)
    with _by_value(local):
        data = cloudpickle.dumps(value)
    return udf_pb2.PickledValue(data=data, python_version=PYTHON_VERSION)


#: How many pickling calls (threads) need each module pickled by value right now: cloudpickle's
#: registry is process-wide, so one thread must not unregister a module another still needs.
_BY_VALUE: collections.Counter[str] = collections.Counter()
_BY_VALUE_LOCK = threading.Lock()


@contextlib.contextmanager
def _by_value(modules: list[types.ModuleType]) -> Iterator[None]:
    with _BY_VALUE_LOCK:
        for module in modules:
            if not _BY_VALUE[module.__name__]:
                cloudpickle.register_pickle_by_value(module)
            _BY_VALUE[module.__name__] += 1
    try:
        yield
    finally:
        with _BY_VALUE_LOCK:
            for module in modules:
                _BY_VALUE[module.__name__] -= 1
                if not _BY_VALUE[module.__name__]:
                    del _BY_VALUE[module.__name__]
                    cloudpickle.unregister_pickle_by_value(module)


def _local_modules(value: Any) -> list[types.ModuleType]:
    """The caller's own modules that ``value`` lives in or that its code reaches through globals."""
    found: dict[str, types.ModuleType] = {}
    pending, seen = [value], set()
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        module = item if isinstance(item, types.ModuleType) else _module_of(item)
        if module is None or not _is_local(module):
            continue
        found[module.__name__] = module
        pending.extend(_referenced_globals(item))
    return list(found.values())


def _module_of(item: Any) -> types.ModuleType | None:
    return sys.modules.get(getattr(item, "__module__", None) or "")


def _referenced_globals(item: Any) -> list[Any]:
    """Functions, classes and modules a function's code (nested code included) names globally
    or holds in its closure."""
    code, namespace = getattr(item, "__code__", None), getattr(item, "__globals__", None)
    if code is None or namespace is None:
        return []
    codes, names = [code], set()
    while codes:
        current = codes.pop()
        names.update(current.co_names)
        codes.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    found = [namespace[n] for n in names if n in namespace]
    found += [_cell_value(cell) for cell in getattr(item, "__closure__", None) or ()]
    return [value for value in found if _is_code_holder(value)]


def _cell_value(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # a closure variable not assigned yet
        return None


def _is_code_holder(value: Any) -> bool:
    return isinstance(value, types.FunctionType | types.ModuleType | type)


def _is_local(module: types.ModuleType) -> bool:
    """True for a module of the caller's own (not installed, not the standard library)."""
    path = getattr(module, "__file__", None)
    if not path or module.__name__.split(".")[0] in ("__main__", "tilefn"):
        return False
    return _is_local_file(path)


@functools.cache
def _is_local_file(path: str) -> bool:
    resolved = str(Path(path).resolve())
    return not any(resolved.startswith(prefix) for prefix in _installed_prefixes())


@functools.cache
def _installed_prefixes() -> tuple[str, ...]:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    paths = {sysconfig.get_path(name) for name in names}
    return tuple(str(Path(p).resolve()) + os.sep for p in paths if p)


def _is_arrow_value(value: Any) -> bool:
    if isinstance(value, np.ndarray | pa.Table | pa.RecordBatch):
        return True
    return type(value).__module__.startswith("pandas") and type(value).__name__ == "DataFrame"


def _is_json(value: Any, depth: int = 0) -> bool:
    """True for values JSON carries without loss (tuples, NaN and big ints are not)."""
    if value is None or isinstance(value, bool | str):
        return True
    check = _JSON_CHECKS.get(type(value))
    return depth <= 64 and check is not None and check(value, depth + 1)


_JSON_CHECKS: dict[type, Callable[[Any, int], bool]] = {
    int: lambda v, _: -(2**63) <= v < 2**64,
    float: lambda v, _: bool(np.isfinite(v)),
    list: lambda v, d: all(_is_json(x, d) for x in v),
    dict: lambda v, d: all(type(k) is str and _is_json(x, d) for k, x in v.items()),
}
