"""Tasks: submit, poll, fetch, cancel, logs, stored results by reference, TTL, quota, crash."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tilefn.client import (
    AsyncClient,
    Client,
    InvalidRequestError,
    NotFoundError,
    Options,
    ResourceExhaustedError,
    StoredResult,
    TaskFailedError,
    TaskHandle,
    UdfError,
)

from conftest import ServerProcess, wait_for


def slow(seconds: float, value: int) -> int:
    import time

    time.sleep(seconds)
    return value


def test_submit_poll_fetch(server: ServerProcess) -> None:
    with Client(server.address) as client:
        handle = client.submit(lambda n: np.arange(n) * 2, 5)
        assert handle.info.status in ("QUEUED", "RUNNING", "SUCCEEDED")
        assert list(handle.result(timeout=60)) == [0, 2, 4, 6, 8]
        task = client.task(handle.task_id)
        assert task.status == "SUCCEEDED" and task.method == "SubmitUdf"
        assert task.result_stored and task.rows == 5 and task.result_bytes > 0
        assert task.udf.startswith("sha256:") and task.namespace == "tests"
        assert task.created_at <= task.started_at <= task.finished_at  # type: ignore[operator]
        assert task.result_expires_at is not None
        assert handle.task_id in [t.task_id for t in client.tasks(status="SUCCEEDED", limit=50)]
        assert list(client.fetch(handle.task_id)) == [0, 2, 4, 6, 8]  # fetch again: still there


def test_execute_records_a_task_with_resource_use(server: ServerProcess) -> None:
    with Client(server.address) as client:
        stream = client.stream(lambda: np.ones(1000))
        assert stream.value().sum() == 1000
        task = client.task(stream.task_id)  # type: ignore[arg-type]
    assert (task.status, task.method, task.rows) == ("SUCCEEDED", "ExecuteUdf", 1000)
    assert task.cpu_seconds > 0 and task.peak_memory_bytes > 0 and not task.result_stored


def test_failure_is_recorded(server: ServerProcess) -> None:
    def boom() -> None:
        print("about to fail")
        raise ValueError("nope")

    with Client(server.address) as client:
        handle = client.submit(boom)
        with pytest.raises(TaskFailedError) as caught:
            handle.result(timeout=60)
        task = caught.value.task
        assert (task.status, task.error_reason) == ("FAILED", "ERROR_REASON_UDF_RAISED")
        assert "nope" in task.error_message
        assert handle.logs().text == "about to fail\n"
        with pytest.raises(NotFoundError) as missing:
            client.fetch(handle.task_id)
        assert missing.value.reason == "ERROR_REASON_RESULT_NOT_FOUND"


def test_cancel_a_running_task(server: ServerProcess) -> None:
    with Client(server.address) as client:
        handle = client.submit(slow, 60, 1)
        wait_for(lambda: handle.status == "RUNNING", timeout=30, what="the task to run")
        task = handle.cancel()
        assert task.status == "CANCELLED" and task.error_reason == "ERROR_REASON_TASK_CANCELLED"
        assert client.call(lambda: 2) == 2  # the server goes on; the worker was replaced
        assert handle.cancel().status == "CANCELLED"  # cancelling an ended task changes nothing


def test_logs_are_kept_and_truncated(server: ServerProcess) -> None:
    def chatty() -> int:
        for i in range(2000):
            print(f"line {i:04d}")
        return 1

    with Client(server.address, options=Options(max_log_bytes=1024)) as client:
        handle = client.submit(chatty)
        logs = handle.logs(follow=True)  # waits for the task
        assert handle.result(timeout=60) == 1
    assert logs.truncated and logs.total_bytes == 2000 * 10
    assert logs.text.endswith("line 1999\n") and "line 0000" not in logs.text


def test_stored_result_passed_by_reference(server: ServerProcess) -> None:
    with Client(server.address) as client:
        first = client.submit(lambda: np.arange(10.0))
        first.wait(timeout=60)
        assert client.exec(lambda a, k: float(a.sum() * k), StoredResult(first.task_id), 2) == 90.0
        stored = client.with_options(store_result=True).stream(lambda: {"a": 1})
        assert stored.value() == {"a": 1}
        assert client.call(lambda d: d["a"] + 1, StoredResult(stored.task_id)) == 2  # type: ignore[arg-type]
        with pytest.raises(NotFoundError):
            client.call(lambda x: x, StoredResult("no-such-task"))


def test_tasks_are_private_to_their_namespace(world) -> None:  # type: ignore[no-untyped-def]
    with world.client("alice") as alice, world.client("bob") as bob:
        handle = alice.submit(lambda: 7)
        assert handle.result(timeout=60) == 7
        for attempt in (
            lambda: bob.task(handle.task_id),
            lambda: bob.fetch(handle.task_id),
            lambda: bob.cancel(handle.task_id),
            lambda: bob.call(lambda x: x, StoredResult(handle.task_id)),
        ):
            with pytest.raises(NotFoundError):
                attempt()
        assert handle.task_id not in [t.task_id for t in bob.tasks()]
        assert handle.task_id in [t.task_id for t in alice.tasks()]


def test_ttl_expiry_and_quota(make_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = make_server(
        "--store", str(tmp_path / "s.sqlite3"), "--no-auth", "--result-quota-bytes", "20000"
    )
    with Client(server.address) as client:
        short = client.with_options(store_result=True, result_ttl=0.5)
        stream = short.stream(lambda: np.zeros(100))
        stream.value()
        task_id = stream.task_id
        assert client.task(task_id).result_stored  # type: ignore[arg-type]
        with pytest.raises(ResourceExhaustedError) as caught:
            client.with_options(store_result=True).exec(lambda: np.zeros(10_000))
        assert caught.value.reason == "ERROR_REASON_RESULT_QUOTA_EXCEEDED"
        with pytest.raises(InvalidRequestError) as too_long:
            client.with_options(store_result=True, result_ttl=10**9).exec(lambda: 1)
        assert too_long.value.metadata["option"] == "result_ttl"
    # The sweep runs at start and every minute; a restart runs it now.
    assert server.stop() == 0
    time.sleep(0.6)  # the TTL itself has to pass
    again = make_server("--store", str(tmp_path / "s.sqlite3"), "--no-auth")
    with Client(again.address) as client, pytest.raises(NotFoundError) as expired:
        client.fetch(task_id)  # type: ignore[arg-type]
    assert expired.value.reason == "ERROR_REASON_RESULT_NOT_FOUND"
    assert not list((tmp_path / "results").rglob("*.arrows"))


def test_a_killed_server_leaves_no_task_running(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    store = str(tmp_path / "s.sqlite3")
    server = ServerProcess(tmp_path, "--store", store, "--no-auth")  # not make_server's: killed
    try:
        with Client(server.address) as client:
            handle = client.submit(slow, 60, 1)
            wait_for(lambda: handle.status == "RUNNING", timeout=30, what="the task to run")
            time.sleep(0.7)  # the batching writer has written RUNNING (every 0.5 s)
    finally:
        os.kill(server.pid, signal.SIGKILL)
        assert server.stop() == -signal.SIGKILL
    again = make_server("--store", store, "--no-auth")
    with Client(again.address) as client:
        task = client.task(handle.task_id)
    assert (task.status, task.error_reason) == ("FAILED", "ERROR_REASON_SERVER_RESTARTED")
    assert not list((tmp_path / "results").rglob("*.partial"))


def test_udf_errors_of_executions_still_raise(server: ServerProcess) -> None:
    with Client(server.address) as client, pytest.raises(UdfError):
        client.exec(lambda: 1 / 0)


def test_command_line(server: ServerProcess) -> None:
    def chatty() -> int:
        print("hello from the task")
        return 3

    with Client(server.address) as client:
        handle = client.submit(chatty)
        handle.wait(timeout=60)

    def tilefn(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tilefn.client._cli", *args, "-t", server.address]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    listed = tilefn("tasks", "--status", "succeeded", "--limit", "500")
    assert listed.returncode == 0, listed.stderr
    (line,) = [row for row in listed.stdout.splitlines() if row.startswith(handle.task_id)]
    assert "SUCCEEDED" in line and "SubmitUdf" in line and "1 rows" in line
    logs = tilefn("logs", handle.task_id, "--follow")
    assert logs.returncode == 0 and logs.stdout == "hello from the task\n"
    missing = tilefn("logs", "no-such-task")
    assert missing.returncode == 1 and "TASK_NOT_FOUND" in missing.stderr


def test_drain_cancels_and_records_what_outlives_the_grace(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    store = str(tmp_path / "s.sqlite3")
    server = make_server("--store", store, "--no-auth", "--drain-grace", "1")
    with Client(server.address) as client:
        quick, stuck = client.submit(slow, 0.3, 1), client.submit(slow, 60, 2)
        wait_for(lambda: stuck.status == "RUNNING", timeout=30, what="the task to run")
    assert server.stop() == 0  # SIGTERM: the grace passes, the straggler is cancelled
    again = make_server("--store", store, "--no-auth")
    with Client(again.address) as client:
        assert client.task(quick.task_id).status == "SUCCEEDED"
        assert client.fetch(quick.task_id) == 1
        task = client.task(stuck.task_id)
    assert (task.status, task.error_reason) == ("CANCELLED", "ERROR_REASON_TASK_CANCELLED")


def test_async_client_tasks(server: ServerProcess) -> None:
    async def scenario() -> tuple[int, str, str, list[str], str]:
        async with AsyncClient(server.address) as client:
            handle = await client.submit(lambda: print("hi") or 6)
            value = await handle.result(timeout=60)
            logs = await handle.logs()
            stuck = await client.submit(slow, 60, 0)
            while await stuck.status() != "RUNNING":
                await asyncio.sleep(0.02)
            cancelled = await stuck.cancel()
            listed = [t.task_id for t in await client.tasks(limit=20)]
            return value, logs.text, cancelled.status, listed, handle.task_id

    value, text, status, listed, task_id = asyncio.run(scenario())
    assert (value, text, status) == (6, "hi\n", "CANCELLED") and task_id in listed


class Follower:
    """Follows a task's logs on a thread of its own, so that the test waits with a deadline and,
    past it, fails saying how far the task got instead of hanging."""

    def __init__(self, handle: TaskHandle) -> None:
        self.handle = handle
        self.seen = ""
        self._chunks: queue.Queue[str | None] = queue.Queue()  # None: the follow ended
        self._error: BaseException | None = None
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for chunk in self.handle.follow():
                self._chunks.put(chunk)
        except Exception as exc:  # reported by until()
            self._error = exc
        finally:
            self._chunks.put(None)

    def until(self, text: str, timeout: float = 60.0) -> str:
        """What arrived once ``text`` has; fails after ``timeout`` s or if the follow ends."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            try:
                chunk = self._chunks.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {text!r} after {timeout:g} s of following: {self._state()}")
            if chunk is None:
                pytest.fail(f"the follow ended before {text!r} ({self._error!r}): {self._state()}")
            self.seen += chunk
        return self.seen

    def ended(self, timeout: float = 60.0) -> bool:
        """Whether the follow ends within ``timeout`` s with nothing more."""
        try:
            return self._chunks.get(timeout=timeout) is None
        except queue.Empty:
            return False

    def _state(self) -> str:
        """Where it stuck: a QUEUED task waits for a slot; the server-side snapshot shows
        whether the worker's output reached the server at all."""
        snapshot = self.handle.logs().text
        return f"follower saw {self.seen!r}, task {self.handle.status}, server has {snapshot!r}"


