"""Registered UDFs on the client side: definitions from Python functions, results as UdfInfo."""

from __future__ import annotations

import contextlib
import inspect
import json
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from tilefn.v1 import registry_service_pb2 as pb

from ._request import Source, udf_spec

KINDS = {
    inspect.Parameter.POSITIONAL_OR_KEYWORD: pb.PARAMETER_KIND_UNSPECIFIED,
    inspect.Parameter.POSITIONAL_ONLY: pb.PARAMETER_KIND_POSITIONAL_ONLY,
    inspect.Parameter.KEYWORD_ONLY: pb.PARAMETER_KIND_KEYWORD_ONLY,
    inspect.Parameter.VAR_POSITIONAL: pb.PARAMETER_KIND_VAR_POSITIONAL,
    inspect.Parameter.VAR_KEYWORD: pb.PARAMETER_KIND_VAR_KEYWORD,
}


@dataclass(frozen=True)
class UdfInfo:
    """One version of a registered UDF, as the server describes it."""

    #: "namespace/name".
    name: str
    version: int
    latest_version: int
    created_at: datetime
    created_by: str
    python_version: str
    source: str
    entry_point: str
    description: str
    tags: tuple[str, ...]
    #: The signature: dicts with name, kind, annotation, has_default, default_json.
    parameters: tuple[dict[str, Any], ...]
    #: Whether this version runs as a pickle (Python callers of ``python_version`` made it).
    pickled: bool
    #: Namespaces it is shared with ("*" = everyone); only shown to those who manage it.
    shared_with: tuple[str, ...]
    digest: str

    @property
    def ref(self) -> str:
        """The reference of exactly this version, "namespace/name@N"."""
        return f"{self.name}@{self.version}"

    @classmethod
    def from_proto(cls, message: pb.RegisteredUdf) -> UdfInfo:
        definition = message.definition
        return cls(
            name=message.name,
            version=message.version,
            latest_version=message.latest_version,
            created_at=message.created_at.ToDatetime(tzinfo=UTC),
            created_by=message.created_by,
            python_version=message.python_version,
            source=definition.source,
            entry_point=definition.entry_point,
            description=definition.description,
            tags=tuple(definition.tags),
            parameters=tuple(
                json_format.MessageToDict(p, preserving_proto_field_name=True)
                for p in definition.parameters
            ),
            pickled=definition.HasField("pickled"),
            shared_with=tuple(message.shared_with),
            digest=message.digest,
        )


def definition(
    fn: Callable[..., Any] | str | Source,
    *,
    description: str = "",
    tags: Sequence[str] = (),
    pickle: bool = True,
) -> pb.UdfDefinition:
    """A UDF definition: source text (and, for a callable, its pickle and signature)."""
    result = pb.UdfDefinition(description=description, tags=list(tags))
    if isinstance(fn, str):
        fn = Source(fn)
    if isinstance(fn, Source):
        result.source, result.entry_point = fn.text, fn.entry_point
        return result
    if not callable(fn):
        raise TypeError(f"a UDF must be a callable, source text or Source, not {type(fn).__name__}")
    result.source = _source_of(fn)
    if fn.__name__.isidentifier():
        result.entry_point = fn.__name__
    result.parameters.extend(parameters(fn))
    if pickle:
        result.pickled.CopyFrom(udf_spec(fn).pickled)
    elif not result.source:
        raise ValueError(f"the source of {fn!r} is not available: register it with pickle=True")
    return result


def _source_of(fn: Callable[..., Any]) -> str:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return ""


def parameters(fn: Callable[..., Any]) -> list[pb.Parameter]:
    """``fn``'s signature as Parameter messages (empty when Python cannot tell it)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    found = []
    for parameter in signature.parameters.values():
        message = pb.Parameter(name=parameter.name, kind=KINDS[parameter.kind])
        if parameter.annotation is not inspect.Parameter.empty:
            annotation = parameter.annotation
            message.annotation = (
                annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
            )
        if parameter.default is not inspect.Parameter.empty:
            message.has_default = True
            # A default JSON cannot express: callers only see that there is one.
            with contextlib.suppress(TypeError, ValueError):
                message.default_json = json.dumps(parameter.default)
        found.append(message)
    return found
