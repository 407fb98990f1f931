"""The authorization matrix: who may read which array, with which token, through every RPC."""

from __future__ import annotations

import grpc
import pytest
from identity_support import ARRAYS, World

from tilefn.client import AuthenticationError, Client, NotFoundError, PermissionDeniedError
from tilefn.server._sqlite import SqliteStore
from tilefn.v1 import admin_service_pb2, admin_service_pb2_grpc

from conftest import authed_channel, wait_for

C = grpc.StatusCode
#: Who reads what: owner, member of the owning organisation, shared with, public, neither.
READS = {
    ("alice", "alice/private"): True,  # own
    ("alice", "acme/data"): True,  # member of acme
    ("alice", "acme/for_bob"): True,  # member of acme
    ("alice", "pub/open"): True,  # public
    ("bob", "alice/private"): False,  # not shared
    ("bob", "acme/data"): False,  # not a member
    ("bob", "acme/for_bob"): True,  # shared with bob
    ("bob", "pub/open"): True,  # public
    ("carol", "acme/for_bob"): False,  # shared with someone else
    ("carol", "pub/open"): True,
}


def total(data: dict[str, object]) -> int:
    return int(data["v"].sum())  # type: ignore[attr-defined]


@pytest.mark.parametrize(("who", "array"), list(READS))
def test_array_reads(world: World, who: str, array: str) -> None:
    with world.client(who) as client:
        if READS[who, array]:
            assert client.apply(f"tiledb://{array}", total) == 4 * ARRAYS[array]
            assert client.schema(f"tiledb://{array}")["uri"] == f"tiledb://{array}"
            return
        # Exactly what a missing array gives: the name does not leak.
        with pytest.raises(NotFoundError) as forbidden:
            client.apply(f"tiledb://{array}", total)
        with pytest.raises(NotFoundError) as missing:
            client.apply(f"tiledb://{array.split('/', maxsplit=1)[0]}/nothing", total)
        assert forbidden.value.reason == missing.value.reason == "ERROR_REASON_ARRAY_NOT_FOUND"
        with pytest.raises(NotFoundError):
            client.schema(f"tiledb://{array}")


@pytest.mark.parametrize("who", ["alice", "bob", "carol", "admin"])
def test_listings_show_only_readable_arrays(world: World, who: str) -> None:
    with world.client(who) as client:
        listed = {a.uri.removeprefix("tiledb://") for a in client.arrays()}
    if who == "admin":
        assert listed == set(ARRAYS)
    else:
        assert listed == {array for (user, array), ok in READS.items() if user == who and ok}


def test_array_in_a_udf_argument_is_checked_too(world: World) -> None:
    from tilefn.client import ArrayRead

    with world.client("bob") as client, pytest.raises(NotFoundError):
        client.exec(total, ArrayRead("tiledb://alice/private"))


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "ERROR_REASON_TOKEN_MISSING"),
        ("tfn_000000000000_not-a-real-token", "ERROR_REASON_TOKEN_INVALID"),
        ("alice_expired", "ERROR_REASON_TOKEN_EXPIRED"),
    ],
)
def test_bad_tokens_are_unauthenticated_everywhere(
    world: World, token: str | None, reason: str
) -> None:
    secret = world.tokens.get(token or "", token) or ""
    with Client(world.server.address, token=secret) as client:
        for attempt in (
            lambda: client.call(lambda: 1),
            lambda: client.exec(lambda: 1),
            client.arrays,
            lambda: client.schema("tiledb://pub/open"),
            client.udfs,
            client.server_info,
        ):
            with pytest.raises(AuthenticationError) as caught:
                attempt()
            assert caught.value.reason == reason
            assert not secret or secret not in str(caught.value)


def test_malformed_authorization_header(world: World) -> None:
    with authed_channel(world.server.address, (("authorization", "Basic abc"),)) as channel:
        stub = admin_service_pb2_grpc.AdminServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetIdentity(admin_service_pb2.GetIdentityRequest(), timeout=10)
    assert caught.value.code() == C.UNAUTHENTICATED


def test_wrong_scope_is_permission_denied(world: World) -> None:
    with world.client("alice_run_only") as client:
        assert client.call(lambda: 1) == 1  # "run" is enough for a plain UDF
        with pytest.raises(PermissionDeniedError) as caught:
            client.apply("tiledb://alice/private", total)
        assert caught.value.reason == "ERROR_REASON_SCOPE_MISSING"
        assert caught.value.metadata["scope"] == "read_arrays"
        with pytest.raises(PermissionDeniedError):
            client.arrays()
        with pytest.raises(PermissionDeniedError):
            client.register("alice/f", "def f():\n    return 1\n")


