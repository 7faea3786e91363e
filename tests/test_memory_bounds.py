"""Outbound memory is bounded in bytes: per subscription (``SUBSCRIPTION_QUEUE_BYTES``)
and per connection (``CONNECTION_QUEUE_BYTES``), and the slow-consumer policy reaches the
client at once: the subscription's error and ``complete``, or close code 1013.

A paused client is simulated in-process by an ASGI wrapper whose ``send`` waits (as a
server's does when the peer's buffers are full) while the gate is shut.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from gqlsync.exceptions import SlowConsumerError
from gqlsync.hub import Subscription, frame_bytes, get_hub
from gqlsync.testing import ClosedError, GraphQLWSClient, settle
from gqlsync.transport.websocket import CLOSE_SLOW_CONSUMER, _Writer
from schema_examples.bookstore.models import Author, Book
from tests.test_transport import graphql, token_for

BOOKS = "subscription { bookChanged { op node { title } } }"


class Gate:
    """Wraps an ASGI application: while shut, its ``websocket.send`` waits (a client
    that stopped reading); the close goes through, as a server queues it at once."""

    def __init__(self, application: Any) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.sends = 0
        self.application = application
        self.closed = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        async def gated(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.send":
                if self.closed:  # as uvicorn: nothing may follow the close
                    raise RuntimeError("Unexpected ASGI message after websocket.close")
                await self.open.wait()
                self.sends += 1
            elif message["type"] == "websocket.close":
                self.closed = True
                await self.open.wait()  # as uvicorn's: even the close waits to be written
            await send(message)

        return await self.application(scope, receive, gated)


def _writers() -> dict[_Writer, int]:
    """The writers of the hub's shared subscriptions' sockets, with their subscriptions."""
    found: dict[_Writer, int] = {}
    for members in get_hub().groups.values():
        for sub in members:
            writer = getattr(sub.sender, "_writer", None)
            if isinstance(writer, _Writer):
                found[writer] = found.get(writer, 0) + 1
    return found


# --------------------------------------------------------------------------- the writer


def _blocked_send() -> tuple[Callable[..., Any], asyncio.Event, list[str]]:
    drained = asyncio.Event()
    written: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        await drained.wait()
        written.append(message["text"])

    return send, drained, written


async def test_the_writer_counts_the_bytes_queued_and_in_flight() -> None:
    send, drained, written = _blocked_send()
    writer = _Writer(send, limit=10_000)
    unsent: list[str] = []

    def frame(text: str, done: bool = False) -> None:
        unsent.append(text)
        writer.enqueue(text, lambda: done, lambda: unsent.remove(text))

    frame("a" * 100)  # in flight: its write has to wait
    frame("b" * 200)
    frame("c" * 300)
    assert writer.queued_bytes == sum(frame_bytes(t) for t in unsent)
    drained.set()
    await asyncio.sleep(0.01)
    assert written == ["a" * 100, "b" * 200, "c" * 300]
    assert writer.queued_bytes == 0
    assert unsent == []


async def test_a_writer_past_its_bound_drops_everything_at_once_and_says_so() -> None:
    send, drained, written = _blocked_send()
    overflows: list[int] = []
    writer = _Writer(send, limit=5_000, overflow=lambda: overflows.append(1))
    unsent: list[str] = []

    def frame(text: str) -> None:
        unsent.append(text)
        writer.enqueue(text, lambda: False, lambda: unsent.remove(text))

    for i in range(4):
        frame(f"{i}" * 1_000)
    assert overflows == []
    assert len(unsent) == 4
    frame("x" * 1_000)  # 5 frames of ~1 KB: past 5,000 bytes
    assert overflows == [1]
    assert unsent == []
    assert writer.queued_bytes == 0
    frame("late")  # nothing more is queued, nor the overflow repeated
    assert unsent == []
    assert overflows == [1]
    assert writer.overflowed
    drained.set()
    await asyncio.sleep(0.01)
    assert written == []
    assert writer._task is None


async def test_one_frame_over_the_bound_still_goes_to_an_idle_socket() -> None:
    send, drained, written = _blocked_send()
    overflows: list[int] = []
    writer = _Writer(send, limit=1_000, overflow=lambda: overflows.append(1))
    writer.enqueue("y" * 5_000, lambda: False, lambda: None)
    assert overflows == []
    drained.set()
    await asyncio.sleep(0.01)
    assert written == ["y" * 5_000]


async def test_purge_frees_the_frames_of_ended_operations() -> None:
    send, drained, written = _blocked_send()
    writer = _Writer(send, limit=100_000)
    ended = False
    unsent: list[str] = []

    def frame(text: str, mine: bool) -> None:
        unsent.append(text)
        writer.enqueue(text, (lambda: ended) if mine else (lambda: False),
                       lambda: unsent.remove(text))

    frame("first", mine=False)  # in flight
    frame("ended-1" * 100, mine=True)
    frame("other" * 100, mine=False)
    frame("ended-2" * 100, mine=True)
    ended = True
    writer.purge()
    assert unsent == ["first", "other" * 100]
    assert writer.queued_bytes == frame_bytes("first") + frame_bytes("other" * 100)
    drained.set()
    await asyncio.sleep(0.01)
    assert written == ["first", "other" * 100]


# --------------------------------------------------------------------------- the subscription


class _HeldSender:
    """A sender whose frames are never written (a socket that stopped reading)."""

    query, variables, operation_name = "", None, None

    def __init__(self) -> None:
        self.held: list[tuple[str, Callable[[], None]]] = []

    def frame(self, payload: str) -> str:
        return payload

    def enqueue(self, frame: str, sent: Callable[[], None]) -> None:
        self.held.append((frame, sent))


def test_a_subscription_past_its_byte_bound_is_ended() -> None:
    sender = _HeldSender()
    ended: list[BaseException] = []
    sub = Subscription("bookstore.book", "g", sender=sender, limit=1_000, limit_bytes=10_000)
    sub.on_end = ended.append
    sub.deliver("z" * 20_000)  # one frame always fits when none waits
    assert not sub.ended
    assert sub.pending_bytes == frame_bytes("z" * 20_000)
    sender.held.pop()[1]()  # written
    assert sub.pending == 0
    assert sub.pending_bytes == 0
    for _ in range(4):
        sub.deliver("w" * 2_000)
    assert not sub.ended
    assert sub.pending == 4
    sub.deliver("w" * 2_000)  # ~10,250 bytes would wait: past 10,000
    assert sub.ended
    assert isinstance(ended[0], SlowConsumerError)
    assert len(sender.held) == 4


def test_the_frame_limit_still_holds_for_small_frames() -> None:
    sender = _HeldSender()
    sub = Subscription("bookstore.book", "g", sender=sender, limit=3, limit_bytes=10**9)
    for _ in range(4):
        sub.deliver("{}")
    assert sub.ended
    assert len(sender.held) == 3


# --------------------------------------------------------------------------- over a socket

async def _messages_until_complete(client: GraphQLWSClient, id: str) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = await client.receive(timeout=3)
        if message.get("id") == id:
            messages.append(message)
            if message["type"] == "complete":
                return messages


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded")
async def test_a_paused_subscription_gets_its_error_and_complete_the_others_everything(
    application: Any, settings: Any
) -> None:
    settings.GQLSYNC = {"SUBSCRIPTION_QUEUE_BYTES": 4_000}
    gate = Gate(application)
    author = await Author.objects.aget(email="lee@child.com")
    async with GraphQLWSClient(gate) as slow, GraphQLWSClient(application) as fast:
        paused = await slow.subscribe(BOOKS)
        reading = await fast.subscribe(BOOKS)
        await settle()
        writers = list(_writers())
        gate.open.clear()
        for i in range(30):  # ~400 bytes a frame: about ten fit in 4,000
            await Book.objects.acreate(title=f"{i:03d}" + "t" * 250, author=author)
        await settle()
        titles = [(await reading.next())["data"]["bookChanged"]["node"]["title"][:3]
                  for _ in range(30)]
        assert titles == [f"{i:03d}" for i in range(30)]
        assert get_hub().subscription_count() == 1  # the paused one was ended at once
        assert gate.sends == 1  # the ack only: the slow socket wrote nothing meanwhile
        # its queued frames were dropped with it: left are the frame being written, and
        # the error and complete behind it
        assert 0 < sum(w.queued_bytes for w in writers) < 1_500
        gate.open.set()
        messages = await _messages_until_complete(slow, paused.id)
        data = [m for m in messages[:-2] if m["type"] == "next"]
        assert 1 <= len(data) < 30
        assert "fell too far behind" in messages[-2]["payload"]["errors"][0]["message"]
        assert messages[-1] == {"id": paused.id, "type": "complete"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded")
async def test_a_connection_past_its_byte_bound_is_closed_with_1013_at_once(
    application: Any, settings: Any
) -> None:
    settings.GQLSYNC = {"CONNECTION_QUEUE_BYTES": 6_000}
    gate = Gate(application)
    author = await Author.objects.aget(email="lee@child.com")
    async with GraphQLWSClient(gate) as slow, GraphQLWSClient(application) as fast:
        for _ in range(5):
            await slow.subscribe(BOOKS, settle=0)
        reading = await fast.subscribe(BOOKS)
        await settle()
        assert get_hub().subscription_count() == 6
        writer = next(w for w, subs in _writers().items() if subs == 5)
        gate.open.clear()
        for i in range(10):  # 5 frames of ~400 bytes an event: past 6,000 at the third
            await Book.objects.acreate(title=f"{i:03d}" + "t" * 250, author=author)
            await settle()
            if writer.overflowed:
                break
        assert writer.overflowed
        assert i <= 3
        # at once, while the client still reads nothing (and the server's close itself
        # waits for the socket to drain): its queue is gone, its subscriptions too
        await settle()
        assert writer.queued_bytes == 0
        assert get_hub().subscription_count() == 1
        gate.open.set()  # the client reads again: behind what was on the wire, the close
        with pytest.raises(ClosedError) as closed:
            while True:
                await slow.receive(timeout=2)
        assert closed.value.code == CLOSE_SLOW_CONSUMER
        for j in range(i + 1):
            assert (await reading.next())["data"]["bookChanged"]["node"]["title"][:3] \
                == f"{j:03d}"


# --------------------------------------------------------------------------- the demo's writes


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded")
async def test_the_demo_refuses_values_past_the_models_limits(application: Any) -> None:
    before = await Book.objects.acount()
    long_title = "x" * 301
    created = await graphql(
        application, "mutation($t: String!) { createBook(title: $t, "
        'authorEmail: "lee@child.com") { id } }', {"t": long_title})
    assert created["data"] is None
    error = created["errors"][0]
    assert "at most 300 characters" in error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert list(error["extensions"]["fields"]) == ["title"]
    assert await Book.objects.acount() == before
    ok = await graphql(application, 'mutation { createBook(title: "Fine", '
                       'authorEmail: "lee@child.com") { id title } }')
    assert ok["data"]["createBook"]["title"] == "Fine"
    book_id = ok["data"]["createBook"]["id"]
    updated = await graphql(application, "mutation($id: ID!, $t: String!) { "
                            "updateBook(id: $id, title: $t) { id } }",
                            {"id": book_id, "t": long_title})
    assert "at most 300 characters" in updated["errors"][0]["message"]
    assert (await Book.objects.aget(pk=book_id)).title == "Fine"

    from schema_examples.chat.models import Message
    from schema_examples.chat.schema import MESSAGE_MAX_LENGTH

    alice = await token_for("alice")
    messages = await Message.objects.acount()
    sent = await graphql(application, "mutation($t: String!) { sendMessage(room: \"general\", "
                         "text: $t) { id } }", {"t": "m" * (MESSAGE_MAX_LENGTH + 1)},
                         token=alice)
    assert sent["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await Message.objects.acount() == messages
    fits = await graphql(application, "mutation($t: String!) { sendMessage(room: \"general\", "
                         "text: $t) { id } }", {"t": "m" * MESSAGE_MAX_LENGTH}, token=alice)
    assert "errors" not in fits, json.dumps(fits)[:500]


# --------------------------------------------------------------------------- legacy graphql-ws


async def _legacy(app: Any) -> Any:
    from gqlsync.testing import _WebSocket

    socket = _WebSocket(app, "/graphql/", subprotocols=["graphql-ws"], headers=[])
    connected, subprotocol = await socket.connect()
    assert connected
    assert subprotocol == "graphql-ws"
    await socket.send_to(json.dumps({"type": "connection_init"}))
    assert json.loads((await socket.next_output(3))["text"])["type"] == "connection_ack"
    return socket


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded")
async def test_legacy_protocol_a_paused_subscription_gets_its_error_and_complete(
    application: Any, settings: Any
) -> None:
    settings.GQLSYNC = {"SUBSCRIPTION_QUEUE_BYTES": 4_000}
    gate = Gate(application)
    author = await Author.objects.aget(email="lee@child.com")
    socket = await _legacy(gate)
    await socket.send_to(json.dumps({"id": "1", "type": "start", "payload": {"query": BOOKS}}))
    await asyncio.sleep(0.05)
    await settle()
    assert get_hub().subscription_count() == 1
    gate.open.clear()
    for i in range(30):
        await Book.objects.acreate(title=f"{i:03d}" + "t" * 250, author=author)
    await settle()
    assert get_hub().subscription_count() == 0
    gate.open.set()
    messages = []
    with contextlib.suppress(TimeoutError):
        while True:
            messages.append(json.loads((await socket.next_output(0.5))["text"]))
    # (the frame that was being written when the gate shut may come last here: both
    # writes wait on the gate; a server has it on the wire already)
    data = [m for m in messages if m["type"] == "data" and "errors" not in m["payload"]]
    errors = [m for m in messages if m["type"] == "data" and "errors" in m["payload"]]
    assert 1 <= len(data) < 30
    assert len(errors) == 1
    assert "fell too far behind" in errors[0]["payload"]["errors"][0]["message"]
    assert [m["type"] for m in messages if m not in data] == ["data", "complete"]
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded")
async def test_legacy_protocol_a_connection_past_its_byte_bound_is_closed_with_1013(
    application: Any, settings: Any
) -> None:
    settings.GQLSYNC = {"CONNECTION_QUEUE_BYTES": 6_000}
    gate = Gate(application)
    author = await Author.objects.aget(email="lee@child.com")
    socket = await _legacy(gate)
    for n in range(5):
        await socket.send_to(json.dumps({"id": str(n), "type": "start",
                                         "payload": {"query": BOOKS}}))
    await asyncio.sleep(0.05)
    await settle()
    gate.open.clear()
    for i in range(5):
        await Book.objects.acreate(title=f"{i:03d}" + "t" * 250, author=author)
        await settle()
    await settle()
    # at once, while the client reads nothing and the close waits to be written
    assert get_hub().subscription_count() == 0
    assert all(w.queued_bytes == 0 for w in _writers())
    gate.open.set()
    while (output := await socket.next_output(2))["type"] != "websocket.close":
        pass
    assert output["code"] == CLOSE_SLOW_CONSUMER
    await socket.disconnect()
