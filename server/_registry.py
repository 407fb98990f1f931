"""Registered UDFs: names and version references, who may see and change them.

A reference is ``namespace/name`` (the latest version), ``namespace/name@N`` (version N) or
``namespace/name@<UTC time>`` (the version current at that time, ISO 8601). Versions are
immutable; an update adds one. What a UDF holds stays opaque here: source text and pickles are
stored and handed to workers, never compiled or loaded by the server.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.protobuf import json_format

from tilefn.v1 import registry_service_pb2 as pb

from ._auth import Principal
from ._status import R, ServiceError
from ._store import PUBLIC, Store, UdfDraft, UdfQuery, UdfVersion

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
SERVER_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_DESCRIPTION_CHARS = 4096
MAX_PARAMETERS = 256
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class UdfRef:
    """A parsed reference."""

    namespace: str
    name: str
    version: int | None = None
    #: Microseconds since the epoch (UTC).
    at: int | None = None

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_ref(text: str, *, versioned: bool = True) -> UdfRef:
    """Parse ``ns/name[@N|@time]``; UDF_NAME_INVALID when malformed."""
    base, at_sign, suffix = text.partition("@")
    namespace, slash, name = base.partition("/")
    if not slash or not NAMESPACE.match(namespace) or not NAME.match(name):
        raise _invalid(text, "name UDFs 'namespace/name' with letters, digits, '_', '-' and '.'")
    if not at_sign:
        return UdfRef(namespace, name)
    if not versioned:
        raise _invalid(text, "this call takes a UDF name without a version")
    if suffix.isdigit():
        if int(suffix) < 1:
            raise _invalid(text, "versions count from 1")
        return UdfRef(namespace, name, version=int(suffix))
    return UdfRef(namespace, name, at=_utc_time(text, suffix))


def _utc_time(text: str, suffix: str) -> int:
    try:
        when = datetime.fromisoformat(suffix.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _invalid(
            text, "after '@' give a version number or a UTC time like 2026-01-31T12:00:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - EPOCH) // timedelta(microseconds=1)


def _invalid(text: str, hint: str) -> ServiceError:
    return ServiceError(
        R.ERROR_REASON_UDF_NAME_INVALID,
        f"{text[:200]!r} is not a valid UDF reference: {hint}",
        udf=text[:200],
    )


def draft_of(definition: pb.UdfDefinition) -> UdfDraft:
    """Check a definition's shape and turn it into what the store keeps."""
    pickled = definition.pickled if definition.HasField("pickled") else None
    if not definition.source.strip() and (pickled is None or not pickled.data):
        raise ServiceError(
            R.ERROR_REASON_UDF_MISSING, "a UDF definition needs source text or a pickled function"
        )
    if definition.entry_point and not definition.entry_point.isidentifier():
        raise ServiceError(
            R.ERROR_REASON_UDF_ENTRY_POINT_MISSING,
            f"the entry point {definition.entry_point[:80]!r} is not a Python identifier",
            entry_point=definition.entry_point[:80],
        )
    _check_metadata(definition)
    if pickled is not None and pickled.data and not pickled.python_version:
        raise ServiceError(
            R.ERROR_REASON_PYTHON_VERSION_MISMATCH,
            "a pickled UDF must state the Python version that made it",
            client_python="unstated",
            server_python=SERVER_PYTHON,
        )
    if pickled is not None and pickled.data and pickled.python_version != SERVER_PYTHON:
        raise ServiceError(
            R.ERROR_REASON_PYTHON_VERSION_MISMATCH,
            f"the pickle was made by Python {pickled.python_version[:16]}, but workers run "
            f"Python {SERVER_PYTHON}, so it could never run here: register source text instead",
            client_python=pickled.python_version[:16],
            server_python=SERVER_PYTHON,
        )
    code = pickled.data if pickled is not None and pickled.data else b""
    python = pickled.python_version if code and pickled is not None else SERVER_PYTHON
    parameters = [json_format.MessageToDict(p) for p in definition.parameters]
    return UdfDraft(
        source=definition.source,
        entry_point=definition.entry_point,
        pickle=code,
        python_version=python,
        description=definition.description,
        tags=tuple(dict.fromkeys(definition.tags)),
        parameters_json=json.dumps(parameters),
        digest=digest(code or f"{definition.entry_point}\n{definition.source}".encode()),
    )


