"""Every ``Store`` method behaves the same on SQLite and on PostgreSQL (``store_engine`` runs
each test on both): namespaces, tokens, shares, UDF versions and listings, audit, tasks,
stored-result bookkeeping and graphs, with the errors each refusal raises."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
from postgres_support import StoreLocation

from tilefn.server._status import R, ServiceError
from tilefn.server._store import (
    AuditRecord,
    GraphQuery,
    GraphRecord,
    Store,
    TaskQuery,
    TaskRecord,
    UdfDraft,
    UdfQuery,
)

DRAFT = UdfDraft(
    "def f():\n    return 1\n", "f", b"\x00pickle\xff", "3.11", "Sums", ("a", "b"), "[]", "d"
)
TASK = TaskRecord("t1", "alice", "tok", "CallUdf", "alice/f@1", ("x/y",), "RUNNING", "h:1:2", 10.0)


@pytest.fixture
def store(store_engine: StoreLocation) -> Iterator[Store]:
    opened = store_engine.open()
    yield opened
    opened.close()


def reason(error: pytest.ExceptionInfo[ServiceError]) -> str:
    return R.Name(error.value.reason)


def test_namespaces_and_members(store: Store) -> None:
    store.create_namespace("acme", "organisation")
    store.create_namespace("bob", "user")
    store.create_namespace("alice", "user")
    with pytest.raises(ServiceError) as taken:
        store.create_namespace("alice", "organisation")
    assert reason(taken) == "ERROR_REASON_NAMESPACE_EXISTS"
    assert store.namespace("nobody") is None
    for user in ("bob", "alice", "alice"):  # adding twice changes nothing
        acme = store.add_member("acme", user)
    assert acme.members == ("alice", "bob")
    alice = store.namespace("alice")
    assert alice is not None and alice.kind == "user" and alice.members == ("acme",)
    with pytest.raises(ServiceError) as wrong:
        store.add_member("alice", "bob")
    assert reason(wrong) == "ERROR_REASON_NAMESPACE_INVALID"
    assert store.remove_member("acme", "bob").members == ("alice",)
    assert [n.name for n in store.namespaces()] == ["acme", "alice", "bob"]


def test_tokens(store: Store) -> None:
    store.create_namespace("alice", "user")
    store.create_namespace("bob", "user")
    _, first = store.create_token("alice", ["run"], 60.0, "laptop")
    secret, second = store.create_token("alice", ["run", "admin"], 60.0, "")
    store.create_token("bob", ["run"], 60.0, "")
    assert [t.id for t in store.tokens("alice")] == [second.id, first.id]  # newest first
    assert len(store.tokens()) == 3
    store.touch_token(second.id, 1234.5)
    found = store.token_by_secret(secret)
    assert found is not None and found.last_used_at == 1234.5
    assert found.scopes == ("run", "admin") and found.expires_at == second.expires_at
    revoked = store.revoke_token(first.id)
    assert revoked.revoked_at is not None
    assert store.revoke_token(first.id).revoked_at == revoked.revoked_at  # the first time stays
    with pytest.raises(ServiceError) as missing:
        store.revoke_token("nope")
    assert reason(missing) == "ERROR_REASON_TOKEN_NOT_FOUND"


def test_array_shares(store: Store) -> None:
    for grantee in ("bob", "*", "bob"):
        store.share_array("alice", "a", grantee, True)
    store.share_array("alice", "b", "carol", True)
    assert store.array_shares("alice", "a") == ("*", "bob")
    assert store.arrays_shared_with(frozenset({"bob", "carol"})) == {("alice", "a"), ("alice", "b")}
    store.share_array("alice", "a", "bob", False)
    assert store.array_shares("alice", "a") == ("*",)


def test_udf_versions(store: Store) -> None:
    store.create_namespace("alice", "user")
    first = store.register_udf("alice", "f", "alice", DRAFT)
    assert (first.version, first.latest_version, first.draft) == (1, 1, DRAFT)
    with pytest.raises(ServiceError) as taken:
        store.register_udf("alice", "f", "alice", DRAFT)
    assert reason(taken) == "ERROR_REASON_UDF_EXISTS"
    second = store.add_udf_version("alice", "f", "bob", dataclasses.replace(DRAFT, source="x"))
    assert (second.version, second.created_by, second.draft.source) == (2, "bob", "x")
    assert second.created_us >= first.created_us > 1 << 50  # microseconds need 64 bits
    old = store.udf_version("alice", "f", 1, None)
    assert old is not None and old.latest_version == 2 and old.draft.pickle == DRAFT.pickle
    at_first = store.udf_version("alice", "f", None, first.created_us)
    assert at_first is not None and at_first.version == 1
    assert store.udf_version("alice", "f", None, first.created_us - 1) is None
    latest = store.udf_version("alice", "f", None, None)
    assert latest is not None and latest.version == 2
    with pytest.raises(ServiceError) as missing:
        store.add_udf_version("alice", "g", "alice", DRAFT)
    assert reason(missing) == "ERROR_REASON_UDF_NOT_FOUND"
    store.share_udf("alice", "f", "bob", True)
    store.share_udf("alice", "f", "bob", True)
    assert store.udf_version("alice", "f", 2, None).shared_with == ("bob",)  # type: ignore[union-attr]
    assert store.delete_udf("alice", "f") == 2
    assert store.udf_version("alice", "f", None, None) is None


def test_udf_listings(store: Store) -> None:
    for owner in ("alice", "bob"):
        store.create_namespace(owner, "user")
    store.register_udf("alice", "mean", "alice", DRAFT)
    store.add_udf_version("alice", "mean", "alice", DRAFT)
    store.register_udf("alice", "private", "alice", dataclasses.replace(DRAFT, tags=("z",)))
    store.register_udf("bob", "Total", "bob", dataclasses.replace(DRAFT, description="Big SUM"))
    store.share_udf("bob", "Total", "alice", True)

    def names(**query: object) -> list[str]:
        return [f"{u.namespace}/{u.name}@{u.version}" for u in store.udfs(UdfQuery(**query))]  # type: ignore[arg-type]

    assert names(visible_to=None) == ["alice/mean@2", "alice/private@1", "bob/Total@1"]
    assert names(visible_to=frozenset({"bob"})) == ["bob/Total@1"]
    assert names(visible_to=frozenset({"alice"}), namespace="bob") == ["bob/Total@1"]
    assert names(visible_to=None, tag="a") == ["alice/mean@2", "bob/Total@1"]
    assert names(visible_to=None, tag="z") == ["alice/private@1"]
    assert names(visible_to=None, text="big sum") == ["bob/Total@1"]
    assert names(visible_to=None, text="TOT") == ["bob/Total@1"]
    assert names(visible_to=None, after="alice/mean", limit=1) == ["alice/private@1"]
    (listed,) = store.udfs(UdfQuery(visible_to=None, namespace="bob"))
    assert listed.draft.pickle == b"" and listed.shared_with == ("alice",)


def test_audit(store: Store) -> None:
    records = [
        AuditRecord(f"t{i}", "alice", "tok", "CallUdf", "f", ("a", "b"), 1.5 + i, 0.25, "OK", "")
        for i in range(3)
    ]
    store.add_audit(records)
    store.add_audit([dataclasses.replace(records[0], namespace="bob")])
    assert store.audit("alice", 2) == [records[2], records[1]]  # newest first
    assert len(store.audit("", 10)) == 4


def test_tasks(store: Store) -> None:
    now = time.time()
    big = 5 << 32  # byte counts need 64 bits
    done = dataclasses.replace(
        TASK, status="SUCCEEDED", created_at=now, finished_at=now + 1, peak_memory_bytes=big,
        logs="out\x00put", logs_truncated=True, cpu_seconds=0.125,
    )  # fmt: skip
    store.save_tasks([TASK])
    store.save_tasks([done])  # replaces the record
    found = store.task("t1")
    assert found is not None
    assert dataclasses.replace(found, logs=found.logs.replace("\ufffd", "\x00")) == done
    assert found.created_at == now  # times keep every bit
    assert store.unfinished_tasks() == []
    others = [
        dataclasses.replace(TASK, task_id="t2", udf="alice/f_x@2", created_at=now + 2),
        dataclasses.replace(
            TASK, task_id="t3", udf="alice/f@3", namespace="bob", created_at=now + 3
        ),
        dataclasses.replace(TASK, task_id="t4", udf="sha256:ab", status="QUEUED", created_at=5.0),
    ]
    store.save_tasks(others)
    assert {t.task_id for t in store.unfinished_tasks()} == {"t2", "t3", "t4"}

    def ids(**query: object) -> list[str]:
        return [t.task_id for t in store.tasks(TaskQuery(**query))]  # type: ignore[arg-type]

    assert ids(namespaces=None) == ["t3", "t2", "t1", "t4"]  # newest first
    assert ids(namespaces=frozenset({"alice"}), created_after=now) == ["t2", "t1"]
    assert ids(namespaces=None, status="QUEUED") == ["t4"]
    assert ids(namespaces=None, udf="alice/f") == ["t3", "t1"]  # any version, not alice/f_x
    assert ids(namespaces=None, udf="alice/f@1") == ["t1"]
    assert ids(namespaces=None, udf="ALICE/F") == []  # names keep their case on every engine
    assert ids(namespaces=None, before=(now + 2, "t2"), limit=1) == ["t1"]


def test_stored_results(store: Store) -> None:
    kept = dataclasses.replace(TASK, result_path="/r/1", result_bytes=7, result_expires_at=100.0)
    later = dataclasses.replace(kept, task_id="t2", result_bytes=5, result_expires_at=300.0)
    other = dataclasses.replace(kept, task_id="t3", namespace="bob", result_bytes=2)
    unkept = dataclasses.replace(kept, task_id="t4", result_path="", result_bytes=100)
    store.save_tasks([kept, later, other, unkept])
    assert store.stored_bytes("alice") == 12 and store.stored_bytes("carol") == 0
    assert store.stored_bytes_by_namespace() == {"alice": 12, "bob": 2}
    assert {t.task_id for t in store.expired_results(200.0)} == {"t1", "t3"}


def test_graphs(store: Store) -> None:
    first = GraphRecord("g1", "alice", "tok", "etl", "RUNNING", "h:1:2", 10.0, b"\x00spec", "[1]")
    ended = dataclasses.replace(
        first, graph_id="g2", status="FAILED", created_at=20.0, finished_at=30.0, retries=2,
        error_reason="ERROR_REASON_UDF_RAISED", counts='{"NODE_STATUS_FAILED": 1}',
    )  # fmt: skip
    other = dataclasses.replace(first, graph_id="g3", namespace="bob", created_at=30.0)
    store.save_graphs([first, ended, other])
    store.save_graphs([dataclasses.replace(first, nodes="[2]")])
    assert store.graph("g1") == dataclasses.replace(first, nodes="[2]")
    assert store.graph("nope") is None
    listed = store.graphs(GraphQuery(namespaces=frozenset({"alice"})))
    assert [g.graph_id for g in listed] == ["g2", "g1"]
    assert listed[0] == dataclasses.replace(ended, spec=b"", nodes="[]")
    assert [g.graph_id for g in store.graphs(GraphQuery(None, status="RUNNING"))] == ["g3", "g1"]
    assert [g.graph_id for g in store.graphs(GraphQuery(None, before=(30.0, "g3")))] == ["g2", "g1"]
    assert {g.graph_id for g in store.unfinished_graphs()} == {"g1", "g3"}
    assert store.forget_graphs(40.0) == 1
    assert store.graph("g2") is None


def test_heartbeats_and_cancel_requests(store: Store) -> None:
    store.beat("a:1:1", 100.0)
    store.beat("b:2:2", 50.0)
    store.beat("a:1:1", 120.0)  # a later beat replaces the earlier one
    assert sorted(store.replicas_seen(60.0)) == ["a:1:1"]
    assert sorted(store.replicas_seen(0.0)) == ["a:1:1", "b:2:2"]
    store.request_cancel("t1", 130.0)
    store.request_cancel("t1", 131.0)  # asking twice is one request
    store.request_cancel("g1", 10.0)
    assert store.take_cancel_requests([]) == []
    assert store.take_cancel_requests(["t2", "t1"]) == ["t1"]
    assert store.take_cancel_requests(["t1"]) == []  # taken once
    store.forget_replicas(60.0)
    assert store.replicas_seen(0.0) == ["a:1:1"]
    assert store.take_cancel_requests(["g1"]) == []  # older than the cut: forgotten
