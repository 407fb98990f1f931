"""The identity side of the server in one bundle: store, authenticator, registry, audit log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ._audit import AuditLog
from ._auth import Authenticator, Principal
from ._registry import Registry
from ._sqlite import SqliteStore
from ._status import R, ServiceError, to_service_error
from ._store import AuditRecord, Store


@dataclass
class Call:
    """One execution as the audit log sees it: who ran what, on which arrays."""

    task_id: str
    method: str
    principal: Principal
    #: "namespace/name@N" for a registered UDF; empty means "the digest of ``code``".
    udf: str = ""
    code: bytes = b""
    arrays: list[str] = field(default_factory=list)


@dataclass
class Identity:
    """What every servicer needs to know who calls and what they may do."""

    store: Store
    auth: Authenticator
    registry: Registry
    audit: AuditLog

    @classmethod
    def open(cls, path: str, *, authenticate: bool) -> Identity:
        """Open (and migrate) the store at ``path``."""
        store = SqliteStore(path)
        return cls(
            store, Authenticator(store, enabled=authenticate), Registry(store), AuditLog(store)
        )

    def close(self) -> None:
        self.audit.close()
        self.store.close()

    @contextmanager
    def audited(self, call: Call) -> Iterator[None]:
        """Record the execution inside the block, however it ends."""
        started, clock = time.time(), time.monotonic()
        outcome, reason = "OK", ""
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "CANCELLED"
            raise
        except BaseException as exc:
            error = exc if isinstance(exc, ServiceError) else to_service_error(exc)
            outcome, reason = error.code.name, R.Name(error.reason)
            raise
        finally:
            record = AuditRecord(
                task_id=call.task_id,
                namespace=call.principal.namespace,
                token_id=call.principal.token_id,
                method=call.method,
                udf=call.udf,
                arrays=tuple(call.arrays),
                started_at=started,
                duration=time.monotonic() - clock,
                outcome=outcome,
                reason=reason,
            )
            self.audit.add(record, call.code)
