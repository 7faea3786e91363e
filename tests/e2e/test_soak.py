"""Soak: 200 subscribers x 20,000 changes across two server processes through Redis.

Two demo servers share one SQLite file (in WAL mode) and one Redis (a prefix of this
test's own). 200 subscribers, 100 on each server, speak ``graphql-transport-ws`` over real
WebSockets (one asyncio process, this one, holds them all): half follow every book, half
only Lee Child's (``filters: { author: { email: { exact: ... } } }``). Another process
(``soak_writer.py``) makes ``GQLSYNC_SOAK_CHANGES`` changes (default 20,000) through the
ORM: creates, title updates, moves to the other author, deletes, some through
``QuerySet.update()``, some in transactions of several changes. Change ``n`` titles the
row it creates or updates ``soak <n>``, so the titles a subscriber receives for a row
must count up: they number the row's commits.

Every subscriber folds its events as a client does (``CREATED``/``UPDATED`` put the row in
its copy, ``DELETED`` takes it out), and is checked as it goes and at the end:

- each event at most once, in log order: its cursors strictly increase;
- each row's events in commit order: the numbers of its ``CREATED``/``UPDATED`` titles
  strictly increase; a ``DELETED`` names a row the subscriber holds and carries the title
  it holds (the last state it could see); ``CREATED`` only for a row it does not hold,
  ``UPDATED`` only for one it does;
- exactly as many events as the writer's commits owe it (one per row a commit touched
  that it could see before or after the commit);
- its copy equals the ``books`` query (with the same filter);
- each server's hub handled each event once, and delivered what the clients received.

The writer is flow-controlled: it never gets more than ``GQLSYNC_SOAK_WINDOW`` events
(default 400) ahead of the slowest subscriber, well inside a subscription's queue
(``SUBSCRIPTION_QUEUE_SIZE``, 1000). Without it, a writer faster than the machine can
deliver (two servers, the writer, Redis and 200 sockets on a small CI runner) would have
subscribers ended as slow consumers, which is the bound doing its job, not a soak result.
The summary line says how long the writer waited for the subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect  # uvicorn[standard] brings websockets

from tests.conftest import require_service
from tests.e2e.conftest import ROOT, Server, start_server
from tests.e2e.test_resume_clients import stop_quickly

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHANGES = int(os.environ.get("GQLSYNC_SOAK_CHANGES", "20000"))
SUBSCRIBERS = int(os.environ.get("GQLSYNC_SOAK_SUBSCRIBERS", "200"))
WINDOW = int(os.environ.get("GQLSYNC_SOAK_WINDOW", "400"))
WRITER = Path(__file__).resolve().parent / "soak_writer.py"
REDIS_URL = "redis://127.0.0.1:6379/0"

LEE = "lee@child.com"
LEE_FILTER = f'filters: {{ author: {{ email: {{ exact: "{LEE}" }} }} }}'
SELECTION = "op id cursor node { id title }"
SUBSCRIBE_ALL = f"subscription {{ bookChanged {{ {SELECTION} }} }}"
SUBSCRIBE_LEE = f"subscription {{ bookChanged({LEE_FILTER}) {{ {SELECTION} }} }}"
QUERY_ALL = "{ books { id title } }"
QUERY_LEE = f"{{ books({LEE_FILTER}) {{ id title }} }}"

#: problems kept per subscriber for the report (all are counted)
KEEP = 10


def title_number(title: str) -> int:
    """The change that wrote ``title`` (``soak <n>``); -1 for the seeded titles."""
    return int(title[5:]) if title.startswith("soak ") else -1


def cursor_key(cursor: str) -> tuple[int, int]:
    """A cursor's place in the log (``<epoch>:<ms>-<seq>``)."""
    ms, _, seq = cursor.partition(":")[2].partition("-")
    return int(ms), int(seq)


def query(server: Server, text: str) -> dict[str, str]:
    result = server.graphql(text)
    assert not result.get("errors"), result
    return {book["id"]: book["title"] for book in result["data"]["books"]}


