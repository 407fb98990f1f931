import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tilefn.v1 import udf_pb2 as _udf_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_QUEUED: _ClassVar[TaskStatus]
    TASK_STATUS_RUNNING: _ClassVar[TaskStatus]
    TASK_STATUS_SUCCEEDED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELLED: _ClassVar[TaskStatus]
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_QUEUED: TaskStatus
TASK_STATUS_RUNNING: TaskStatus
TASK_STATUS_SUCCEEDED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_CANCELLED: TaskStatus

class Task(_message.Message):
    __slots__ = ("task_id", "namespace", "method", "udf", "arrays", "status", "created_at", "started_at", "finished_at", "cpu_time", "peak_memory_bytes", "result_bytes", "rows", "error_reason", "error_message", "result_stored", "result_expires_at", "replica")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    UDF_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_STORED_FIELD_NUMBER: _ClassVar[int]
    RESULT_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    namespace: str
    method: str
    udf: str
    arrays: _containers.RepeatedScalarFieldContainer[str]
    status: TaskStatus
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    cpu_time: _duration_pb2.Duration
    peak_memory_bytes: int
    result_bytes: int
    rows: int
    error_reason: str
    error_message: str
    result_stored: bool
    result_expires_at: _timestamp_pb2.Timestamp
    replica: str
    def __init__(self, task_id: _Optional[str] = ..., namespace: _Optional[str] = ..., method: _Optional[str] = ..., udf: _Optional[str] = ..., arrays: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cpu_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., peak_memory_bytes: _Optional[int] = ..., result_bytes: _Optional[int] = ..., rows: _Optional[int] = ..., error_reason: _Optional[str] = ..., error_message: _Optional[str] = ..., result_stored: _Optional[bool] = ..., result_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replica: _Optional[str] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("status", "created_after", "udf", "namespace", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    UDF_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: TaskStatus
    created_after: _timestamp_pb2.Timestamp
    udf: str
    namespace: str
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[_Union[TaskStatus, str]] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., udf: _Optional[str] = ..., namespace: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class FetchResultRequest(_message.Message):
    __slots__ = ("task_id", "max_chunk_bytes")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    max_chunk_bytes: int
    def __init__(self, task_id: _Optional[str] = ..., max_chunk_bytes: _Optional[int] = ...) -> None: ...

class GetTaskLogsRequest(_message.Message):
    __slots__ = ("task_id", "follow")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    follow: bool
    def __init__(self, task_id: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class CallUdfResponse(_message.Message):
    __slots__ = ("task_id", "ipc", "logs", "summary")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    IPC_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    ipc: bytes
    logs: TaskLogs
    summary: ExecutionSummary
    def __init__(self, task_id: _Optional[str] = ..., ipc: _Optional[bytes] = ..., logs: _Optional[_Union[TaskLogs, _Mapping]] = ..., summary: _Optional[_Union[ExecutionSummary, _Mapping]] = ...) -> None: ...

class ExecuteUdfRequest(_message.Message):
    __slots__ = ("udf", "args", "kwargs", "arrays", "options")
    class KwargsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _udf_pb2.Argument
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_udf_pb2.Argument, _Mapping]] = ...) -> None: ...
    UDF_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    udf: _udf_pb2.UdfSpec
    args: _containers.RepeatedCompositeFieldContainer[_udf_pb2.Argument]
    kwargs: _containers.MessageMap[str, _udf_pb2.Argument]
    arrays: _containers.RepeatedCompositeFieldContainer[_udf_pb2.ArrayInput]
    options: _udf_pb2.ExecutionOptions
    def __init__(self, udf: _Optional[_Union[_udf_pb2.UdfSpec, _Mapping]] = ..., args: _Optional[_Iterable[_Union[_udf_pb2.Argument, _Mapping]]] = ..., kwargs: _Optional[_Mapping[str, _udf_pb2.Argument]] = ..., arrays: _Optional[_Iterable[_Union[_udf_pb2.ArrayInput, _Mapping]]] = ..., options: _Optional[_Union[_udf_pb2.ExecutionOptions, _Mapping]] = ...) -> None: ...

class ExecuteUdfResponse(_message.Message):
    __slots__ = ("task", "ipc", "summary", "logs")
    TASK_FIELD_NUMBER: _ClassVar[int]
    IPC_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    task: TaskInfo
    ipc: bytes
    summary: ExecutionSummary
    logs: TaskLogs
    def __init__(self, task: _Optional[_Union[TaskInfo, _Mapping]] = ..., ipc: _Optional[bytes] = ..., summary: _Optional[_Union[ExecutionSummary, _Mapping]] = ..., logs: _Optional[_Union[TaskLogs, _Mapping]] = ...) -> None: ...

class TaskLogs(_message.Message):
    __slots__ = ("text", "total_bytes", "truncated")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    text: str
    total_bytes: int
    truncated: bool
    def __init__(self, text: _Optional[str] = ..., total_bytes: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class ExecutionSummary(_message.Message):
    __slots__ = ("task_id", "rows", "batches", "ipc_bytes", "wall_time", "cpu_time", "peak_memory_bytes")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    IPC_BYTES_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    rows: int
    batches: int
    ipc_bytes: int
    wall_time: _duration_pb2.Duration
    cpu_time: _duration_pb2.Duration
    peak_memory_bytes: int
    def __init__(self, task_id: _Optional[str] = ..., rows: _Optional[int] = ..., batches: _Optional[int] = ..., ipc_bytes: _Optional[int] = ..., wall_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cpu_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., peak_memory_bytes: _Optional[int] = ...) -> None: ...
