"""Protocol fuzzing against the real demo server: every frame gets the protocol's answer.

A seeded generator sends 20,000 frames, split between ``graphql-transport-ws``
and the legacy ``graphql-ws``, from several connections at once: valid operations,
frames that are not JSON or not objects, wrong types in every field, unknown types,
huge and deep payloads, bad documents, duplicate ids, messages out of order, binary
frames. Each frame class has one expected answer per protocol (the table in
``docs/guides/security.md``, "Malformed messages"); where the protocol keeps the
connection open, many frames share one connection.

Throughout, a separate well-behaved client keeps a subscription open while books are
written over HTTP: it must receive every event, and every write must be answered. At
the end the server's RSS is within :data:`RSS_BOUND` of what it was before the fuzz (after
a warm-up round of every class), and its hub holds no subscription but the monitor's.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

SEED = 20261201
#: frames of the fuzz proper (the warm-up round comes on top)
FRAMES = 20_000
#: fuzzing connections at once, per protocol
WORKERS = 4
#: how much the server's RSS may grow over the fuzz
RSS_BOUND = 64 * 1024 * 1024
#: the longest any answer may take
TIMEOUT = 10.0

TRANSPORT, LEGACY = "graphql-transport-ws", "graphql-ws"
#: a subscription that never fires (no book has this id)
QUIET = 'subscription { bookChanged(id: "999999999") { id } }'
#: the same, padded towards the 64 KB frame limit (a few variants: parse caches stay small)
PADDED = [QUIET + "\n" + ("#" + "x" * 199 + "\n") * (200 + n) for n in range(3)]
QUERY = "{ rooms { name } }"
BAD_DOCUMENT = "subscription { bookChanged { nope } }"
SYNTAX_ERROR = "subscription { bookChanged { id }"
TWO_OPERATIONS = ("subscription A { bookChanged(id: \"999999999\") { id } } "
                  "subscription B { bookChanged { id } }")
WITH_VARIABLE = "subscription($id: ID) { bookChanged(id: $id) { id } }"
CREATE_BOOK = ('mutation($t: String!) { createBook(title: $t, authorEmail: "lee@child.com") '
               "{ id } }")


#: what the server's log would show for an error of its own (not a client's)
SERVER_ERRORS = ("Exception in ASGI application", "could not be handled",
                 "Task exception was never retrieved", "Exception in worker task",
                 "unhashable", *(f"\n{name}: " for name in (
                     "TypeError", "KeyError", "RecursionError", "AttributeError",
                     "AssertionError", "RuntimeError", "ValueError")))


class Closed(Exception):
    """The connection ended (as a case expected, or not)."""


class Conn:
    """One fuzzing connection: frames out, the protocol's answers in, each checked."""

    def __init__(self, ws: ClientConnection, protocol: str, case: str = "") -> None:
        self.ws = ws
        self.protocol = protocol
        self.case = case
        self.ids = 0
        self.sent = 0

    def new_id(self) -> str:
        self.ids += 1
        return f"op{self.ids}"

    async def send(self, frame: str | bytes | dict[str, Any]) -> None:
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        await self.ws.send(frame)
        self.sent += 1
        Fuzz.frames += 1

    async def expect(self, kind: str, id: str | None = None,
                     check: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        try:
            text = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            raise AssertionError(f"{self.protocol} {self.case}: expected {kind!r}, "
                                 f"the server closed with {code}") from None
        message: dict[str, Any] = json.loads(text)
        assert message["type"] == kind, (self.protocol, self.case, kind, message)
        if id is not None:
            assert message.get("id") == id, (self.protocol, self.case, id, message)
        if check is not None:
            assert check(message), (self.protocol, self.case, message)
        return message

    async def expect_close(self, code: int) -> None:
        try:
            message = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        except ConnectionClosed as closed:
            got = closed.rcvd.code if closed.rcvd else None
            assert got == code, (self.protocol, self.case, f"closed with {got}, not {code}")
            raise Closed from None
        raise AssertionError(f"{self.protocol} {self.case}: expected a close with {code}, "
                             f"got {message!r}")

    async def sync(self) -> None:
        """A frame with a known answer: whatever came before it answered nothing more."""
        if self.protocol == TRANSPORT:
            await self.send({"type": "ping"})
            await self.expect("pong")
        else:
            await self.send({"type": "sync", "id": "sync"})
            await self.expect("error", "sync")


class Fuzz:
    frames = 0
    classes: Counter[str] = Counter()


def deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def not_json(rng: random.Random) -> str:
    return rng.choice(["not json", "{", "{]", "{'type': 'ping'}", "", "\x00\x01", "nul",
                       '{"type": "ping",}', "[" * rng.randint(1, 50)])


def non_object(rng: random.Random) -> str:
    return rng.choice(["[]", "[1, 2]", "5", "-0.5", '"ping"', "null", "true",
                       json.dumps([{"type": "ping"}])])


def wrong_field(rng: random.Random, protocol: str, id: str) -> dict[str, Any]:
    """A subscribe (start) with one field of the wrong type, or missing."""
    kind = "subscribe" if protocol == TRANSPORT else "start"
    message: dict[str, Any] = {"type": kind, "id": id, "payload": {"query": QUIET}}
    wrong = rng.choice([5, 1.5, True, None, [], ["x"], {}, {"a": 1}, "s"])
    field = rng.choice(["id", "payload", "query", "variables", "operationName", "extensions"])
    if field == "id":
        if isinstance(wrong, str):
            wrong = [wrong]
        message["id"] = wrong
    elif field == "payload":
        message["payload"] = wrong if not isinstance(wrong, dict) else [wrong]
    elif field == "query":
        message["payload"]["query"] = wrong if not isinstance(wrong, str) else {"q": wrong}
    else:
        allowed: tuple[type, ...] = (str,) if field == "operationName" else (dict,)
        if wrong is None or isinstance(wrong, allowed):
            wrong = 5
        message["payload"][field] = wrong
    if rng.random() < 0.2:  # or a field missing altogether
        missing = rng.choice(["id", "payload"])
        message.pop(missing)
    return message


# -------------------------------------------------------------- graphql-transport-ws

Case = Callable[[Conn, random.Random], Awaitable[None]]


async def t_ping(conn: Conn, rng: random.Random) -> None:
    await conn.sync()


async def t_pong(conn: Conn, rng: random.Random) -> None:
    await conn.send({"type": "pong", "payload": {"n": rng.random()}})
    await conn.sync()


async def t_subscription(conn: Conn, rng: random.Random) -> None:
    id = conn.new_id()
    query = rng.choice([QUIET, QUIET, *PADDED])
    await conn.send({"id": id, "type": "subscribe", "payload": {"query": query}})
    await conn.send({"id": id, "type": "complete"})
    await conn.sync()


async def t_query(conn: Conn, rng: random.Random) -> None:
    id = conn.new_id()
    await conn.send({"id": id, "type": "subscribe", "payload": {"query": QUERY}})
    await conn.expect("next", id, lambda m: m["payload"]["data"] == {"rooms": []})
    await conn.expect("complete", id)


async def t_complete_unknown(conn: Conn, rng: random.Random) -> None:
    await conn.send({"id": "never-subscribed", "type": "complete"})
    await conn.sync()


async def t_bad_document(conn: Conn, rng: random.Random) -> None:
    id = conn.new_id()
    await conn.send({"id": id, "type": "subscribe", "payload": {"query": BAD_DOCUMENT}})
    await conn.expect("error", id, lambda m: "nope" in m["payload"][0]["message"])


async def t_deep_variables(conn: Conn, rng: random.Random) -> None:
    id = conn.new_id()
    await conn.send({"id": id, "type": "subscribe", "payload": {
        "query": WITH_VARIABLE, "variables": {"id": deep(rng.randint(2, 400))}}})
    await conn.expect("error", id)


async def t_two_operations(conn: Conn, rng: random.Random) -> None:
    id = conn.new_id()
    await conn.send({"id": id, "type": "subscribe", "payload": {"query": TWO_OPERATIONS}})
    await conn.expect("error", id, lambda m: "operation name" in m["payload"][0]["message"])
    # the id is free again: the same id subscribes without 4409
    await conn.send({"id": id, "type": "subscribe",
                     "payload": {"query": TWO_OPERATIONS, "operationName": "A"}})
    await conn.send({"id": id, "type": "complete"})
    await conn.sync()


async def t_not_json(conn: Conn, rng: random.Random) -> None:
    frame = not_json(rng)
    await conn.send(frame)
    await conn.expect_close(4400)


async def t_non_object(conn: Conn, rng: random.Random) -> None:
    await conn.send(non_object(rng))
    await conn.expect_close(4400)


async def t_wrong_field(conn: Conn, rng: random.Random) -> None:
    await conn.send(wrong_field(rng, TRANSPORT, conn.new_id()))
    await conn.expect_close(4400)


async def t_unknown_type(conn: Conn, rng: random.Random) -> None:
    await conn.send({"type": rng.choice(["start", "stop", "data", "nonsense", 5, None, ["ping"]]),
                     "id": "1"})
    await conn.expect_close(4400)


async def t_deep_json(conn: Conn, rng: random.Random) -> None:
    depth = rng.randint(5_000, 20_000)
    await conn.send(rng.choice(["[" * depth, '{"type": "ping", "payload": ' + "[" * depth]))
    await conn.expect_close(4400)


async def t_big_int(conn: Conn, rng: random.Random) -> None:
    await conn.send('{"type": "ping", "payload": {"n": ' + "9" * rng.randint(5_000, 20_000)
                    + "}}")
    await conn.expect_close(4400)


async def t_syntax_error(conn: Conn, rng: random.Random) -> None:
    await conn.send({"id": conn.new_id(), "type": "subscribe",
                     "payload": {"query": SYNTAX_ERROR}})
    await conn.expect_close(4400)


async def t_binary(conn: Conn, rng: random.Random) -> None:
    await conn.send(rng.choice([b"{}", json.dumps({"type": "ping"}).encode(), b"\xff\x00"]))
    await conn.expect_close(4400)


async def t_too_big(conn: Conn, rng: random.Random) -> None:
    await conn.send(json.dumps({"type": "ping", "payload": {"x": "y" * 70_000}}))
    await conn.expect_close(1009)


async def t_duplicate_id(conn: Conn, rng: random.Random) -> None:
    id = conn.new_id()
    await conn.send({"id": id, "type": "subscribe", "payload": {"query": QUIET}})
    await conn.send({"id": id, "type": "subscribe", "payload": {"query": QUIET}})
    await conn.expect_close(4409)


async def t_second_init(conn: Conn, rng: random.Random) -> None:
    await conn.send({"type": "connection_init"})
    await conn.expect_close(4429)


# ------------------------------------------------------------------ legacy graphql-ws


async def l_sync(conn: Conn, rng: random.Random) -> None:
    await conn.sync()


async def l_subscription(conn: Conn, rng: random.Random) -> None:
    id = conn.new_id()
    query = rng.choice([QUIET, QUIET, *PADDED])
    await conn.send({"id": id, "type": "start", "payload": {"query": query}})
    await conn.send({"id": id, "type": "stop"})
    await conn.expect("complete", id)


async def l_query(conn: Conn, rng: random.Random) -> None:
    """The legacy protocol carries subscriptions only (Strawberry's rule)."""
    id = conn.new_id()
    await conn.send({"id": id, "type": "start", "payload": {"query": QUERY}})
    await conn.expect("error", id, lambda m: "not allowed" in m["payload"]["message"])


async def l_stop_unknown(conn: Conn, rng: random.Random) -> None:
    await conn.send({"id": "never-started", "type": "stop"})
    await conn.sync()


async def l_bad_document(conn: Conn, rng: random.Random) -> None:
    id = conn.new_id()
    await conn.send({"id": id, "type": "start", "payload": {"query": BAD_DOCUMENT}})
    await conn.expect("error", id, lambda m: "nope" in m["payload"]["message"])


async def l_syntax_error(conn: Conn, rng: random.Random) -> None:
    id = conn.new_id()
    await conn.send({"id": id, "type": "start", "payload": {"query": SYNTAX_ERROR}})
    await conn.expect("error", id, lambda m: "Syntax Error" in m["payload"]["message"])


async def l_deep_variables(conn: Conn, rng: random.Random) -> None:
    id = conn.new_id()
    await conn.send({"id": id, "type": "start", "payload": {
        "query": WITH_VARIABLE, "variables": {"id": deep(rng.randint(2, 400))}}})
    await conn.expect("error", id)


async def l_two_operations(conn: Conn, rng: random.Random) -> None:
    id = conn.new_id()
    await conn.send({"id": id, "type": "start", "payload": {"query": TWO_OPERATIONS}})
    await conn.expect("error", id, lambda m: "operation name" in m["payload"]["message"])


async def l_duplicate_id(conn: Conn, rng: random.Random) -> None:
    """A second start of an id replaces the first (which completes)."""
    id = conn.new_id()
    await conn.send({"id": id, "type": "start", "payload": {"query": QUIET}})
    await conn.send({"id": id, "type": "start", "payload": {"query": QUIET}})
    await conn.expect("complete", id)
    await conn.send({"id": id, "type": "stop"})
    await conn.expect("complete", id)


async def l_not_json(conn: Conn, rng: random.Random) -> None:
    await conn.send(not_json(rng))
    await conn.expect("connection_error")


async def l_non_object(conn: Conn, rng: random.Random) -> None:
    await conn.send(non_object(rng))
    await conn.expect("connection_error")


async def l_deep_json(conn: Conn, rng: random.Random) -> None:
    depth = rng.randint(5_000, 20_000)
    await conn.send(rng.choice(["[" * depth, '{"type": "start", "payload": ' + "[" * depth]))
    await conn.expect("connection_error")


async def l_big_int(conn: Conn, rng: random.Random) -> None:
    await conn.send('{"type": "stop", "id": ' + "9" * rng.randint(5_000, 20_000) + "}")
    await conn.expect("connection_error")


async def l_unknown_type(conn: Conn, rng: random.Random) -> None:
    kind = rng.choice(["subscribe", "complete", "ping", "data", "", 5, None, ["start"]])
    frame: dict[str, Any] = {"type": kind}
    if rng.random() < 0.5:
        frame["id"] = "x1"
    await conn.send(frame)
    await conn.expect("error", frame.get("id"),
                      lambda m: m["payload"]["message"] == "Invalid message type!")


async def l_wrong_field(conn: Conn, rng: random.Random) -> None:
    await conn.send(wrong_field(rng, LEGACY, conn.new_id()))
    await conn.expect("error")
    await conn.sync()  # and nothing else


async def l_second_init(conn: Conn, rng: random.Random) -> None:
    await conn.send({"type": "connection_init", "payload": {}})
    await conn.expect("connection_error")
    await conn.sync()


async def l_binary(conn: Conn, rng: random.Random) -> None:
    await conn.send(rng.choice([b"{}", b"\xff\x00"]))
    await conn.expect_close(1002)


async def l_too_big(conn: Conn, rng: random.Random) -> None:
    await conn.send(json.dumps({"type": "stop", "id": "y" * 70_000}))
    await conn.expect_close(1009)


async def l_terminate(conn: Conn, rng: random.Random) -> None:
    await conn.send({"type": "connection_terminate"})
    await conn.expect_close(1000)


#: (case, weight) per protocol; most keep the connection open, so it is reused
CASES: dict[str, list[tuple[Case, int]]] = {
    TRANSPORT: [
        (t_ping, 12), (t_pong, 6), (t_subscription, 14), (t_query, 8),
        (t_complete_unknown, 6), (t_bad_document, 8), (t_deep_variables, 5),
        (t_two_operations, 5), (t_not_json, 2), (t_non_object, 2), (t_wrong_field, 4),
        (t_unknown_type, 1), (t_deep_json, 1), (t_big_int, 1), (t_syntax_error, 1),
        (t_binary, 1), (t_too_big, 1), (t_duplicate_id, 1), (t_second_init, 1),
    ],
    LEGACY: [
        (l_sync, 6), (l_subscription, 12), (l_query, 8), (l_stop_unknown, 5),
        (l_bad_document, 6), (l_syntax_error, 4), (l_deep_variables, 4),
        (l_two_operations, 4), (l_duplicate_id, 4), (l_not_json, 6), (l_non_object, 6),
        (l_deep_json, 2), (l_big_int, 2), (l_unknown_type, 8), (l_wrong_field, 10),
        (l_second_init, 2), (l_binary, 1), (l_too_big, 1), (l_terminate, 1),
    ],
}


async def open_conn(conn: Conn, rng: random.Random) -> bool:
    """Make ``conn`` ready for cases; False when its opening was itself a case
    (messages before ``connection_init``; odd ``connection_init`` payloads)."""
    protocol = conn.protocol
    roll = rng.random()
    try:
        if roll < 0.1:  # an operation before connection_init: 4401
            conn.case = "before_init"
            Fuzz.classes[f"{protocol} before_init"] += 1
            kind = "subscribe" if protocol == TRANSPORT else "start"
            await conn.send({"id": "1", "type": kind, "payload": {"query": QUIET}})
            await conn.expect_close(4401)
        if roll < 0.2 and protocol == LEGACY:  # an init payload that is not an object
            conn.case = "init_not_an_object"
            Fuzz.classes[f"{protocol} init_not_an_object"] += 1
            await conn.send({"type": "connection_init", "payload": rng.choice([[1], 5, "x"])})
            await conn.expect("connection_error")
            await conn.expect_close(1000)
        payload = rng.choice([{}, None, "absent", {"client": "fuzz"}])
        init: dict[str, Any] = {"type": "connection_init"}
        if payload != "absent":
            init["payload"] = payload
        await conn.send(init)
        await conn.expect("connection_ack")
        return True
    except Closed:
        return False


async def worker(server: Server, protocol: str, rng: random.Random, frames: int) -> None:
    """Run cases on ``protocol`` until ``frames`` frames have been sent by this worker."""
    cases, weights = zip(*CASES[protocol], strict=True)
    sent = 0
    while sent < frames:
        ws = await connect(server.ws_url, subprotocols=[protocol],  # type: ignore[list-item]
                           compression=None, max_size=2**20, open_timeout=TIMEOUT)
        conn = Conn(ws, protocol)
        try:
            ready = await open_conn(conn, rng)
            while ready and sent + conn.sent < frames:
                case = rng.choices(cases, weights)[0]
                conn.case = case.__name__
                Fuzz.classes[f"{protocol} {case.__name__}"] += 1
                try:
                    await case(conn, rng)
                except Closed:
                    break
        finally:
            await ws.close()
        sent += conn.sent


async def fuzz(server: Server, seed: int, frames: int) -> None:
    rngs = [random.Random(seed * 100 + n) for n in range(2 * WORKERS)]
    share = frames // (2 * WORKERS) + 1
    await asyncio.gather(*(
        worker(server, protocol, rngs[n * 2 + k], share)
        for n in range(WORKERS) for k, protocol in enumerate((TRANSPORT, LEGACY))))


class Monitor:
    """A well-behaved subscriber, and writes over HTTP it must see, all along."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.written: list[str] = []
        self.received: set[str] = set()
        self.slowest_write = 0.0
        self.stop = asyncio.Event()

    async def subscribe(self) -> None:
        self.ws = await connect(self.server.ws_url,
                                subprotocols=[TRANSPORT],  # type: ignore[list-item]
                                compression=None)
        await self.ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await self.ws.recv())["type"] == "connection_ack"
        await self.ws.send(json.dumps({"id": "monitor", "type": "subscribe", "payload": {
            "query": "subscription { bookChanged { op id } }"}}))
        await asyncio.to_thread(self.server.wait_subscriptions, 1)

    async def read(self) -> None:
        async for text in self.ws:
            message = json.loads(text)
            assert message["type"] == "next", message
            self.received.add(message["payload"]["data"]["bookChanged"]["id"])

    async def write(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            result = await asyncio.to_thread(self.server.graphql, CREATE_BOOK,
                                             {"t": f"during the fuzz {n}"})
            self.slowest_write = max(self.slowest_write, time.monotonic() - started)
            self.written.append(result["data"]["createBook"]["id"])
            await asyncio.sleep(0.1)

    async def all_received(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while missing := set(self.written) - self.received:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert not missing, f"the monitor missed {len(missing)} of {len(self.written)} events"


def rss(server: Server) -> int:
    return int(psutil.Process(server.process.pid).memory_info().rss)


async def settle_subscriptions(server: Server, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (found := (await asyncio.to_thread(server.stats))["subscriptions"]) != count:
        assert time.monotonic() < deadline, f"{found} subscriptions left, not {count}"
        await asyncio.sleep(0.1)


async def test_fuzzed_frames_get_the_protocols_answers_and_nothing_leaks(
    demo_server: Server,
) -> None:
    monitor = Monitor(demo_server)
    await monitor.subscribe()
    reader = asyncio.create_task(monitor.read())
    try:
        # warm-up: every class at least once (lazy imports, caches), then the baseline
        await fuzz(demo_server, SEED - 1, 1_000)
        await settle_subscriptions(demo_server, 1)
        before = rss(demo_server)
        Fuzz.frames = 0
        Fuzz.classes.clear()

        writer = asyncio.create_task(monitor.write())
        started = time.monotonic()
        await fuzz(demo_server, SEED, FRAMES)
        elapsed = time.monotonic() - started
        monitor.stop.set()
        await writer

        assert Fuzz.frames >= FRAMES
        for protocol, cases in CASES.items():  # every class was exercised, repeatedly
            for case, _ in cases:
                assert Fuzz.classes[f"{protocol} {case.__name__}"] >= 5, (case, Fuzz.classes)
            assert Fuzz.classes[f"{protocol} before_init"] >= 5
        assert Fuzz.classes[f"{LEGACY} init_not_an_object"] >= 5
        # the server answered everyone else throughout
        assert len(monitor.written) >= 20, monitor.written
        await monitor.all_received()
        assert monitor.slowest_write < 5, monitor.slowest_write
        # no subscription of the fuzz stays behind; memory is back within the bound
        await settle_subscriptions(demo_server, 1)
        # no frame was an error of the server's (Strawberry logs the clients' GraphQL
        # errors, syntax and validation, with their tracebacks: those are expected)
        log = demo_server.log.read_text()
        for marker in SERVER_ERRORS:
            assert marker not in log, (marker, log[log.index(marker) - 3000:][:6000])
        grown = rss(demo_server) - before
        print(f"fuzz: {Fuzz.frames} frames in {elapsed:.1f}s, RSS {grown / 2**20:+.1f} MB, "
              f"{len(monitor.written)} events to the monitor; {sorted(Fuzz.classes.items())}")
        assert grown < RSS_BOUND, f"RSS grew by {grown / 2**20:.1f} MB over {elapsed:.0f}s"
    finally:
        monitor.stop.set()
        await monitor.ws.close()
        reader.cancel()
    await settle_subscriptions(demo_server, 0)