class Subscriber:
    """One socket, one subscription, and the copy its events fold into."""

    def __init__(self, name: str, server: Server, filtered: bool,
                 copy: dict[str, str]) -> None:
        self.name = name
        self.server = server
        self.filtered = filtered
        self.copy = dict(copy)
        #: row -> number of the last title received for it (commit order)
        self.numbers = {pk: title_number(title) for pk, title in copy.items()}
        self.last_cursor = (-1, -1)
        self.count = 0
        self.problems: list[str] = []
        self.problem_count = 0
        self.subscribed = False
        #: why it stopped receiving before the end (a close, an error, a completion)
        self.ended: str | None = None

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < KEEP:
            self.problems.append(text)

    def fold(self, event: dict[str, Any]) -> None:
        op, pk, cursor, node = event["op"], event["id"], event["cursor"], event["node"]
        title = node["title"]
        self.count += 1
        if node["id"] != pk:
            self.problem(f"event id {pk} but node id {node['id']}")
        key = cursor_key(cursor)
        if key <= self.last_cursor:
            self.problem(f"{op} {pk} {title!r}: cursor {cursor} not after {self.last_cursor}")
        self.last_cursor = key
        number = title_number(title)
        if op == "DELETED":
            held = self.copy.pop(pk, None)
            if held is None:
                self.problem(f"DELETED {pk} {title!r}: a row it does not hold")
            elif held != title:
                self.problem(f"DELETED {pk} carries {title!r}, the copy holds {held!r}")
            return
        if number <= self.numbers.get(pk, -2):
            self.problem(f"{op} {pk} {title!r} after {self.numbers[pk]}: not in commit order")
        self.numbers[pk] = number
        if (op == "CREATED") == (pk in self.copy):
            self.problem(f"{op} {pk} {title!r}: the copy {'holds' if pk in self.copy else 'lacks'}"
                         " that row")
        self.copy[pk] = title

    async def follow(self, query: str, connecting: asyncio.Semaphore) -> None:
        try:
            async with connecting:
                ws = await connect(self.server.ws_url, subprotocols=["graphql-transport-ws"],
                                   compression=None, ping_interval=None, open_timeout=60,
                                   close_timeout=2, max_size=2**20)
            async with ws:
                await ws.send(json.dumps({"type": "connection_init"}))
                ack = json.loads(await ws.recv())
                if ack.get("type") != "connection_ack":
                    self.ended = f"no ack: {ack}"
                    return
                await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                          "payload": {"query": query}}))
                self.subscribed = True
                loads, fold = json.loads, self.fold
                async for raw in ws:
                    message = loads(raw)
                    kind = message.get("type")
                    if kind == "next" and "errors" not in message["payload"]:
                        fold(message["payload"]["data"]["bookChanged"])
                    elif kind == "ping":
                        await ws.send('{"type": "pong"}')
                    else:
                        self.ended = f"received {message}"
                        return
                self.ended = f"socket closed: {ws.close_code} {ws.close_reason}"
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.ended = f"{type(error).__name__}: {error}"


@pytest.fixture
def soak_servers(tmp_path: Path) -> Iterator[tuple[Server, Server, dict[str, str]]]:
    """Two demo servers on one SQLite file in WAL mode and one Redis, and their env."""
    require_service("Redis", "127.0.0.1", 6379)
    db = tmp_path / "soak.sqlite3"
    prefix = f"gqlsync-soak-{uuid.uuid4().hex[:8]}"
    env = {"REDIS_URL": REDIS_URL, "GQLSYNC_REDIS_PREFIX": prefix, "GQLSYNC_DEMO_DB": str(db)}
    # migrate and seed first, then switch the file to WAL (it stays so): the writer's
    # commits then wait neither for the servers' reads nor for a sync to disk
    setup_env = {**os.environ, **env}
    setup_env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run([sys.executable, "-m", "schema_examples", "--no-serve"], cwd=ROOT,
                   env=setup_env, check=True, timeout=120)
    with contextlib.closing(sqlite3.connect(db)) as connection:
        assert connection.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    servers: list[Server] = []
    try:
        servers.append(start_server(tmp_path, db, env))
        servers.append(start_server(tmp_path, db, env))
        yield servers[0], servers[1], env
    finally:
        for server in servers:
            if server.process.poll() is None:
                stop_quickly(server)
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when there (``uvicorn[standard]`` brings it): the client must not be the
    bottleneck."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def test_soak_200_subscribers_x_20000_changes_through_two_servers_and_redis(
    soak_servers: tuple[Server, Server, dict[str, str]], tmp_path: Path,
) -> None:
    a, b, env = soak_servers
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(soak(a, b, env, tmp_path))


