"""Several replicas sharing one store, called through one ``ipv4:`` target with round robin.

Each replica is a real server process on its own loopback port; all share the session's store
(and so its results folder). The client is the stock ``Client``: its channel balances calls
round-robin, skips draining replicas and retries calls refused with UNAVAILABLE
(``client/_channel.py``).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from tilefn.client import Client, TilefnError
from tilefn.server._replicas import DEAD_AFTER
from tilefn.server._sqlite import SqliteStore
from tilefn.server._store import TaskRecord
from tilefn.server._stores import open_store

from .conftest import SESSION_STORE, ServerProcess, children, process_gone, wait_for

REPLICAS = 3


def target(replicas: list[ServerProcess]) -> str:
    """The one target naming every replica: ``ipv4:127.0.0.1:p1,127.0.0.1:p2,...``."""
    return "ipv4:" + ",".join(r.address for r in replicas)


@pytest.fixture
def replicas(make_server: Callable[..., ServerProcess]) -> list[ServerProcess]:
    return [make_server("--drain-grace", "10") for _ in range(REPLICAS)]


def nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@dataclass
class Load:
    """Callers that run ``nap`` back to back until stopped, recording every outcome."""

    client: Client
    seconds: float
    callers: int = 4
    ok: list[float] = field(default_factory=list)  # when each successful call started
    failed: list[tuple[float, BaseException]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._run) for _ in range(self.callers)]
        for thread in self._threads:
            thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                assert self.client.exec(nap, self.seconds) == self.seconds
                self.ok.append(started)
            except (TilefnError, grpc.RpcError) as error:
                self.failed.append((started, error))

    def wait_for_calls(self, count: int) -> None:
        wait_for(lambda: len(self.ok) >= count, timeout=60, what=f"{count} calls")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def replicas_that_ran(client: Client, task_ids: list[str]) -> set[str]:
    return {client.task(task_id).replica for task_id in task_ids}


def test_each_replica_names_itself(replicas: list[ServerProcess]) -> None:
    names = set()
    for replica in replicas:
        with Client(replica.address) as client:
            names.add(client.server_info()["replica"])
    assert len(names) == REPLICAS


def test_calls_spread_across_every_replica(replicas: list[ServerProcess]) -> None:
    with Client(target(replicas)) as client:
        client.exec(nap, 0)  # connects; round robin then cycles over the ready replicas
        wait_for(lambda: len(_infos(client, 2 * REPLICAS)) == REPLICAS, what="every replica")
        handles = [client.submit(nap, 0) for _ in range(3 * REPLICAS)]
        assert [h.result(timeout=60) for h in handles] == [0] * len(handles)
        # each task is readable through any replica: they share the store
        assert replicas_that_ran(client, [h.task_id for h in handles]) == _infos(client, 6)


def _infos(client: Client, calls: int) -> set[str]:
    return {client.server_info()["replica"] for _ in range(calls)}


def test_sigterm_of_one_replica_under_load_fails_no_call(replicas: list[ServerProcess]) -> None:
    victim = replicas[0]
    with Client(target(replicas)) as client, Load(client, seconds=0.2) as load:
        load.wait_for_calls(20)
        victim.process.send_signal(signal.SIGTERM)
        assert victim.process.wait(60) == 0
        served = len(load.ok)
        load.wait_for_calls(served + 20)  # the others carry on
    assert load.failed == []


def test_kill_9_of_one_replica_fails_only_its_running_calls(
    tmp_path: Path, replicas: list[ServerProcess]
) -> None:
    victim = ServerProcess(tmp_path)  # not make_server's: it must not be stopped cleanly
    template = children(victim.pid)
    try:
        with Client(target([victim, *replicas])) as client, Load(client, seconds=1.0) as load:
            load.wait_for_calls(8)
            killed_at = time.monotonic()
            victim.process.kill()
            victim.process.wait()
            served = len(load.ok)
            load.wait_for_calls(served + 12)
    finally:
        victim.process.kill()
        victim.stop()
    for pid in template:  # the sandbox does not outlive its server
        wait_for(lambda pid=pid: process_gone(pid), what=f"template {pid} to exit")
    # at most one call per caller was running on the victim; nothing started later failed
    assert len(load.failed) <= load.callers
    assert all(started < killed_at for started, _ in load.failed)
    for _, error in load.failed:
        assert _code(error) in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED}, error


def _code(error: BaseException) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    return code() if callable(code) else code


def chatty() -> int:
    import time

    print("started", flush=True)
    time.sleep(1.5)
    print("done", flush=True)
    return 7


def test_logs_followed_on_another_replica_arrive_when_the_task_ends(
    replicas: list[ServerProcess],
) -> None:
    runner, other = replicas[0], replicas[1]
    with Client(runner.address) as on_runner, Client(other.address) as on_other:
        task_id = on_runner.submit(chatty).task_id
        assert on_other.task(task_id).status in ("QUEUED", "RUNNING")
        assert "".join(on_other.follow_logs(task_id)) == "started\ndone\n"
        info = on_other.task(task_id)
        assert (info.status, info.replica) == ("SUCCEEDED", on_runner.server_info()["replica"])
        assert on_other.fetch(task_id) == 7


def forever() -> None:
    import os
    import time

    print(os.getpid(), flush=True)
    time.sleep(3600)


def test_a_task_is_cancelled_through_any_replica(replicas: list[ServerProcess]) -> None:
    runner, other = replicas[0], replicas[1]
    with Client(runner.address) as on_runner, Client(other.address) as on_other:
        task_id = on_runner.submit(forever).task_id
        pid = int(next(iter(on_runner.follow_logs(task_id))).split()[0])
        on_other.cancel(task_id)
        wait_for(lambda: on_other.task(task_id).status == "CANCELLED", what="CANCELLED")
        wait_for(lambda: runner.worker_gone(pid), what="its worker to be killed")


def test_a_graph_is_cancelled_through_any_replica(replicas: list[ServerProcess]) -> None:
    runner, other = replicas[0], replicas[1]
    with Client(runner.address) as on_runner, Client(other.address) as on_other:
        graph = on_runner.graph("stuck")
        graph.submit(forever)
        graph.run(wait=False)
        seen = on_other.graph_by_id(graph.graph_id)
        assert seen.status == "RUNNING"
        seen.cancel()
        wait_for(lambda: on_other.graph_by_id(graph.graph_id).status == "CANCELLED", what="end")
        assert graph.status == "CANCELLED"


def test_tasks_of_a_replica_on_another_host_fail_once_its_heartbeat_stops(
    tmp_path: Path, make_server: Callable[..., ServerProcess]
) -> None:
    """Replicas on other hosts are judged by their heartbeats in the shared store."""
    store_path = tmp_path / "store.sqlite3"
    store = SqliteStore(store_path)
    now = time.time()
    store.beat("live-host:1:1", now)
    store.beat("dead-host:1:1", now - DEAD_AFTER - 5)
    store.create_namespace("ops", "user")
    secret, _ = store.create_token("ops", ["run"], 3600, "test")
    ghost = TaskRecord(
        "t-dead", "ops", "tok", "SubmitUdf", "u", (), "RUNNING", "dead-host:1:1", now
    )
    alive = dataclasses.replace(ghost, task_id="t-live", owner="live-host:1:1")
    store.save_tasks([ghost, alive])
    store.close()
    server = make_server("--store", str(store_path))
    with Client(server.address, token=secret) as client:
        failed = client.task("t-dead")
        assert (failed.status, failed.error_reason) == ("FAILED", "ERROR_REASON_SERVER_RESTARTED")
        assert client.task("t-live").status == "RUNNING"


def test_connections_are_renewed_without_failing_calls(
    make_server: Callable[..., ServerProcess],
) -> None:
    """--max-connection-age: the server sends GOAWAY; a call in flight finishes, the next
    ones go over a new connection."""
    server = make_server("--max-connection-age", "0.5")
    with Client(server.address) as client:
        assert client.exec(nap, 2.0) == 2.0  # outlives its connection's age
        assert [client.exec(nap, 0.3) for _ in range(6)] == [0.3] * 6


def test_replicas_on_postgresql_share_tasks_results_and_cancels(
    postgres_uri: str, make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """As on several hosts: the store is PostgreSQL, the results a shared folder."""
    store = open_store(postgres_uri)
    store.create_namespace("ops", "user")
    token, _ = store.create_token("ops", ["run"], 3600, "replicas")
    store.close()
    flags = ("--store", postgres_uri, "--results-dir", str(tmp_path / "results"))
    pair = [make_server(*flags) for _ in range(2)]
    with Client(target(pair), token=token) as client:
        handles = [client.submit(nap, n / 100) for n in range(8)]
        assert [h.result(timeout=60) for h in handles] == [n / 100 for n in range(8)]
        assert len(replicas_that_ran(client, [h.task_id for h in handles])) == 2
    with (
        Client(pair[0].address, token=token) as first,
        Client(pair[1].address, token=token) as second,
    ):
        task_id = first.submit(forever).task_id
        wait_for(lambda: second.task(task_id).status == "RUNNING", what="RUNNING")
        second.cancel(task_id)
        wait_for(lambda: second.task(task_id).status == "CANCELLED", what="CANCELLED")


def _free_pair() -> int:
    """A port p such that p and p + 1 are both free on loopback (now)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return int(port)
    raise RuntimeError("no two consecutive free ports")


def test_make_replicas_script_serves_one_target_and_drains_all(tmp_path: Path) -> None:
    port = _free_pair()
    env = dict(os.environ, PY=sys.executable, HOST="127.0.0.1", PORT=str(port), REPLICAS="2",
               DATA=str(tmp_path / "data"), STORE=str(SESSION_STORE), SANDBOX="strict")  # fmt: skip
    script = subprocess.Popen(
        ["bash", "scripts/replicas.sh"], env=env, stdout=subprocess.PIPE, text=True,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert script.stdout is not None
        lines = iter(script.stdout.readline, "")
        shown = next(line for line in lines if line.startswith("replicas target: "))
        spread = shown.removeprefix("replicas target: ").strip()
        assert spread == f"ipv4:127.0.0.1:{port},127.0.0.1:{port + 1}"
        servers = children(script.pid)
        with Client(spread) as client:
            wait_for(lambda: len(_infos(client, 4)) == 2, what="both replicas to answer")
        script.send_signal(signal.SIGTERM)
        assert script.wait(60) == 0
        for pid in servers:
            wait_for(lambda pid=pid: process_gone(pid), what=f"replica {pid} to exit")
    finally:
        if script.poll() is None:
            script.kill()
