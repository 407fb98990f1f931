"""Who is calling, and what they may do: bearer tokens to principals, and the access rules.

Every RPC but health and reflection starts with ``Authenticator.principal(context)``. A call
without a valid token fails with UNAUTHENTICATED before anything else happens. The rights that
follow are simple and in one place (``Principal`` and ``ArrayAccess``):

- a principal acts as its token's namespace and, with it, every organisation that namespace is
  a member of (their union is ``namespaces``);
- an object (array, UDF) is visible when it belongs to one of those namespaces, is shared with
  one of them, or is shared with everyone ("*"); an invisible object is reported as missing
  (NOT_FOUND), exactly like one that does not exist, so that names do not leak;
- changing an object needs the scope for it and membership of its namespace; without membership
  (but with visibility) that is PERMISSION_DENIED;
- the "admin" scope implies every other scope and every namespace.

Secrets never reach a log, an error message or a record: only token ids do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from ._arrays import ArrayRef
from ._status import R, ServiceError
from ._store import PUBLIC, SCOPES, Store, TokenRecord

log = logging.getLogger(__name__)

#: How long a token's validity and its owner's memberships are reused before being read again
#: (bounds how late another server process sees a revocation or a membership change).
CACHE_SECONDS = 2.0
#: How often a token's last-use time is written (writes are per token, at most this often).
TOUCH_SECONDS = 60.0
MAX_CACHED = 10_000


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    namespace: str
    organisations: tuple[str, ...]
    scopes: frozenset[str]
    token_id: str

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def namespaces(self) -> frozenset[str]:
        """The namespaces whose rights the caller has."""
        return frozenset((self.namespace, *self.organisations))

    @property
    def grantees(self) -> frozenset[str]:
        """Share targets that reach the caller: their namespaces, and everyone."""
        return self.namespaces | {PUBLIC}

    def require(self, scope: str) -> None:
        """PERMISSION_DENIED unless the token carries ``scope`` (or admin)."""
        if scope not in self.scopes and not self.admin:
            raise ServiceError(
                R.ERROR_REASON_SCOPE_MISSING,
                f"this call needs a token with the {scope!r} scope",
                scope=scope,
            )

    def member_of(self, namespace: str) -> bool:
        return self.admin or namespace in self.namespaces

    def require_member(self, namespace: str, what: str) -> None:
        """PERMISSION_DENIED unless the caller acts for ``namespace`` (or is an admin)."""
        if not self.member_of(namespace):
            raise ServiceError(
                R.ERROR_REASON_PERMISSION_DENIED,
                f"only members of {namespace!r} may {what}",
                namespace=namespace,
            )

    def sees(self, namespace: str, shared_with: Sequence[str]) -> bool:
        """Whether an object of ``namespace`` shared with ``shared_with`` is visible."""
        return self.member_of(namespace) or not self.grantees.isdisjoint(shared_with)


#: The caller when authentication is off (``--no-auth``): may do everything.
ANONYMOUS = Principal("anonymous", (), frozenset(SCOPES), "")


class Authenticator:
    """Turns a call's ``authorization: Bearer <token>`` metadata into a Principal."""

    def __init__(self, store: Store, *, enabled: bool) -> None:
        self._store = store
        self.enabled = enabled
        self._cache: dict[str, tuple[float, TokenRecord, tuple[str, ...]]] = {}
        self._touched: dict[str, float] = {}

    def principal(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        """The caller; UNAUTHENTICATED for a missing, unknown, expired or revoked token."""
        if not self.enabled:
            return ANONYMOUS
        secret = bearer_token(context.invocation_metadata() or ())
        now = time.time()
        record, organisations = self._lookup(secret, now)
        if record.revoked_at is not None:
            raise ServiceError(
                R.ERROR_REASON_TOKEN_REVOKED,
                f"token {record.id} was revoked",
                token_id=record.id,
            )
        if record.expires_at <= now:
            raise ServiceError(
                R.ERROR_REASON_TOKEN_EXPIRED,
                f"token {record.id} expired; ask for a new one",
                token_id=record.id,
            )
        self._touch(record.id, now)
        return Principal(record.namespace, organisations, frozenset(record.scopes), record.id)

    def forget(self) -> None:
        """Drop cached tokens (after a revocation or membership change in this process)."""
        self._cache.clear()

    def _lookup(self, secret: str, now: float) -> tuple[TokenRecord, tuple[str, ...]]:
        cached = self._cache.get(secret)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1], cached[2]
        record = self._store.token_by_secret(secret)
        if record is None:
            raise ServiceError(R.ERROR_REASON_TOKEN_INVALID, "the token is not valid here")
        owner = self._store.namespace(record.namespace)
        organisations = owner.members if owner is not None and owner.kind == "user" else ()
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[secret] = (now, record, organisations)
        return record, organisations

    def _touch(self, token_id: str, now: float) -> None:
        if now - self._touched.get(token_id, 0.0) < TOUCH_SECONDS:
            return
        if len(self._touched) >= MAX_CACHED:
            self._touched.clear()
        self._touched[token_id] = now
        loop = asyncio.get_running_loop()
        written = loop.run_in_executor(None, self._store.touch_token, token_id, now)
        written.add_done_callback(_log_failure)


def _log_failure(written: asyncio.Future[None]) -> None:
    """Last-use times are best effort: a failed write is logged, never raised."""
    if not written.cancelled() and written.exception() is not None:
        log.warning("could not record a token's last use: %s", written.exception())


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The token of an ``authorization: Bearer <token>`` entry; TOKEN_MISSING if there is none."""
    for key, value in metadata:
        if key != "authorization" or not isinstance(value, str):
            continue
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        raise ServiceError(
            R.ERROR_REASON_TOKEN_INVALID,
            "the authorization metadata must be 'Bearer <token>'",
        )
    raise ServiceError(
        R.ERROR_REASON_TOKEN_MISSING,
        "this server needs a token: send 'authorization: Bearer <token>' metadata "
        "(the Python client reads TILEFN_TOKEN)",
    )


class ArrayAccess:
    """Read rights on arrays for one principal: the array's namespace, shares, or public."""

    def __init__(self, store: Store, principal: Principal) -> None:
        self._store = store
        self.principal = principal

    def readable(self, ref: ArrayRef) -> bool:
        if self.principal.admin:
            return True
        if not ref.namespace:  # a raw storage URI belongs to nobody: admins only
            return False
        if ref.namespace in self.principal.namespaces:
            return True
        shares = self._store.array_shares(ref.namespace, ref.array)
        return not self.principal.grantees.isdisjoint(shares)

    def check(self, ref: ArrayRef) -> None:
        """NOT_FOUND (the same error as a missing array) unless the principal may read it."""
        if not self.readable(ref):
            if not ref.namespace:
                raise ServiceError(
                    R.ERROR_REASON_ARRAY_URI_REFUSED,
                    "raw storage URIs are for admins only",
                    array=ref.name[:200],
                )
            raise ServiceError(
                R.ERROR_REASON_ARRAY_NOT_FOUND, f"no array named {ref.name}", array=ref.name
            )

    def shared(self) -> set[tuple[str, str]]:
        """(namespace, name) of every array shared with the principal."""
        return self._store.arrays_shared_with(self.principal.grantees)
