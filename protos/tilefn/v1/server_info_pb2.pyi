import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetServerInfoResponse(_message.Message):
    __slots__ = ("version", "python_version", "sandbox", "limits", "replica")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    version: str
    python_version: str
    sandbox: SandboxInfo
    limits: ServerLimits
    replica: str
    def __init__(self, version: _Optional[str] = ..., python_version: _Optional[str] = ..., sandbox: _Optional[_Union[SandboxInfo, _Mapping]] = ..., limits: _Optional[_Union[ServerLimits, _Mapping]] = ..., replica: _Optional[str] = ...) -> None: ...

class SandboxInfo(_message.Message):
    __slots__ = ("mode", "active_layers", "unavailable_layers", "max_tasks_per_worker")
    MODE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    MAX_TASKS_PER_WORKER_FIELD_NUMBER: _ClassVar[int]
    mode: str
    active_layers: _containers.RepeatedScalarFieldContainer[str]
    unavailable_layers: _containers.RepeatedScalarFieldContainer[str]
    max_tasks_per_worker: int
    def __init__(self, mode: _Optional[str] = ..., active_layers: _Optional[_Iterable[str]] = ..., unavailable_layers: _Optional[_Iterable[str]] = ..., max_tasks_per_worker: _Optional[int] = ...) -> None: ...

class ServerLimits(_message.Message):
    __slots__ = ("max_request_bytes", "max_result_bytes", "default_timeout", "max_timeout", "min_chunk_bytes", "max_chunk_bytes", "array_memory_budget_bytes", "worker_memory_bytes", "default_log_bytes", "max_log_bytes", "max_unary_result_bytes", "max_running", "max_running_per_namespace", "max_queued", "max_queued_per_namespace")
    MAX_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MIN_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    ARRAY_MEMORY_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    WORKER_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LOG_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_LOG_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_UNARY_RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_PER_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_PER_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    max_request_bytes: int
    max_result_bytes: int
    default_timeout: _duration_pb2.Duration
    max_timeout: _duration_pb2.Duration
    min_chunk_bytes: int
    max_chunk_bytes: int
    array_memory_budget_bytes: int
    worker_memory_bytes: int
    default_log_bytes: int
    max_log_bytes: int
    max_unary_result_bytes: int
    max_running: int
    max_running_per_namespace: int
    max_queued: int
    max_queued_per_namespace: int
    def __init__(self, max_request_bytes: _Optional[int] = ..., max_result_bytes: _Optional[int] = ..., default_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_chunk_bytes: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ..., array_memory_budget_bytes: _Optional[int] = ..., worker_memory_bytes: _Optional[int] = ..., default_log_bytes: _Optional[int] = ..., max_log_bytes: _Optional[int] = ..., max_unary_result_bytes: _Optional[int] = ..., max_running: _Optional[int] = ..., max_running_per_namespace: _Optional[int] = ..., max_queued: _Optional[int] = ..., max_queued_per_namespace: _Optional[int] = ...) -> None: ...