async def soak(a: Server, b: Server, env: dict[str, str], tmp: Path) -> None:
    everyone = await asyncio.to_thread(query, a, QUERY_ALL)
    lees = await asyncio.to_thread(query, a, QUERY_LEE)
    assert lees
    assert everyone != lees
    subscribers = []
    for i in range(SUBSCRIBERS):
        server, filtered = (a, b)[i % 2], (i // 2) % 2 == 1
        subscribers.append(Subscriber(f"{'AB'[i % 2]}{i // 2}{'-lee' if filtered else ''}",
                                      server, filtered, lees if filtered else everyone))
    connecting = asyncio.Semaphore(20)
    tasks = [asyncio.create_task(s.follow(SUBSCRIBE_LEE if s.filtered else SUBSCRIBE_ALL,
                                          connecting)) for s in subscribers]
    writer: asyncio.subprocess.Process | None = None
    try:
        await all_subscribed(a, b, subscribers)
        before = {server.port: await asyncio.to_thread(server.stats) for server in (a, b)}

        # ---------------------------------------------------------------- the writer
        # the demo project is not installed (the wheel holds gqlsync only): on the path
        writer_env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "schema_examples.settings",
                      "PYTHONPATH": os.pathsep.join(
                          p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
                      "SOAK_CHANGES": str(CHANGES), "SOAK_WINDOW": str(WINDOW),
                      "SOAK_SEED": os.environ.get("GQLSYNC_SOAK_SEED", "1")}
        writer_log = tmp / "writer.log"
        cpu_before = cpu_seconds(a, b)
        started = time.monotonic()
        with writer_log.open("wb") as stderr:
            writer = await asyncio.create_subprocess_exec(
                sys.executable, str(WRITER), cwd=ROOT, env=writer_env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr)
        assert writer.stdin is not None
        assert writer.stdout is not None
        ready = json.loads(await asyncio.wait_for(writer.stdout.readline(), 120))
        assert ready["ready"] == len(everyone), ready
        summary_line = asyncio.create_task(writer.stdout.readline())
        unfiltered = [s for s in subscribers if not s.filtered]
        told, progressed, last_progress = -1, time.monotonic(), -1
        while writer.returncode is None:
            ended = [s for s in subscribers if s.ended]
            if ended:
                raise AssertionError(f"{len(ended)} subscriber(s) stopped mid-soak: "
                                     f"{[(s.name, s.ended) for s in ended[:5]]}")
            progress = min(s.count for s in unfiltered)
            now = time.monotonic()
            if progress != last_progress:
                last_progress, progressed = progress, now
            elif now - progressed > 120:
                stats = [await asyncio.to_thread(s.stats) for s in (a, b)]
                raise AssertionError(f"no subscriber progress for 120 s at {progress} "
                                     f"events; servers: {stats}")
            if progress > told:  # the slowest subscriber's count: the writer's brake
                told = progress
                with contextlib.suppress(ConnectionError):  # it has just exited
                    writer.stdin.write(f"{told}\n".encode())
                    await writer.stdin.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer.wait(), 0.02)
        assert writer.returncode == 0, writer_log.read_text()[-3000:]
        written = json.loads(await summary_line)
        assert written["changes"] == CHANGES, written

        # ---------------------------------------------------------------- settling
        def owed(s: Subscriber) -> int:
            return int(written["events_lee" if s.filtered else "events_all"])

        waited_since, last_total = time.monotonic(), -1
        while any(s.count < owed(s) for s in subscribers):
            total = sum(s.count for s in subscribers)
            if total != last_total:
                waited_since, last_total = time.monotonic(), total
            elif time.monotonic() - waited_since > 60:
                break  # nothing more arrives: the checks below say what is missing
            if any(s.ended for s in subscribers):
                break
            await asyncio.sleep(0.1)
        stats = await settled(a, b)
        await asyncio.sleep(1)  # anything late (a duplicate) arrives now
        wall = time.monotonic() - started
        cpu = {k: v - cpu_before[k] for k, v in cpu_seconds(a, b).items() if k in cpu_before}

        expected_all = await asyncio.to_thread(query, a, QUERY_ALL)
        expected_lee = await asyncio.to_thread(query, a, QUERY_LEE)
        assert await asyncio.to_thread(query, b, QUERY_ALL) == expected_all
    finally:
        if writer is not None and writer.returncode is None:
            writer.kill()
            await writer.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---------------------------------------------------------------- the verdict
    deliveries = sum(s.count for s in subscribers)
    print(f"\nsoak: {CHANGES} changes in {written['seconds']:.1f} s "
          f"({CHANGES / written['seconds']:.0f} changes/s; writer waited "
          f"{written['waited']:.1f} s for subscribers), {len(subscribers)} subscribers, "
          f"{deliveries} deliveries ({deliveries / wall:.0f}/s), wall {wall:.1f} s; "
          f"{written['transactions']} multi-row transactions, {written['created']} created, "
          f"{written['updated']} updated ({written['moved']} moved), "
          f"{written['deleted']} deleted, {len(expected_all)} books at the end; CPU s: "
          + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items()))

    ended = [(s.name, s.ended) for s in subscribers if s.ended]
    assert not ended, f"{len(ended)} subscriber(s) stopped early: {ended[:5]}"
    problems = [(s.name, s.problem_count, s.problems) for s in subscribers if s.problem_count]
    assert not problems, f"{len(problems)} subscriber(s) saw wrong events: {problems[:5]}"
    wrong = []
    for s in subscribers:
        expected = expected_lee if s.filtered else expected_all
        if s.copy != expected:
            missing = sorted(set(expected) - set(s.copy), key=int)
            extra = sorted(set(s.copy) - set(expected), key=int)
            stale = sorted((pk for pk in set(expected) & set(s.copy)
                            if expected[pk] != s.copy[pk]), key=int)
            wrong.append(f"{s.name}: missing {missing[:5]} ({len(missing)}), extra "
                         f"{extra[:5]} ({len(extra)}), stale {stale[:5]} ({len(stale)})")
    assert not wrong, f"{len(wrong)} copies differ from the query: {wrong[:5]}"
    counts = [(s.name, s.count, owed(s)) for s in subscribers if s.count != owed(s)]
    assert not counts, f"event counts (name, received, owed): {counts[:10]}"
    for server in (a, b):
        now, was = stats[server.port], before[server.port]
        mine = [s for s in subscribers if s.server is server]
        assert now["subscriptions"] == len(mine), now
        assert now["events"] - was["events"] == written["events_all"], (now, was, written)
        assert now["deliveries"] - was["deliveries"] == sum(s.count for s in mine), (now, was)
        for counter in ("errors", "dropped", "resynced", "stale", "outages"):
            assert now[counter] == was[counter], (counter, now, was)


