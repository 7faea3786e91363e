"""The replay log answers "what happened after this cursor?" completely, or raises Gap.

Both backends are held to the same promises: entries come back in order, trimming by
count or age turns older cursors into gaps (never a silent partial answer), and a log
that lost its memory (a restarted Redis, a new process) refuses the cursors of the old one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gqlsync.log import EventLog, Gap, MemoryLog, Position, RedisLog

Make = Callable[[int, float], EventLog]


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest) -> Iterator[Make]:
    """A factory of logs of one backend; the Redis ones share a prefix of their own."""
    if request.param == "memory":
        yield lambda count, age: MemoryLog(count, age)
        return
    request.getfixturevalue("redis_url")
    prefix = f"gqlsync-test-{os.urandom(4).hex()}"
    made: list[RedisLog] = []

    def redis_log(count: int, age: float) -> EventLog:
        made.append(RedisLog("redis://127.0.0.1:6379/0", count, age, prefix))
        return made[-1]

    yield redis_log
    for log in made:
        for key in log.client.scan_iter(f"{prefix}:*"):
            log.client.delete(key)


def messages(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"model": "bookstore.book", "pk": i, "op": "UPDATED"} for i in range(start, start + n)]


def test_entries_after_a_cursor_come_back_in_order(make: Make) -> None:
    log = make(100, 3600)
    cursors = log.append("s", messages(5))

    entries, head = log.read("s", Position.parse(cursors[1]))

    assert [m["pk"] for _, m in entries] == [2, 3, 4]
    assert [c for c, _ in entries] == cursors[2:]
    assert head == Position.parse(cursors[-1])
    positions = [Position.parse(c) for c in cursors]
    assert positions == sorted(positions)
    assert len(set(positions)) == 5


def test_a_cursor_at_the_head_reads_nothing_and_keeps_its_place(make: Make) -> None:
    log = make(100, 3600)
    last = log.append("s", messages(3))[-1]

    entries, head = log.read("s", Position.parse(last))

    assert entries == []
    assert head == Position.parse(last)


def test_the_head_of_a_stream_misses_nothing_appended_after_it(make: Make) -> None:
    log = make(100, 3600)
    head = log.head("empty")  # before anything was ever appended
    cursors = log.append("empty", messages(2))

    entries, _ = log.read("empty", head)

    assert [c for c, _ in entries] == cursors


def test_trimming_by_count_turns_older_cursors_into_gaps(make: Make) -> None:
    log = make(3, 3600)
    cursors = log.append("s", messages(5))  # keeps the last three

    with pytest.raises(Gap):
        log.read("s", Position.parse(cursors[0]))
    entries, _ = log.read("s", Position.parse(cursors[1]))  # the newest trimmed: complete
    assert [m["pk"] for _, m in entries] == [2, 3, 4]


def test_trimming_by_age_turns_older_cursors_into_gaps(make: Make) -> None:
    log = make(1000, 0.2)
    old = log.append("s", messages(2))
    time.sleep(0.35)
    log.append("s", messages(1, start=2))

    with pytest.raises(Gap):
        log.read("s", Position.parse(old[0]))


def test_a_cursor_of_a_log_that_restarted_is_a_gap(make: Make) -> None:
    first = make(100, 3600)
    cursor = first.append("s", messages(1))[0]
    if isinstance(first, RedisLog):  # Redis restarted without persistence: all is gone
        for key in first.client.scan_iter(f"{first.prefix}:*"):
            first.client.delete(key)
        second: EventLog = first
    else:
        second = make(100, 3600)  # a new process
    second.append("s", messages(3))

    with pytest.raises(Gap):
        second.read("s", Position.parse(cursor))


@pytest.mark.parametrize("text", ["", "nope", "0000000g:1-0", "abcd:1-0", "12345678:-1-0",
                                  "12345678:1-0-0", "12345678:1", 42])
def test_anything_else_is_not_a_cursor(text: Any) -> None:
    with pytest.raises(Gap):
        Position.parse(text)


def test_two_processes_share_one_redis_log(redis_url: str) -> None:
    prefix = f"gqlsync-test-{os.urandom(4).hex()}"
    one = RedisLog(redis_url, 100, 3600, prefix)
    other = RedisLog(redis_url, 100, 3600, prefix)
    try:
        first = one.append("s", messages(1))[0]
        other.append("s", messages(1, start=1))
        one.append("s", messages(1, start=2))

        entries, _ = other.read("s", Position.parse(first))

        assert [m["pk"] for _, m in entries] == [1, 2]
    finally:
        for key in one.client.scan_iter(f"{prefix}:*"):
            one.client.delete(key)


def test_streams_compare_by_time_without_an_epoch(make: Make) -> None:
    """The hub asks other streams (a permission's dependencies) what happened since a
    cursor of this one: positions of one log compare across its streams."""
    log = make(100, 3600)
    cursor = Position.parse(log.append("books", messages(1))[0])
    log.append("rooms", messages(1))

    since = Position(cursor.ms - 1, 2**62)
    assert len(log.read("rooms", since)[0]) == 1