def test_logs_are_followed_live(server: ServerProcess) -> None:
    def chatty_then_stuck() -> None:
        import time

        print("epoch 0", flush=True)
        time.sleep(0.3)
        print("epoch 1", flush=True)
        time.sleep(3600)

    with Client(server.address) as client:
        handle = client.submit(chatty_then_stuck)
        try:
            follower = Follower(handle)  # arrives while the UDF runs: it never ends by itself
            assert follower.until("epoch 1\n") == "epoch 0\nepoch 1\n"
            assert handle.status == "RUNNING"
            so_far = handle.logs()  # without follow: what was printed so far
            assert so_far.text == "epoch 0\nepoch 1\n" and so_far.total_bytes == 16
        finally:
            assert handle.cancel().status == "CANCELLED"  # never left holding a slot
        assert follower.ended()  # the follow ends with the task


def test_other_threads_output_is_followed_live(server: ServerProcess) -> None:
    def helper_prints_then_stuck() -> None:
        import threading
        import time

        threading.Thread(target=print, args=("from a helper thread",)).start()
        time.sleep(3600)  # the task's own thread never prints

    with Client(server.address) as client:
        handle = client.submit(helper_prints_then_stuck)
        try:
            assert Follower(handle).until("thread\n") == "from a helper thread\n"
        finally:
            assert handle.cancel().status == "CANCELLED"