async def all_subscribed(a: Server, b: Server, subscribers: list[Subscriber]) -> None:
    """Wait until each server holds its subscribers' subscriptions (none failing)."""
    wanted = {server.port: sum(s.server is server for s in subscribers) for server in (a, b)}
    deadline = time.monotonic() + 180
    while True:
        ended = [(s.name, s.ended) for s in subscribers if s.ended]
        assert not ended, f"{len(ended)} subscriber(s) failed to subscribe: {ended[:5]}"
        stats = {server.port: await asyncio.to_thread(server.stats) for server in (a, b)}
        if all(stats[port]["subscriptions"] >= wanted[port] for port in wanted):
            return
        assert time.monotonic() < deadline, f"not all subscribed: {stats}"
        await asyncio.sleep(0.2)


def cpu_seconds(a: Server, b: Server) -> dict[str, float]:
    """CPU time used so far by the writer (a finished child), each server, this process
    (the clients)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = {"writer": children.ru_utime + children.ru_stime}
    for name, server in (("server A", a), ("server B", b)):
        with contextlib.suppress(OSError):  # Linux /proc only
            stat = Path(f"/proc/{server.process.pid}/stat").read_text()
            fields = stat.rpartition(")")[2].split()
            found[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    me = resource.getrusage(resource.RUSAGE_SELF)
    found["clients"] = me.ru_utime + me.ru_stime
    return found


async def settled(a: Server, b: Server) -> dict[int, dict[str, Any]]:
    """Poll the servers' counters until their handled events stop increasing."""
    last: dict[int, dict[str, Any]] = {}
    for _ in range(120):
        stats = {s.port: await asyncio.to_thread(s.stats) for s in (a, b)}
        if last and all(stats[p]["events"] == last[p]["events"]
                        and stats[p]["deliveries"] == last[p]["deliveries"] for p in stats):
            return stats
        last = stats
        await asyncio.sleep(1)
    raise AssertionError(f"the servers never settled: {last}")
