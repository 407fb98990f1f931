"""What a UDF prints comes back with its result: the last bytes, with the total and a marker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tilefn.client import Client, InvalidRequestError, UdfError

from conftest import ServerProcess


def chatty(n: int) -> int:
    import sys

    for i in range(n):
        print(f"line {i}")
    sys.stderr.write("to stderr\n")
    return n


def test_printed_output_arrives_with_the_result(client: Client) -> None:
    stream = client.stream(chatty, 3)
    assert stream.value() == 3
    assert stream.logs is not None
    assert stream.logs.text == "line 0\nline 1\nline 2\nto stderr\n"
    assert stream.logs.total_bytes == len(stream.logs.text)
    assert not stream.logs.truncated


def test_silent_udf_has_no_logs(client: Client) -> None:
    stream = client.stream(lambda: 1)
    assert stream.value() == 1
    assert stream.logs is None


def test_only_the_last_bytes_are_kept(client: Client) -> None:
    stream = client.with_options(max_log_bytes=1000).stream(chatty, 10_000)
    assert stream.value() == 10_000
    logs = stream.logs
    assert logs is not None and logs.truncated
    assert len(logs.text.encode()) == 1000
    assert logs.text.endswith("line 9999\nto stderr\n")
    expected_total = sum(len(f"line {i}\n") for i in range(10_000)) + len("to stderr\n")
    assert logs.total_bytes == expected_total


def test_a_failed_udf_keeps_what_it_printed(client: Client) -> None:
    def fails() -> None:
        print("about to fail")
        raise ValueError("boom")

    with pytest.raises(UdfError) as caught:
        client.exec(fails)
    assert caught.value.logs == "about to fail\n"


def test_logs_of_one_task_do_not_reach_the_next(client: Client) -> None:
    for n in (2, 1):  # the same worker may run both (per-namespace reuse)
        stream = client.stream(chatty, n)
        stream.value()
        assert stream.logs is not None
        assert stream.logs.text.count("line") == n


def test_undecodable_output_is_replaced_not_fatal(client: Client) -> None:
    def odd() -> str:
        print("snow \u2603 and a lone surrogate \udc80")
        return "ok"

    stream = client.stream(odd)
    assert stream.value() == "ok"
    assert stream.logs is not None
    assert stream.logs.text.startswith("snow \u2603 and a lone surrogate ")


def test_cut_inside_a_character_is_replaced(client: Client) -> None:
    def snowmen() -> int:
        print("\u2603" * 100, end="")  # 3 bytes each
        return 0

    stream = client.with_options(max_log_bytes=10).stream(snowmen)
    stream.value()
    assert stream.logs is not None
    assert stream.logs.text == "\ufffd" + "\u2603" * 3
    assert stream.logs.total_bytes == 300


def test_log_limit_above_the_server_maximum_is_refused(client: Client) -> None:
    limit = int(client.server_info()["limits"]["max_log_bytes"])
    with pytest.raises(InvalidRequestError) as caught:
        client.with_options(max_log_bytes=limit + 1).exec(lambda: 1)
    assert caught.value.reason == "ERROR_REASON_OPTION_INVALID"
    assert "max_log_bytes" in str(caught.value)


def test_no_output_of_a_task_reaches_the_next_one_late(server: ServerProcess) -> None:
    def burst() -> int:
        print("a" * 100)  # sent at once as a live part
        print("b" * 50)  # within the part interval: still unsent when the task ends
        return 1

    with Client(server.address) as client:
        for _ in range(3):  # the same worker, reused within the namespace
            assert client.call(burst) == 1
            quiet = client.with_options(max_log_bytes=10).stream(lambda: 2)
            assert quiet.value() == 2 and quiet.logs is None


def test_live_output_never_splits_a_result_frame(client: Client) -> None:
    """A UDF's thread prints while its result streams: the worker's log sender and the task's
    thread share the channel one whole frame at a time."""

    def streams_while_a_thread_prints() -> Iterator[Any]:
        import threading
        import time

        import numpy as np

        done = threading.Event()

        def chatter() -> None:
            i = 0
            while not done.is_set():
                print(f"line {i}")
                i += 1
                time.sleep(0.0005)

        helper = threading.Thread(target=chatter)
        helper.start()
        try:
            for i in range(48):
                yield np.full(1 << 17, i, dtype=np.int64)  # 1 MiB
        finally:
            done.set()
            helper.join()

    stream = client.stream(streams_while_a_thread_prints)
    columns = []
    for batch in stream:  # read slowly: the worker waits in the middle of its frames
        columns.append(batch.column(0).to_numpy())
        time.sleep(0.03)
    assert np.array_equal(np.concatenate(columns), np.repeat(np.arange(48), 1 << 17))
    assert stream.logs is not None and stream.logs.text.startswith("line ")