def test_a_queued_task_is_followed_from_its_start(
    make_server: Callable[..., ServerProcess],
) -> None:
    def chatty() -> None:
        import time

        print("started", flush=True)
        time.sleep(3600)

    server = make_server("--max-running", "1")
    with Client(server.address) as client:
        blocker = client.submit(slow, 60, 0)
        wait_for(lambda: blocker.status == "RUNNING", timeout=30, what="the blocker to run")
        handle = client.submit(chatty)
        try:
            follower = Follower(handle)  # follows while the task waits for the only slot
            wait_for(lambda: handle.status == "QUEUED", what="the task to be queued")
            assert blocker.cancel().status == "CANCELLED"  # the slot passes to the task
            assert follower.until("started\n") == "started\n"
        finally:
            assert handle.cancel().status == "CANCELLED"
            blocker.cancel()
        assert follower.ended()


def test_printing_from_threads_keeps_the_stream_intact(server: ServerProcess) -> None:
    def threads_print() -> list[int]:
        import threading

        import numpy as np

        def chatter() -> None:
            for i in range(3000):
                print(f"thread line {i}", flush=True)

        helpers = [threading.Thread(target=chatter) for _ in range(3)]
        for helper in helpers:
            helper.start()
        out = [int(np.arange(1000).sum()) for _ in range(200)]
        for helper in helpers:
            helper.join()
        print("main done", flush=True)
        return out

    with Client(server.address) as client:
        handle = client.submit(threads_print)
        assert handle.result(timeout=120) == [499500] * 200
        assert handle.logs().text.endswith("main done\n")


