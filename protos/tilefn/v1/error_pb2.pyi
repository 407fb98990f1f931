from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_UDF_MISSING: _ClassVar[ErrorReason]
    ERROR_REASON_UDF_SOURCE_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_UDF_ENTRY_POINT_MISSING: _ClassVar[ErrorReason]
    ERROR_REASON_UDF_PICKLE_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_PYTHON_VERSION_MISMATCH: _ClassVar[ErrorReason]
    ERROR_REASON_ARGUMENT_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_REQUEST_TOO_LARGE: _ClassVar[ErrorReason]
    ERROR_REASON_OPTION_INVALID: _ClassVar[ErrorReason]
    ERROR_REASON_UDF_RAISED: _ClassVar[ErrorReason]
    ERROR_REASON_RESULT_TYPE_UNSUPPORTED: _ClassVar[ErrorReason]
    ERROR_REASON_TIMEOUT: _ClassVar[ErrorReason]
    ERROR_REASON_WORKER_DIED: _ClassVar[ErrorReason]
    ERROR_REASON_WORKER_PROTOCOL_VIOLATION: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_IMPLEMENTED: _ClassVar[ErrorReason]
    ERROR_REASON_SHUTTING_DOWN: _ClassVar[ErrorReason]
    ERROR_REASON_INTERNAL: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_UDF_MISSING: ErrorReason
ERROR_REASON_UDF_SOURCE_INVALID: ErrorReason
ERROR_REASON_UDF_ENTRY_POINT_MISSING: ErrorReason
ERROR_REASON_UDF_PICKLE_INVALID: ErrorReason
ERROR_REASON_PYTHON_VERSION_MISMATCH: ErrorReason
ERROR_REASON_ARGUMENT_INVALID: ErrorReason
ERROR_REASON_REQUEST_TOO_LARGE: ErrorReason
ERROR_REASON_OPTION_INVALID: ErrorReason
ERROR_REASON_UDF_RAISED: ErrorReason
ERROR_REASON_RESULT_TYPE_UNSUPPORTED: ErrorReason
ERROR_REASON_TIMEOUT: ErrorReason
ERROR_REASON_WORKER_DIED: ErrorReason
ERROR_REASON_WORKER_PROTOCOL_VIOLATION: ErrorReason
ERROR_REASON_NOT_IMPLEMENTED: ErrorReason
ERROR_REASON_SHUTTING_DOWN: ErrorReason
ERROR_REASON_INTERNAL: ErrorReason
