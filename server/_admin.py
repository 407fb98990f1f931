"""Identity administration, shared by AdminService and the ``tilefn admin`` command.

Checks what callers supply (names, scopes, lifetimes) and calls the store; blocking.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._registry import NAMESPACE
from ._status import R, ServiceError
from ._store import SCOPES, Namespace, NamespaceKind, Store, TokenRecord

DEFAULT_TOKEN_SECONDS = 90 * 86400.0
MAX_TOKEN_SECONDS = 10 * 365 * 86400.0
MAX_DESCRIPTION = 200


def create_namespace(store: Store, name: str, kind: NamespaceKind) -> Namespace:
    if not NAMESPACE.match(name) or name == "anonymous":
        raise ServiceError(
            R.ERROR_REASON_NAMESPACE_INVALID,
            f"{name[:64]!r} is not a valid namespace name: 1 to 64 letters, digits, '_', '-', '.'",
            namespace=name[:64],
        )
    return store.create_namespace(name, kind)


def create_token(
    store: Store, namespace: str, scopes: Sequence[str], lifetime: float, description: str
) -> tuple[str, TokenRecord]:
    """Issue a token; returns (secret, record). The secret is shown once and never stored."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ServiceError(
            R.ERROR_REASON_ARGUMENT_INVALID,
            f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}",
            argument="scopes",
        )
    lifetime = lifetime or DEFAULT_TOKEN_SECONDS
    if not 0 < lifetime <= MAX_TOKEN_SECONDS:
        raise ServiceError(
            R.ERROR_REASON_ARGUMENT_INVALID,
            f"a token's lifetime must be positive and at most {MAX_TOKEN_SECONDS / 86400:.0f} days",
            argument="lifetime",
        )
    if len(description) > MAX_DESCRIPTION:
        raise ServiceError(
            R.ERROR_REASON_ARGUMENT_INVALID,
            f"the description is longer than {MAX_DESCRIPTION} characters",
            argument="description",
        )
    ordered = [s for s in SCOPES if s in scopes]
    return store.create_token(namespace, ordered, lifetime, description)
