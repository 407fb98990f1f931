"""The registry and sharing methods of Client (sync) and AsyncClient, as mixins.

Each method builds its request with ``tilefn.client._registry`` and sends it with the client's
``_unary`` (which adds the token and maps errors); the sync and async forms differ only in
``await``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tilefn.v1 import array_service_pb2
from tilefn.v1 import registry_service_pb2 as pb

from ._registry import UdfInfo, definition
from ._request import Source

UdfDefinitionSource = Callable[..., Any] | str | Source


def register_request(
    name: str, fn: UdfDefinitionSource, description: str, tags: Sequence[str], pickle: bool
) -> pb.RegisterUdfRequest:
    namespace, _, short = name.partition("/")
    return pb.RegisterUdfRequest(
        namespace=namespace,
        name=short,
        definition=definition(fn, description=description, tags=tags, pickle=pickle),
    )


def update_request(
    name: str, fn: UdfDefinitionSource, description: str, tags: Sequence[str], pickle: bool
) -> pb.UpdateUdfRequest:
    return pb.UpdateUdfRequest(
        name=name, definition=definition(fn, description=description, tags=tags, pickle=pickle)
    )


def share_request(array: str, grantee: str) -> array_service_pb2.ShareArrayRequest:
    return array_service_pb2.ShareArrayRequest(uri=array, grantee=grantee)


class RegistryCalls:
    """Registered UDFs and sharing, for the synchronous Client."""

    _registry: Any
    _arrays: Any
    _unary: Callable[[Callable[..., Any], Any], Any]

    def register(
        self,
        name: str,
        fn: UdfDefinitionSource,
        *,
        description: str = "",
        tags: Sequence[str] = (),
        pickle: bool = True,
    ) -> UdfInfo:
        """Register ``fn`` as "namespace/name", version 1 (``AlreadyExistsError`` if taken).

        A callable is stored with its source text, signature and (unless ``pickle=False``) its
        cloudpickle, which is what runs; text or a ``Source`` is stored as source only, which
        any caller can run. Anyone it is shared with runs it with ``exec("namespace/name")``.
        """
        request = register_request(name, fn, description, tags, pickle)
        return UdfInfo.from_proto(self._unary(self._registry.RegisterUdf, request))

    def update(
        self,
        name: str,
        fn: UdfDefinitionSource,
        *,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        pickle: bool = True,
    ) -> UdfInfo:
        """Add a new version of the registered UDF ``name`` (see ``register``); the description
        and tags not given are the latest version's."""
        if description is None or tags is None:
            latest = self.udf(name)
            description = latest.description if description is None else description
            tags = latest.tags if tags is None else tags
        request = update_request(name, fn, description, tags, pickle)
        return UdfInfo.from_proto(self._unary(self._registry.UpdateUdf, request))

    def udf(self, name: str) -> UdfInfo:
        """One version: "namespace/name" (latest), "...@N" or "...@2026-01-31T12:00:00Z"."""
        request = pb.GetUdfRequest(name=name)
        return UdfInfo.from_proto(self._unary(self._registry.GetUdf, request))

    def udfs(self, namespace: str = "", *, tag: str = "", text: str = "") -> list[UdfInfo]:
        """The latest version of every registered UDF visible to this caller, by name."""
        found: list[UdfInfo] = []
        request = pb.ListUdfsRequest(namespace=namespace, tag=tag, text=text)
        while True:
            page = self._unary(self._registry.ListUdfs, request)
            found += [UdfInfo.from_proto(u) for u in page.udfs]
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token

    def share(self, name: str, grantee: str) -> UdfInfo:
        """Let namespace ``grantee`` (or everyone, with "*") run and read UDF ``name``."""
        request = pb.ShareUdfRequest(name=name, grantee=grantee)
        return UdfInfo.from_proto(self._unary(self._registry.ShareUdf, request))

    def unshare(self, name: str, grantee: str) -> UdfInfo:
        """Take back a share of UDF ``name``."""
        request = pb.UnshareUdfRequest(name=name, grantee=grantee)
        return UdfInfo.from_proto(self._unary(self._registry.UnshareUdf, request))

    def delete(self, name: str) -> int:
        """Delete registered UDF ``name`` with all its versions; returns how many there were.
        Tasks already running it finish."""
        request = pb.DeleteUdfRequest(name=name)
        return int(self._unary(self._registry.DeleteUdf, request).versions)

    def share_array(self, array: str, grantee: str, *, share: bool = True) -> list[str]:
        """Let ``grantee`` (or everyone, "*") read ``array``; ``share=False`` takes it back.
        Returns whom the array is now shared with."""
        method = self._arrays.ShareArray if share else self._arrays.UnshareArray
        return list(self._unary(method, share_request(array, grantee)).shared_with)


class AsyncRegistryCalls:
    """The same methods for AsyncClient, awaited (see ``RegistryCalls`` for each)."""

    _registry: Any
    _arrays: Any
    _unary: Callable[[Callable[..., Any], Any], Awaitable[Any]]

    async def register(
        self,
        name: str,
        fn: UdfDefinitionSource,
        *,
        description: str = "",
        tags: Sequence[str] = (),
        pickle: bool = True,
    ) -> UdfInfo:
        request = register_request(name, fn, description, tags, pickle)
        return UdfInfo.from_proto(await self._unary(self._registry.RegisterUdf, request))

    async def update(
        self,
        name: str,
        fn: UdfDefinitionSource,
        *,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        pickle: bool = True,
    ) -> UdfInfo:
        if description is None or tags is None:
            latest = await self.udf(name)
            description = latest.description if description is None else description
            tags = latest.tags if tags is None else tags
        request = update_request(name, fn, description, tags, pickle)
        return UdfInfo.from_proto(await self._unary(self._registry.UpdateUdf, request))

    async def udf(self, name: str) -> UdfInfo:
        request = pb.GetUdfRequest(name=name)
        return UdfInfo.from_proto(await self._unary(self._registry.GetUdf, request))

    async def udfs(self, namespace: str = "", *, tag: str = "", text: str = "") -> list[UdfInfo]:
        found: list[UdfInfo] = []
        request = pb.ListUdfsRequest(namespace=namespace, tag=tag, text=text)
        while True:
            page = await self._unary(self._registry.ListUdfs, request)
            found += [UdfInfo.from_proto(u) for u in page.udfs]
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token

    async def share(self, name: str, grantee: str) -> UdfInfo:
        request = pb.ShareUdfRequest(name=name, grantee=grantee)
        return UdfInfo.from_proto(await self._unary(self._registry.ShareUdf, request))

    async def unshare(self, name: str, grantee: str) -> UdfInfo:
        request = pb.UnshareUdfRequest(name=name, grantee=grantee)
        return UdfInfo.from_proto(await self._unary(self._registry.UnshareUdf, request))

    async def delete(self, name: str) -> int:
        request = pb.DeleteUdfRequest(name=name)
        return int((await self._unary(self._registry.DeleteUdf, request)).versions)

    async def share_array(self, array: str, grantee: str, *, share: bool = True) -> list[str]:
        method = self._arrays.ShareArray if share else self._arrays.UnshareArray
        return list((await self._unary(method, share_request(array, grantee))).shared_with)
