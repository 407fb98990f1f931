"""LogTail, a worker's stdout while a task runs, against a fake channel: what the UDF prints
leaves as LOG_PART frames within PART_SECONDS — whatever thread printed it, even if the
channel was full when it was printed and the UDF then goes silent — and never after the
task's end; printing itself never sends, so it never waits."""

from __future__ import annotations

import threading

import pytest

from tilefn.sandbox._in_worker import LogTail
from tilefn.sandbox._protocol import HEADER, LOGS_HEADER, FrameType
from tilefn.sandbox._worker import LogPart, TaskLogs

from conftest import wait_for

LIMIT = 1 << 16


class Channel:
    """Records the parts sent; while ``room`` is clear, a send waits (a full channel)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.parts: list[LogPart] = []
        self.senders: set[threading.Thread] = set()
        self.room = threading.Event()
        self.room.set()
        self.waiting = threading.Event()  # a send is waiting for room

    def send(self, frame: bytes) -> None:
        kind, length = HEADER.unpack_from(frame)
        assert (kind, length) == (FrameType.LOG_PART, len(frame) - HEADER.size)
        self.senders.add(threading.current_thread())
        if not self.room.is_set():
            self.waiting.set()
            assert self.room.wait(timeout=60), "the test never made room"
        self.parts.append(LogPart.decode(frame[HEADER.size :], self.limit))

    def text(self) -> str:
        """What the parts carried, checked to follow on from each other."""
        sent = 0
        for part in self.parts:
            assert part.total - len(part.data) == sent, "a part skipped or repeated output"
            sent = part.total
        return b"".join(p.data for p in self.parts).decode()


def test_output_printed_while_the_channel_is_full_leaves_without_another_print() -> None:
    channel = Channel()
    tail = LogTail(LIMIT, channel.send)
    try:
        print("epoch 0", file=tail, flush=True)
        wait_for(lambda: channel.text() == "epoch 0\n", what="the first epoch's parts")
        channel.room.clear()  # the parent is slow to read: the next send has to wait
        print("epoch 1", file=tail, flush=True)  # returns at once: it only queues
        wait_for(channel.waiting.is_set, what="the sender to wait for room")
        channel.room.set()  # the parent reads; the UDF prints nothing more (it sleeps)
        wait_for(lambda: channel.text() == "epoch 0\nepoch 1\n", what="the held-back output")
        assert threading.current_thread() not in channel.senders  # printing never sent
    finally:
        channel.room.set()
        tail.close()


def test_other_threads_output_leaves_while_the_task_thread_is_silent() -> None:
    channel = Channel()
    tail = LogTail(LIMIT, channel.send)
    helper = threading.Thread(target=lambda: print("from a helper", file=tail))
    helper.start()
    helper.join()
    try:
        wait_for(lambda: channel.text() == "from a helper\n", what="the helper's output")
    finally:
        tail.close()


def test_a_burst_of_prints_leaves_in_a_few_parts() -> None:
    channel = Channel()
    tail = LogTail(LIMIT, channel.send)
    lines = "".join(f"line {i}\n" for i in range(5000))
    try:
        for line in lines.splitlines(keepends=True):
            print(line, end="", file=tail, flush=True)  # flush asks nothing of the channel
        wait_for(lambda: channel.text() == lines, what="every line to be sent")
    finally:
        tail.close()
    assert len(channel.parts) < 50  # parts are at least PART_SECONDS apart, not one a print


def test_a_part_carries_at_most_the_limit() -> None:
    channel = Channel(limit=100)
    tail = LogTail(100, channel.send)
    channel.room.clear()
    try:
        print("x" * 10, file=tail)  # taken by the sender, which waits for room
        wait_for(channel.waiting.is_set, what="the sender to wait for room")
        for i in range(1000):  # meanwhile far more than the limit is printed
            print(f"line {i:04d}", file=tail)
        channel.room.set()
        wait_for(
            lambda: bool(channel.parts) and channel.parts[-1].total == tail.total, what="a part"
        )
    finally:
        channel.room.set()
        tail.close()
    assert all(len(part.data) <= 100 for part in channel.parts)
    assert channel.parts[-1].data.endswith(b"line 0999\n")  # the newest output, not the oldest


def test_nothing_is_sent_after_close_and_late_prints_are_harmless() -> None:
    channel = Channel()
    tail = LogTail(LIMIT, channel.send)
    tail.write("a" * 100 + "\n")  # sent at once
    wait_for(lambda: len(channel.parts) == 1, what="the first part")
    tail.write("b" * 50 + "\n")  # within the part interval: still unsent
    tail.close()  # returns once the sender has ended
    assert not any(sender.is_alive() for sender in channel.senders)
    print("c", file=tail, flush=True)  # a UDF's leftover thread printing late: no error
    assert channel.text() == "a" * 100 + "\n"
    logs = TaskLogs.decode(tail.frame()[HEADER.size :], LIMIT)  # the final logs have it all
    assert logs.text == "a" * 100 + "\n" + "b" * 50 + "\n" + "c\n"


def test_printing_works_when_no_thread_can_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    channel = Channel()
    tail = LogTail(LIMIT, channel.send)
    monkeypatch.setattr(threading.Thread, "start", refuse)
    print("still fine", file=tail, flush=True)
    print("and again", file=tail)
    monkeypatch.undo()
    tail.close()
    assert channel.parts == []
    assert tail.frame()[HEADER.size + LOGS_HEADER.size :] == b"still fine\nand again\n"
