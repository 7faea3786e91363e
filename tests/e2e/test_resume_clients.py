"""The client recipes of the docs keep an exact copy across reconnects, on real servers.

``docs/examples/clients/resume-{graphql-ws,apollo,urql}.mjs`` are what the "Client
recipes" section of docs/guides/delivery.md shows, verbatim. Each one, driven by
``tests/e2e/js/resume.mjs`` (which imports it from where it is), follows the demo's books:
query ``booksCursor books``, subscribe with ``after``, fold, and on a cut subscribe again
with ``after: <last cursor>``; on ``RESYNC``, refetch. Against two server processes
sharing one database and one Redis (``redis_servers``):

- away, then back on the *other* server: the catch-up names each changed row once, as
  the delivery guarantees say (current state, or ``DELETED`` with the state held), in
  the order of their last change; then live events, once each; the copy equals ``books``;
- the server dies under the client: the recipe retries on its own and resumes on the
  other server with nothing lost;
- a cursor the log cannot resume from (another log's, or not a cursor at all) gets
  ``RESYNC``: the recipe refetches, and its copy (stale on purpose) becomes exact.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import (
    JS_DIR,
    NodeClient,
    Server,
    contract_operation,
    node_available,
    wait_subscriptions_exactly,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

RECIPES = ("graphql-ws", "apollo", "urql")


class Follower(NodeClient):
    """A recipe in its own node process (``tests/e2e/js/resume.mjs``).

    Reads its lines like :class:`NodeClient` (every wait bounded); commands go to its
    stdin as JSON lines. (``NodeClient.__init__`` would start a subscription script:
    this starts the harness instead, with the same reading threads.)
    """

    def __init__(self, recipe: str, server: Server, *, cursor: str | None = None,
                 copy: dict[str, str] | None = None) -> None:
        self.script = f"resume-{recipe}"
        self.lines: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr = b""
        args = ["node", str(JS_DIR / "resume.mjs"), "--recipe", recipe,
                "--http", server.http_url, "--ws", server.ws_url, "--retry-delay", "200"]
        if cursor is not None:
            saved = [[pk, {"id": pk, "title": title}] for pk, title in (copy or {}).items()]
            args += ["--cursor", cursor, "--copy", json.dumps(saved)]
        self.process = subprocess.Popen(
            args, cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def send(self, command: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"do": command, **fields}).encode() + b"\n")
        self.process.stdin.flush()

    def do(self, command: str, **fields: Any) -> None:
        """Send a command and wait until the recipe has carried it out."""
        self.send(command, **fields)
        done = self.wait_for("done")
        assert done["do"] == command, done

    def target(self, server: Server) -> None:
        """Where the recipe's next (re)connect goes: its URL functions now name ``server``."""
        self.do("target", http=server.http_url, ws=server.ws_url)

    def changes(self, count: int, timeout: float = 15,
                allowed: frozenset[str] = frozenset({"done"})) -> list[dict[str, Any]]:
        """The next ``count`` folded events; a line of another kind not ``allowed`` fails."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            line = self.next_line(timeout)
            if line["event"] == "change":
                found.append(line)
            elif line["event"] not in allowed:
                raise self._fail(f"sent {line} after {len(found)} of {count} events")
        return found

    def snapshot(self) -> tuple[dict[str, str], str]:
        """The recipe's copy (id -> title) and its last cursor."""
        self.send("snapshot")
        line = self.wait_for("snapshot")
        return {node["id"]: node["title"] for node in line["copy"]}, line["cursor"]

    def copy(self) -> dict[str, str]:
        return self.snapshot()[0]

    def quiet(self, seconds: float = 0.5) -> None:
        """Nothing more arrives (no duplicate, no late event, no failure)."""
        extra = [line for line in self.pending(seconds) if line["event"] not in ("done",)]
        assert not extra, f"{self.script} sent more: {extra}"


StartFollower = Callable[..., Follower]


def stop_quickly(server: Server) -> None:
    """Stop a server; force it if it lingers.

    A demo process on channels-redis sometimes never finishes its graceful shutdown once
    a WebSocket subscriber has come and gone (uvicorn waits on the consumer's cancelled
    layer ``receive``, which keeps reading Redis): a second signal (SIGINT) makes uvicorn
    give up waiting, where ``stop_server`` would wait 10 s and kill it.
    """
    server.process.terminate()
    try:
        server.process.wait(1.5)  # a graceful shutdown takes 0.2 s
    except subprocess.TimeoutExpired:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(5)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)


@pytest.fixture
def follower(redis_servers: tuple[Server, Server]) -> Iterator[StartFollower]:
    """Start recipes: ``follower("apollo", server)``; at the end, they stop, then the
    servers (before ``redis_servers`` would)."""
    node_available()
    started: list[Follower] = []

    def start(recipe: str, server: Server, **options: Any) -> Follower:
        client = Follower(recipe, server, **options)
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()
    for server in redis_servers:
        if server.process.poll() is None:
            stop_quickly(server)


