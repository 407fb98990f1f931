"""AdminService: namespaces, memberships, tokens and the audit log over gRPC."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from tilefn.v1 import admin_service_pb2 as pb
from tilefn.v1 import admin_service_pb2_grpc

from . import _admin
from ._auth import Authenticator, Principal
from ._status import R, ServiceError, unary_status_mapped
from ._store import AuditRecord, Namespace, NamespaceKind, Store, TokenRecord
from ._times import duration, timestamp
from ._writer import StoreWriter

Context = grpc.aio.ServicerContext[Any, Any]
KINDS: dict[int, NamespaceKind] = {
    pb.NAMESPACE_KIND_USER: "user",
    pb.NAMESPACE_KIND_ORGANISATION: "organisation",
}
MAX_AUDIT = 1000


class AdminService(admin_service_pb2_grpc.AdminServiceServicer):
    """Serves tilefn.v1.AdminService; every method but GetIdentity needs the admin scope."""

    def __init__(self, auth: Authenticator, store: Store, writer: StoreWriter) -> None:
        self._auth = auth
        self._store = store
        self._writer = writer

    def _admin(self, context: Context) -> Principal:
        caller = self._auth.principal(context)
        caller.require("admin")
        return caller

    @unary_status_mapped
    async def GetIdentity(self, request: pb.GetIdentityRequest, context: Context) -> pb.Identity:
        caller = self._auth.principal(context)
        return pb.Identity(
            namespace=caller.namespace,
            organisations=caller.organisations,
            scopes=sorted(caller.scopes),
            token_id=caller.token_id,
        )

    @unary_status_mapped
    async def CreateNamespace(
        self, request: pb.CreateNamespaceRequest, context: Context
    ) -> pb.Namespace:
        self._admin(context)
        if request.kind not in KINDS:
            raise ServiceError(
                R.ERROR_REASON_NAMESPACE_INVALID,
                "kind must be NAMESPACE_KIND_USER or NAMESPACE_KIND_ORGANISATION",
                namespace=request.name[:64],
            )
        created = await asyncio.to_thread(
            _admin.create_namespace, self._store, request.name, KINDS[request.kind]
        )
        return namespace_message(created)

    @unary_status_mapped
    async def ListNamespaces(
        self, request: pb.ListNamespacesRequest, context: Context
    ) -> pb.ListNamespacesResponse:
        self._admin(context)
        found = await asyncio.to_thread(self._store.namespaces)
        return pb.ListNamespacesResponse(namespaces=[namespace_message(n) for n in found])

    @unary_status_mapped
    async def AddMember(self, request: pb.MemberRequest, context: Context) -> pb.Namespace:
        return await self._membership(request, context, add=True)

    @unary_status_mapped
    async def RemoveMember(self, request: pb.MemberRequest, context: Context) -> pb.Namespace:
        return await self._membership(request, context, add=False)

    async def _membership(
        self, request: pb.MemberRequest, context: Context, *, add: bool
    ) -> pb.Namespace:
        self._admin(context)
        change = self._store.add_member if add else self._store.remove_member
        organisation = await asyncio.to_thread(change, request.organisation, request.user)
        self._auth.forget()
        return namespace_message(organisation)

    @unary_status_mapped
    async def CreateToken(
        self, request: pb.CreateTokenRequest, context: Context
    ) -> pb.CreateTokenResponse:
        self._admin(context)
        secret, record = await asyncio.to_thread(
            _admin.create_token,
            self._store,
            request.namespace,
            list(request.scopes),
            request.lifetime.ToNanoseconds() / 1e9,
            request.description,
        )
        return pb.CreateTokenResponse(secret=secret, token=token_message(record))

    @unary_status_mapped
    async def ListTokens(
        self, request: pb.ListTokensRequest, context: Context
    ) -> pb.ListTokensResponse:
        self._admin(context)
        found = await asyncio.to_thread(self._store.tokens, request.namespace)
        return pb.ListTokensResponse(tokens=[token_message(t) for t in found])

    @unary_status_mapped
    async def RevokeToken(self, request: pb.RevokeTokenRequest, context: Context) -> pb.Token:
        self._admin(context)
        record = await asyncio.to_thread(self._store.revoke_token, request.id)
        self._auth.forget()
        return token_message(record)

    @unary_status_mapped
    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Context
    ) -> pb.ListAuditRecordsResponse:
        self._admin(context)
        limit = request.limit or 100
        if limit > MAX_AUDIT:
            raise ServiceError(
                R.ERROR_REASON_OPTION_INVALID, f"limit may be at most {MAX_AUDIT}", option="limit"
            )
        await asyncio.to_thread(self._writer.flush)
        found = await asyncio.to_thread(self._store.audit, request.namespace, limit)
        return pb.ListAuditRecordsResponse(records=[audit_message(r) for r in found])


def namespace_message(namespace: Namespace) -> pb.Namespace:
    kind = next(k for k, name in KINDS.items() if name == namespace.kind)
    return pb.Namespace(
        name=namespace.name,
        kind=kind,  # type: ignore[arg-type]
        members=namespace.members,
        created_at=timestamp(namespace.created_at),
    )


def token_message(record: TokenRecord) -> pb.Token:
    return pb.Token(
        id=record.id,
        namespace=record.namespace,
        scopes=record.scopes,
        description=record.description,
        created_at=timestamp(record.created_at),
        expires_at=timestamp(record.expires_at),
        last_used_at=timestamp(record.last_used_at),
        revoked_at=timestamp(record.revoked_at),
    )


def audit_message(record: AuditRecord) -> pb.AuditRecord:
    return pb.AuditRecord(
        task_id=record.task_id,
        namespace=record.namespace,
        token_id=record.token_id,
        method=record.method,
        udf=record.udf,
        arrays=record.arrays,
        started_at=timestamp(record.started_at),
        duration=duration(record.duration),
        outcome=record.outcome,
        reason=record.reason,
    )