def _check_metadata(definition: pb.UdfDefinition) -> None:
    problems = []
    if len(definition.description) > MAX_DESCRIPTION_CHARS:
        problems.append(f"the description is longer than {MAX_DESCRIPTION_CHARS} characters")
    if len(definition.tags) > MAX_TAGS:
        problems.append(f"more than {MAX_TAGS} tags")
    if any(not t or len(t) > MAX_TAG_CHARS for t in definition.tags):
        problems.append(f"tags must be 1 to {MAX_TAG_CHARS} characters")
    if len(definition.parameters) > MAX_PARAMETERS:
        problems.append(f"more than {MAX_PARAMETERS} parameters")
    if any(not p.name.isidentifier() for p in definition.parameters):
        problems.append("parameter names must be Python identifiers")
    if problems:
        raise ServiceError(
            R.ERROR_REASON_ARGUMENT_INVALID,
            "the UDF definition is invalid: " + "; ".join(problems),
            argument="definition",
        )


def digest(code: bytes) -> str:
    return hashlib.sha256(code).hexdigest()


class Registry:
    """The registry's rules on top of a store (blocking: run in a thread)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def resolve(self, principal: Principal, text: str) -> UdfVersion:
        """The version a reference names, if the caller may run it."""
        ref = parse_ref(text)
        version = self._visible(principal, ref)
        if ref.version is None and ref.at is None:
            return version
        found = self._store.udf_version(ref.namespace, ref.name, ref.version, ref.at)
        if found is None:
            raise ServiceError(
                R.ERROR_REASON_UDF_VERSION_NOT_FOUND,
                f"{ref.full_name} has no version {text.partition('@')[2]!r} "
                f"(latest: {version.version}, registered "
                f"{(EPOCH + timedelta(microseconds=version.created_us)).isoformat()})",
                udf=text[:200],
            )
        return found

    def _visible(self, principal: Principal, ref: UdfRef) -> UdfVersion:
        latest = self._store.udf_version(ref.namespace, ref.name, None, None)
        if latest is None or not principal.sees(ref.namespace, latest.shared_with):
            raise ServiceError(
                R.ERROR_REASON_UDF_NOT_FOUND,
                f"no UDF named {ref.full_name} is visible to you",
                udf=ref.full_name,
            )
        return latest

    def _managed(self, principal: Principal, text: str) -> UdfRef:
        """A UDF the caller may change: visible, and of one of their namespaces."""
        principal.require("manage_udfs")
        ref = parse_ref(text, versioned=False)
        self._visible(principal, ref)
        principal.require_member(ref.namespace, f"change {ref.full_name}")
        return ref

    def register(
        self, principal: Principal, namespace: str, name: str, definition: pb.UdfDefinition
    ) -> UdfVersion:
        principal.require("manage_udfs")
        ref = parse_ref(f"{namespace}/{name}", versioned=False)
        principal.require_member(ref.namespace, f"register UDFs in {ref.namespace!r}")
        draft = draft_of(definition)
        return self._store.register_udf(ref.namespace, ref.name, principal.namespace, draft)

    def update(self, principal: Principal, text: str, definition: pb.UdfDefinition) -> UdfVersion:
        ref = self._managed(principal, text)
        draft = draft_of(definition)
        return self._store.add_udf_version(ref.namespace, ref.name, principal.namespace, draft)

    def share(self, principal: Principal, text: str, grantee: str, share: bool) -> UdfVersion:
        ref = self._managed(principal, text)
        check_grantee(self._store, grantee)
        self._store.share_udf(ref.namespace, ref.name, grantee, share)
        return self.resolve(principal, ref.full_name)

    def delete(self, principal: Principal, text: str) -> int:
        ref = self._managed(principal, text)
        return self._store.delete_udf(ref.namespace, ref.name)

    def list(
        self, principal: Principal, request: pb.ListUdfsRequest, limit: int
    ) -> list[UdfVersion]:
        visible = None if principal.admin else principal.grantees
        query = UdfQuery(
            visible_to=visible,
            namespace=request.namespace,
            tag=request.tag,
            text=request.text,
            after=request.page_token,
            limit=limit,
        )
        return self._store.udfs(query)


def check_grantee(store: Store, grantee: str) -> None:
    """A share target must be "*" or an existing namespace."""
    if grantee == PUBLIC:
        return
    if not NAMESPACE.match(grantee) or store.namespace(grantee) is None:
        raise ServiceError(
            R.ERROR_REASON_NAMESPACE_NOT_FOUND,
            f"cannot share with {grantee[:64]!r}: no such namespace (use '*' for everyone)",
            namespace=grantee[:64],
        )