@pytest.mark.parametrize("forged", [2**70, -(10**15)])
def test_forged_done_figures_fail_only_that_task(server: ServerProcess, forged: int) -> None:
    """A UDF can write its own DONE frame; impossible figures must neither block the store's
    writes for everyone nor reach the quota arithmetic."""

    def forge(value: int) -> None:
        import contextlib
        import gc
        import json
        import os
        import socket
        import struct

        body = json.dumps(
            {"rows": 0, "batches": 0, "ipc_bytes": value, "wall_seconds": 0,
             "cpu_seconds": 0, "peak_memory_bytes": 0}
        ).encode()  # fmt: skip
        for sock in [o for o in gc.get_objects() if isinstance(o, socket.socket)]:
            with contextlib.suppress(OSError):
                sock.sendall(struct.pack("!BI", 4, len(body)) + body)
        os._exit(0)

    with Client(server.address) as client:
        handle = client.submit(forge, forged)
        task = handle.wait(timeout=60)
        assert task.status == "FAILED"
        assert task.error_reason == "ERROR_REASON_WORKER_PROTOCOL_VIOLATION"
        after = client.submit(lambda: 1)
        assert after.result(timeout=60) == 1
        wait_for(
            lambda: after.task_id in [t.task_id for t in client.tasks(limit=50)],
            what="later tasks to reach the store",
        )