# ------------------------------------------------------------------------- the data


def books(server: Server) -> dict[str, str]:
    """What the ``books`` query returns now: id -> title."""
    result = server.graphql("{ books { id title } }")
    assert not result.get("errors"), result
    return {book["id"]: book["title"] for book in result["data"]["books"]}


class Writer:
    """Changes books through a server's HTTP mutations, and remembers each one."""

    def __init__(self) -> None:
        #: (op, id, title) of every change, in order
        self.log: list[tuple[str, str, str]] = []

    def _run(self, server: Server, operation: str, **variables: Any) -> dict[str, Any]:
        result = server.graphql(contract_operation(operation), variables)
        assert not result.get("errors"), result
        (data,) = result["data"].values()
        return dict(data)

    def create(self, server: Server, title: str) -> str:
        book = self._run(server, "CreateBook", title=title, authorEmail="lee@child.com")
        self.log.append(("CREATED", book["id"], title))
        return str(book["id"])

    def update(self, server: Server, pk: str, title: str) -> None:
        self._run(server, "UpdateBook", id=pk, title=title)
        self.log.append(("UPDATED", pk, title))

    def delete(self, server: Server, pk: str) -> None:
        self._run(server, "DeleteBook", id=pk)
        self.log.append(("DELETED", pk, ""))


def expected_catch_up(held: dict[str, str], changes: list[tuple[str, str, str]],
                      now: dict[str, str]) -> list[tuple[str, str, str]]:
    """What a client holding ``held`` gets for ``changes``, per the delivery guarantees:
    one event per changed row, in the order of their last change; a row visible now comes
    with its current title (``UPDATED`` if held, else ``CREATED``), a held row gone as
    ``DELETED`` with the title held, a row neither held nor here not at all."""
    last: dict[str, int] = {}
    for index, (_, pk, _) in enumerate(changes):
        last[pk] = index
    expected = []
    for pk in sorted(last, key=last.__getitem__):
        if pk in now:
            expected.append(("UPDATED" if pk in held else "CREATED", pk, now[pk]))
        elif pk in held:
            expected.append(("DELETED", pk, held[pk]))
    return expected


def folded(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["op"], e["id"], e["node"]["title"]) for e in events]


def cursor_key(cursor: str) -> tuple[int, int]:
    """A cursor's place in the log (``<epoch>:<ms>-<seq>``; opaque to clients, read here
    only to check the order the server promises)."""
    ms, _, seq = cursor.partition(":")[2].partition("-")
    return int(ms), int(seq)


def hundred_changes(server: Server, writer: Writer, held: list[str]) -> None:
    """100 changes through ``server``: new rows (some edited, some gone again), held rows
    edited several times, held rows edited then deleted, held rows deleted."""
    assert len(held) >= 13, held
    edited, edited_then_gone, gone = held[:8], held[8:11], held[11:13]
    new = [writer.create(server, f"New {i}") for i in range(1, 21)]
    for pk in edited:
        writer.update(server, pk, f"{pk}, edit 1")
    for i, pk in enumerate(new[:10], 1):
        writer.update(server, pk, f"New {i}, edited")
    for pk in edited_then_gone:
        writer.update(server, pk, f"{pk}, last edit")
    new += [writer.create(server, f"New {i}") for i in range(21, 41)]
    for pk in edited:
        writer.update(server, pk, f"{pk}, edit 2")
    for pk in new[30:40]:  # created and deleted while away: never mentioned
        writer.delete(server, pk)
    for pk in edited_then_gone + gone:
        writer.delete(server, pk)
    for pk in edited:
        writer.update(server, pk, f"{pk}, edit 3")
    for i in range(41, 49):
        writer.create(server, f"New {i}")