def test_sharing_an_array(world: World) -> None:
    with world.client("alice") as alice, world.client("carol") as carol:
        with pytest.raises(NotFoundError):
            carol.apply("tiledb://alice/private", total)
        assert alice.share_array("tiledb://alice/private", "carol") == ["carol"]
        try:
            assert carol.apply("tiledb://alice/private", total) == 4
            # Read-only: carol may not pass the share on.
            with pytest.raises(PermissionDeniedError):
                carol.share_array("tiledb://alice/private", "bob")
        finally:
            assert alice.share_array("tiledb://alice/private", "carol", share=False) == []
        with pytest.raises(NotFoundError):
            carol.apply("tiledb://alice/private", total)
        with pytest.raises(NotFoundError):  # sharing what you cannot see: it is missing
            carol.share_array("tiledb://alice/private", "carol")
        with pytest.raises(NotFoundError) as caught:
            alice.share_array("tiledb://alice/private", "nobody-by-this-name")
        assert caught.value.reason == "ERROR_REASON_NAMESPACE_NOT_FOUND"


def test_revocation_through_the_admin_rpc_is_immediate(world: World) -> None:
    store = SqliteStore(world.store_path)
    try:
        secret, record = _token(store, "bob")
    finally:
        store.close()
    with Client(world.server.address, token=secret) as client:
        assert client.call(lambda: 2) == 2
        with authed_channel(world.server.address, _bearer(world.tokens["admin"])) as channel:
            admin = admin_service_pb2_grpc.AdminServiceStub(channel)
            revoked = admin.RevokeToken(admin_service_pb2.RevokeTokenRequest(id=record), timeout=10)
        assert revoked.HasField("revoked_at")
        with pytest.raises(AuthenticationError) as caught:
            client.call(lambda: 2)
        assert caught.value.reason == "ERROR_REASON_TOKEN_REVOKED"


def test_revocation_in_the_store_reaches_a_running_server(world: World) -> None:
    """``tilefn token revoke`` writes the store from another process; the server's token cache
    lasts seconds, not longer."""
    store = SqliteStore(world.store_path)
    try:
        secret, record = _token(store, "bob")
        with Client(world.server.address, token=secret) as client:
            assert client.call(lambda: 3) == 3
            store.revoke_token(record)

            def refused() -> bool:
                try:
                    client.call(lambda: 3)
                except AuthenticationError:
                    return True
                return False

            wait_for(refused, timeout=10, what="the revocation to take effect")
    finally:
        store.close()


def test_admin_rpcs_need_the_admin_scope(world: World) -> None:
    with authed_channel(world.server.address, _bearer(world.tokens["alice"])) as channel:
        admin = admin_service_pb2_grpc.AdminServiceStub(channel)
        identity = admin.GetIdentity(admin_service_pb2.GetIdentityRequest(), timeout=10)
        assert (identity.namespace, list(identity.organisations)) == ("alice", ["acme"])
        with pytest.raises(grpc.RpcError) as caught:
            admin.ListTokens(admin_service_pb2.ListTokensRequest(), timeout=10)
        assert caught.value.code() == C.PERMISSION_DENIED


def test_admin_creates_a_user_and_a_token_that_works(world: World) -> None:
    with authed_channel(world.server.address, _bearer(world.tokens["admin"])) as channel:
        admin = admin_service_pb2_grpc.AdminServiceStub(channel)
        admin.CreateNamespace(
            admin_service_pb2.CreateNamespaceRequest(
                name="dave", kind=admin_service_pb2.NAMESPACE_KIND_USER
            ),
            timeout=10,
        )
        admin.AddMember(
            admin_service_pb2.MemberRequest(organisation="acme", user="dave"), timeout=10
        )
        created = admin.CreateToken(
            admin_service_pb2.CreateTokenRequest(namespace="dave", scopes=["run", "read_arrays"]),
            timeout=10,
        )
        listed = admin.ListTokens(admin_service_pb2.ListTokensRequest(namespace="dave"), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            admin.CreateToken(
                admin_service_pb2.CreateTokenRequest(namespace="dave", scopes=["everything"]),
                timeout=10,
            )
        assert caught.value.code() == C.INVALID_ARGUMENT
    assert [t.id for t in listed.tokens] == [created.token.id]
    assert created.secret not in str(listed)  # listings never carry secrets
    with Client(world.server.address, token=created.secret) as dave:
        assert dave.apply("tiledb://acme/data", total) == 8  # through acme's membership


def _token(store: SqliteStore, user: str) -> tuple[str, str]:
    secret, record = store.create_token(user, ["run"], 3600.0, "to revoke")
    return secret, record.id


def _bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)
