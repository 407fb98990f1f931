"""Registered UDFs: registration, versions, time travel, sharing, deletion, foreign callers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta

import grpc
import pyarrow as pa
import pytest
from identity_support import World

from tilefn.client import (
    AlreadyExistsError,
    AsyncClient,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    Registered,
)
from tilefn.client._exceptions import from_rpc_error
from tilefn.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
    udf_pb2,
    udf_service_pb2,
    udf_service_pb2_grpc,
)

from conftest import authed_channel

C = grpc.StatusCode
ADD = "def add(a, b=1):\n    return a + b\n"


@pytest.fixture
def registered(world: World) -> Iterator[str]:
    """alice/add version 1 (a + b), version 2 (a * b); deleted afterwards."""
    with world.client("alice") as alice:
        alice.register("alice/add", ADD, description="adds numbers", tags=["math"])
        alice.update("alice/add", "def mul(a, b=1):\n    return a * b\n", tags=["math"])
        yield "alice/add"
        alice.delete("alice/add")


def test_versions_and_time_travel(world: World, registered: str) -> None:
    with world.client("alice") as alice:
        v1, v2 = alice.udf(f"{registered}@1"), alice.udf(registered)
        assert (v1.version, v2.version, v2.latest_version) == (1, 2, 2)
        assert v1.source == ADD and v1.description == "adds numbers" and not v1.pickled
        assert alice.exec(registered, 3, 4) == 12  # latest
        assert alice.exec(f"{registered}@1", 3, 4) == 7
        assert alice.call(Registered(f"{registered}@2"), 3, 4) == 12
        at_v1 = v1.created_at.isoformat().replace("+00:00", "Z")
        between = (v1.created_at + (v2.created_at - v1.created_at) / 2).isoformat()
        assert alice.exec(f"{registered}@{at_v1}", 3, 4) == 7
        assert alice.exec(f"{registered}@{between}", 3, 4) == 7
        assert alice.exec(f"{registered}@{v2.created_at.isoformat()}", 3, 4) == 12
        before = (v1.created_at - timedelta(seconds=1)).isoformat()
        for missing in (f"{registered}@3", f"{registered}@{before}"):
            with pytest.raises(NotFoundError) as caught:
                alice.exec(missing, 3, 4)
            assert caught.value.reason == "ERROR_REASON_UDF_VERSION_NOT_FOUND"
        with pytest.raises(AlreadyExistsError):
            alice.register(registered, ADD)


def test_sharing_matrix(world: World, registered: str) -> None:
    with world.client("alice") as alice, world.client("bob") as bob:
        with pytest.raises(NotFoundError) as hidden:
            bob.exec(registered, 1)
        assert hidden.value.reason == "ERROR_REASON_UDF_NOT_FOUND"
        with pytest.raises(NotFoundError):
            bob.udf(registered)
        assert alice.share(registered, "bob").shared_with == ("bob",)
        assert bob.exec(registered, 2, 5) == 10  # shared: runs, and is readable
        info = bob.udf(f"{registered}@1")
        assert info.source == ADD and info.shared_with == ()  # shares shown to managers only
        assert [u.name for u in bob.udfs()] == [registered]
        with pytest.raises(PermissionDeniedError):  # visible, but not bob's to change
            bob.update(registered, ADD)
        with pytest.raises(PermissionDeniedError):
            bob.share(registered, "carol")
        with pytest.raises(PermissionDeniedError):
            bob.delete(registered)
        alice.unshare(registered, "bob")
        with pytest.raises(NotFoundError):
            bob.exec(registered, 1)
        assert bob.udfs() == []


def test_organisation_udfs_and_public_shares(world: World) -> None:
    with world.client("alice") as alice, world.client("carol") as carol, world.client("bob") as bob:
        with pytest.raises(PermissionDeniedError):  # bob is not a member of acme
            bob.register("acme/twice", "def twice(x):\n    return 2 * x\n")
        alice.register("acme/twice", "def twice(x):\n    return 2 * x\n", tags=["org"])
        try:
            with pytest.raises(NotFoundError):
                carol.exec("acme/twice", 4)
            alice.share("acme/twice", "*")
            assert carol.exec("acme/twice", 4) == 8
            assert [u.name for u in carol.udfs(tag="org")] == ["acme/twice"]
            assert carol.udfs(tag="none") == []
            assert [u.name for u in carol.udfs(text="TWI")] == ["acme/twice"]
        finally:
            alice.delete("acme/twice")


def test_pickled_udf_with_signature(world: World) -> None:
    def scale(values: list[float], factor: float = 2.0, *, offset: int = 0) -> list[float]:
        return [v * factor + offset for v in values]

    with world.client("alice") as alice:
        info = alice.register("alice/scale", scale, description="scales a list")
        try:
            assert info.pickled and "def scale" in info.source and info.entry_point == "scale"
            assert [
                (p["name"], p.get("kind", ""), p.get("default_json")) for p in info.parameters
            ] == [
                ("values", "", None),
                ("factor", "", "2.0"),
                ("offset", "PARAMETER_KIND_KEYWORD_ONLY", "0"),
            ]
            assert info.parameters[0]["annotation"] == "list[float]"
            alice.share("alice/scale", "bob")
            with world.client("bob") as bob:
                assert bob.exec("alice/scale", [1.0, 2.0], offset=1) == [3.0, 5.0]
        finally:
            alice.delete("alice/scale")


def test_json_arguments_from_a_foreign_client(world: World) -> None:
    """What a Node.js or Go client does: raw protos, JSON arguments, Arrow IPC back; no pickle
    anywhere."""
    metadata = (("authorization", f"Bearer {world.tokens['alice']}"),)
    with authed_channel(world.server.address, metadata) as channel:
        registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        registry.RegisterUdf(
            registry_service_pb2.RegisterUdfRequest(
                namespace="alice",
                name="stats",
                definition=registry_service_pb2.UdfDefinition(
                    source="def stats(values, scale):\n"
                    "    return {'n': len(values), 'total': sum(values) * scale}\n",
                    parameters=[
                        registry_service_pb2.Parameter(name="values", annotation="list[float]"),
                        registry_service_pb2.Parameter(name="scale", annotation="float"),
                    ],
                ),
            ),
            timeout=10,
        )
        request = udf_service_pb2.ExecuteUdfRequest(
            udf=udf_pb2.UdfSpec(registered="alice/stats"),
            args=[udf_pb2.Argument(json=json.dumps([1.5, 2.5]))],
            kwargs={"scale": udf_pb2.Argument(json="10")},
        )
        reply = udf_service_pb2_grpc.UdfServiceStub(channel).CallUdf(request, timeout=60)
        got = registry.GetUdf(registry_service_pb2.GetUdfRequest(name="alice/stats"), timeout=10)
        registry.DeleteUdf(registry_service_pb2.DeleteUdfRequest(name="alice/stats"), timeout=10)
    table = pa.ipc.open_stream(reply.ipc).read_all()  # any Arrow library decodes this
    assert table.schema.metadata[b"tilefn.kind"] == b"json"  # docs/results.md: one JSON cell
    assert json.loads(table.column("json")[0].as_py()) == {"n": 2, "total": 40.0}
    assert [p.name for p in got.definition.parameters] == ["values", "scale"]
    assert got.python_version and not got.definition.HasField("pickled")


def test_deleting_does_not_break_a_running_task(world: World) -> None:
    metadata = (("authorization", f"Bearer {world.tokens['alice']}"),)
    with world.client("alice") as alice, authed_channel(world.server.address, metadata) as channel:
        alice.register("alice/slow", "import time\ndef slow():\n    time.sleep(1)\n    return 7\n")
        request = udf_service_pb2.ExecuteUdfRequest(udf=udf_pb2.UdfSpec(registered="alice/slow"))
        responses = udf_service_pb2_grpc.UdfServiceStub(channel).ExecuteUdf(request, timeout=60)
        assert next(responses).HasField("task")  # sent once the UDF was resolved
        assert alice.delete("alice/slow") == 1
        rest = list(responses)
        assert rest[-1].HasField("summary") and rest[-1].summary.rows == 1
        with pytest.raises(NotFoundError):
            alice.exec("alice/slow")


@pytest.mark.parametrize(
    ("namespace", "name", "reason"),
    [
        ("alice", "", "ERROR_REASON_UDF_NAME_INVALID"),
        ("alice", "has space", "ERROR_REASON_UDF_NAME_INVALID"),
        ("alice", "x" * 200, "ERROR_REASON_UDF_NAME_INVALID"),
        ("alice", "f", "ERROR_REASON_UDF_MISSING"),  # no source, no pickle
    ],
)
def test_invalid_registrations(world: World, namespace: str, name: str, reason: str) -> None:
    metadata = (("authorization", f"Bearer {world.tokens['alice']}"),)
    with authed_channel(world.server.address, metadata) as channel:
        registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            registry.RegisterUdf(
                registry_service_pb2.RegisterUdfRequest(namespace=namespace, name=name),
                timeout=10,
            )
    assert caught.value.code() == C.INVALID_ARGUMENT
    assert from_rpc_error(caught.value).reason == reason


def test_invalid_definition_metadata(world: World) -> None:
    with world.client("alice") as alice, pytest.raises(InvalidRequestError):
        alice.register("alice/tagged", ADD, tags=["x" * 100])


def test_restart_keeps_everything(world: World) -> None:
    with world.client("alice") as alice:
        alice.register("alice/keep", "def keep():\n    return 1\n")
        alice.update("alice/keep", "def keep():\n    return 2\n")
        alice.share("alice/keep", "bob")
    world.restart()
    with world.client("bob") as bob:  # the same token still works
        assert bob.exec("alice/keep@1") == 1
        assert bob.exec("alice/keep") == 2
    with world.client("alice") as alice:
        assert alice.udf("alice/keep").shared_with == ("bob",)
        alice.delete("alice/keep")


def test_audit_records_who_ran_what(world: World, registered: str) -> None:
    with world.client("alice") as alice:
        alice.exec(registered, 1, 1)
        alice.apply("tiledb://alice/private", lambda d: int(d["v"].sum()))
        with pytest.raises(NotFoundError):
            alice.exec("alice/no-such-udf")
    metadata = (("authorization", f"Bearer {world.tokens['admin']}"),)
    with authed_channel(world.server.address, metadata) as channel:
        admin = admin_service_pb2_grpc.AdminServiceStub(channel)
        records = admin.ListAuditRecords(
            admin_service_pb2.ListAuditRecordsRequest(namespace="alice", limit=3), timeout=10
        ).records
    missing, applied, ran = records  # newest first
    assert (ran.udf, ran.outcome, ran.method) == (f"{registered}@2", "OK", "ExecuteUdf")
    assert applied.udf.startswith("sha256:") and list(applied.arrays) == ["tiledb://alice/private"]
    assert (missing.outcome, missing.reason) == ("NOT_FOUND", "ERROR_REASON_UDF_NOT_FOUND")
    assert all(r.token_id and r.task_id and r.duration.ToNanoseconds() >= 0 for r in records)
    log = world.server.log_path.read_text()
    assert not any(secret in log or secret in str(records) for secret in world.tokens.values())


def test_async_client_registry(world: World) -> None:
    async def scenario() -> tuple[int, list[str], int, list[str]]:
        async with AsyncClient(world.server.address, token=world.tokens["alice"]) as alice:
            await alice.register("alice/inc", "def inc(x):\n    return x + 1\n")
            await alice.update("alice/inc", "def inc(x):\n    return x + 2\n")
            await alice.share("alice/inc", "bob")
            shares = await alice.share_array("tiledb://alice/private", "bob")
            await alice.share_array("tiledb://alice/private", "bob", share=False)
            result = await alice.exec("alice/inc@1", 1)
            names = [u.name for u in await alice.udfs("alice")]
            return result, names, await alice.delete("alice/inc"), shares

    assert asyncio.run(scenario()) == (2, ["alice/inc"], 2, ["bob"])


def test_update_keeps_description_and_tags_unless_given(world: World) -> None:
    with world.client("alice") as alice:
        alice.register("alice/tagged2", ADD, description="adds", tags=["math"])
        try:
            kept = alice.update("alice/tagged2", ADD)
            assert (kept.description, kept.tags) == ("adds", ("math",))
            changed = alice.update("alice/tagged2", ADD, tags=[])
            assert (changed.description, changed.tags) == ("adds", ())
        finally:
            alice.delete("alice/tagged2")


def test_a_pickle_of_another_python_is_refused_at_registration(world: World) -> None:
    definition = registry_service_pb2.UdfDefinition(
        pickled=udf_pb2.PickledValue(data=b"\x80\x05N.", python_version="2.7")
    )
    metadata = (("authorization", f"Bearer {world.tokens['alice']}"),)
    with authed_channel(world.server.address, metadata) as channel:
        registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            registry.RegisterUdf(
                registry_service_pb2.RegisterUdfRequest(
                    namespace="alice", name="old", definition=definition
                ),
                timeout=10,
            )
    assert caught.value.code() == C.FAILED_PRECONDITION