# ------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("recipe", RECIPES)
def test_away_then_back_on_the_other_server_nothing_lost_nothing_repeated(
    recipe: str, redis_servers: tuple[Server, Server], follower: StartFollower
) -> None:
    a, b = redis_servers
    writer = Writer()
    client = follower(recipe, a)
    assert client.wait_for("ready")["size"] == len(books(a))
    a.wait_subscriptions(1)
    assert client.copy() == books(a)

    # live, on A: changes served by either server arrive once each, in order
    made = [writer.create(a if i % 2 else b, f"Live {i}") for i in range(10)]
    writer.update(b, made[0], "Live 0, edited")
    writer.update(a, made[1], "Live 1, edited")
    writer.delete(b, made[2])
    live = client.changes(13)
    assert [(e["op"], e["id"]) for e in live] == [(op, pk) for op, pk, _ in writer.log]
    client.quiet()
    held, cursor = client.snapshot()
    assert held == books(a)
    assert cursor == live[-1]["cursor"]

    # away: the recipe unsubscribes (its socket closes); 100 changes through B
    client.do("disconnect")
    wait_subscriptions_exactly(a, 0)
    writer.log.clear()
    hundred_changes(b, writer, list(held))
    assert len(writer.log) == 100
    now = books(b)
    expected = expected_catch_up(held, writer.log, now)
    # 38 new rows left, 8 held rows edited, 5 held rows gone
    ops = [op for op, _, _ in expected]
    assert (ops.count("CREATED"), ops.count("UPDATED"), ops.count("DELETED")) == (38, 8, 5)

    # back, on B, from the last cursor
    before = b.stats()
    client.target(b)
    client.do("reconnect")
    caught_up = client.changes(len(expected))
    b.wait_subscriptions(1)
    client.quiet()
    assert folded(caught_up) == expected  # each changed row once, in last-change order
    assert len({e["id"] for e in caught_up}) == len(caught_up)
    keys = [cursor_key(e["cursor"]) for e in caught_up]
    assert keys == sorted(keys)
    assert keys[0] > cursor_key(cursor)
    assert client.copy() == now
    after = b.stats()
    assert after["resumed"] - before["resumed"] == 1, after
    assert after["errors"] == 0, after

    # live again, through both servers: once each, and the copy stays exact
    writer.log.clear()
    survivor = next(pk for op, pk, _ in expected if op == "CREATED")
    edited = next(pk for op, pk, _ in expected if op == "UPDATED")
    fresh = writer.create(a, "After 1")
    writer.create(b, "After 2")
    writer.update(a, survivor, "Survivor, edited after")
    writer.delete(b, edited)
    writer.update(b, fresh, "After 1, edited")
    later = client.changes(5)
    client.quiet()
    assert [(e["op"], e["id"]) for e in later] == [(op, pk) for op, pk, _ in writer.log]
    assert client.copy() == books(a) == books(b)


@pytest.mark.parametrize("recipe", RECIPES)
def test_when_its_server_dies_the_recipe_resumes_on_the_other(
    recipe: str, redis_servers: tuple[Server, Server], follower: StartFollower
) -> None:
    a, b = redis_servers
    writer = Writer()
    client = follower(recipe, a)
    client.wait_for("ready")
    a.wait_subscriptions(1)
    made = [writer.create(b, f"Before {i}") for i in range(3)]
    client.changes(3)
    held, _ = client.snapshot()

    stop_quickly(a)  # the socket drops; reconnecting to A fails, again and again
    client.wait_for("interrupted")
    writer.log.clear()
    fresh = [writer.create(b, f"While down {i}") for i in range(5)]
    writer.update(b, made[0], "Before 0, edited")
    writer.update(b, fresh[0], "While down 0, edited")
    writer.delete(b, made[1])
    writer.delete(b, fresh[1])
    now = books(b)
    expected = expected_catch_up(held, writer.log, now)
    assert len(expected) == 6  # the row created and deleted meanwhile is not mentioned

    client.target(b)  # the next retry goes to B, with the last cursor
    caught_up = client.changes(len(expected), allowed=frozenset({"done", "interrupted"}))
    b.wait_subscriptions(1)
    client.quiet()
    assert folded(caught_up) == expected
    assert client.copy() == now

    writer.log.clear()
    writer.update(b, made[2], "Before 2, edited")
    assert folded(client.changes(1)) == [("UPDATED", made[2], "Before 2, edited")]
    client.quiet()
    assert client.copy() == books(b)


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_cursor_that_cannot_be_resumed_gets_resync_and_the_recipe_refetches(
    recipe: str, redis_servers: tuple[Server, Server], follower: StartFollower
) -> None:
    """The demo cannot shorten its log (``LOG_MAX_EVENTS`` has no environment override),
    so the cursors here are one from another log (a Redis that restarted, another
    deployment) and one that is no cursor at all; both mean "refetch"."""
    _, b = redis_servers
    writer = Writer()
    stale = {"999": "Not in the database", "1": "An old title"}
    for count, cursor in enumerate(("00000000:1-0", "not-a-cursor"), 1):
        client = follower(recipe, b, cursor=cursor, copy=stale)
        assert client.wait_for("ready")["cursor"] == cursor
        resync = client.wait_for("resync")
        codes = [error.get("extensions", {}).get("code") for error in resync["errors"]]
        assert codes == ["RESYNC"], resync
        client.wait_for("refetch")
        b.wait_subscriptions(count)  # subscribed again, from the new cursor
        copy, fresh_cursor = client.snapshot()
        assert copy == books(b)
        assert fresh_cursor not in (cursor, None)

        writer.log.clear()
        pk = writer.create(b, f"After resync {count}")
        assert folded(client.changes(1)) == [("CREATED", pk, f"After resync {count}")]
        client.quiet()
        assert client.copy() == books(b)
