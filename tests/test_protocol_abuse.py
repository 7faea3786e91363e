"""Bad frames, odd-but-legal frames and credentials at the edges, on both protocols.

Every frame gets the protocol's answer and the connection either goes on or closes
cleanly, with nothing left behind in the server:

- ``graphql-transport-ws``: a frame that is not a protocol message closes with ``4400``;
- legacy ``graphql-ws`` (subscriptions-transport-ws' server semantics): a frame that is
  not JSON, or not a JSON object, gets ``connection_error``; an unknown ``type``,
  ``error`` "Invalid message type!"; a ``start``/``stop`` without a string id or with a
  malformed payload, ``error``; and the connection goes on. A binary frame closes with
  ``1002``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model

import gqlsync
import gqlsync.asgi
from gqlsync.hub import get_hub
from gqlsync.testing import ClosedError, GraphQLWSClient, _WebSocket, login_session, settle
from gqlsync.transport.websocket import CLOSE_BAD_REQUEST, CLOSE_FORBIDDEN
from schema_examples.bookstore.models import Author, Book
from tests.test_transport import http

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]

BOOK_CHANGED = "subscription { bookChanged { op node { title } } }"
TWO_OPERATIONS = ("subscription A { bookChanged { op } } "
                  "subscription B { bookChanged { id } }")
MULTIPLE = "Must provide operation name if query contains multiple operations."


class LegacyClient:
    """A legacy ``graphql-ws`` (subscriptions-transport-ws) client, in-process."""

    def __init__(self, application: Any, headers: list[tuple[bytes, bytes]] | None = None
                 ) -> None:
        self.socket = _WebSocket(application, "/graphql/", subprotocols=["graphql-ws"],
                                 headers=headers or [])

    async def __aenter__(self) -> LegacyClient:
        connected, subprotocol = await self.socket.connect()
        assert connected
        assert subprotocol == "graphql-ws"
        await self.send({"type": "connection_init", "payload": {}})
        assert (await self.receive())["type"] == "connection_ack"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.socket.disconnect()

    async def send(self, message: Any) -> None:
        await self.socket.send_to(json.dumps(message))

    async def receive(self, timeout: float = 3.0) -> dict[str, Any]:
        output = await self.socket.next_output(timeout)
        if output["type"] == "websocket.close":
            raise ClosedError(output.get("code"), output.get("reason", ""))
        message: dict[str, Any] = json.loads(output["text"])
        return message

    async def start(self, id: str, query: str = BOOK_CHANGED, **payload: Any) -> None:
        await self.send({"type": "start", "id": id, "payload": {"query": query, **payload}})
        await settle()


async def subscriptions_reach(count: int, within: float = 5.0) -> bool:
    """Has the hub registered ``count`` subscriptions within ``within`` seconds? (A start
    registers off the event loop; on a loaded machine ``settle()`` may return first.)"""
    deadline = asyncio.get_running_loop().time() + within
    while get_hub().subscription_count() != count:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def create_book(title: str) -> Book:
    author = await Author.objects.aget(email="lee@child.com")
    return await Book.objects.acreate(title=title, author=author)


# ------------------------------------------------------------------ legacy graphql-ws

#: frames the reference server cannot parse as a message: ``connection_error``
UNPARSEABLE = ["not json", "", "[" * 5000, '{"type": "start", "n": ' + "1" * 5000 + "}",
               "[1, 2]", "5", '"start"', "null"]
#: (frame, the ``error`` payload's message, the id the answer carries)
REFUSED = [
    ({"type": "nonsense", "id": "7"}, "Invalid message type!", "7"),
    ({"type": "nonsense", "id": ["7"]}, "Invalid message type!", None),
    ({"id": "7"}, "Invalid message type!", "7"),
    ({"type": 5}, "Invalid message type!", None),
    ({"type": ["start"]}, "Invalid message type!", None),
    ({"type": "start", "payload": {"query": BOOK_CHANGED}}, 'needs a string "id"', None),
    ({"type": "start", "id": ["1"], "payload": {"query": BOOK_CHANGED}}, "string", None),
    ({"type": "start", "id": {"a": 1}, "payload": {"query": BOOK_CHANGED}}, "string", None),
    ({"type": "stop"}, 'needs a string "id"', None),
    ({"type": "stop", "id": 3}, 'needs a string "id"', None),
    ({"type": "start", "id": "9"}, "payload must be an object", "9"),
    ({"type": "start", "id": "9", "payload": [BOOK_CHANGED]}, "payload must be an object", "9"),
    ({"type": "start", "id": "9", "payload": {"query": [BOOK_CHANGED]}}, '"query"', "9"),
    ({"type": "start", "id": "9", "payload": {"query": {"q": 1}}}, '"query"', "9"),
    ({"type": "start", "id": "9", "payload": {"query": BOOK_CHANGED, "variables": [1]}},
     '"variables"', "9"),
    ({"type": "start", "id": "9", "payload": {"query": BOOK_CHANGED, "operationName": 5}},
     '"operationName"', "9"),
    ({"type": "start", "id": "9", "payload": {"query": BOOK_CHANGED, "extensions": "x"}},
     '"extensions"', "9"),
]


@pytest.mark.parametrize("frame", UNPARSEABLE)
async def test_legacy_a_frame_that_is_not_a_json_object_gets_connection_error_and_goes_on(
    application: Any, frame: str,
) -> None:
    async with LegacyClient(application) as client:
        await client.start("1")
        await client.socket.send_to(frame)
        answer = await client.receive()
        assert answer["type"] == "connection_error"
        assert answer["payload"]["message"]
        await create_book("Still here")  # the connection and its subscription go on
        data = await client.receive()
        assert data == {"type": "data", "id": "1", "payload": {"data": {"bookChanged": {
            "op": "CREATED", "node": {"title": "Still here"}}}}}


@pytest.mark.parametrize(("frame", "message", "id"), REFUSED)
async def test_legacy_an_unknown_type_or_a_malformed_start_gets_error_and_goes_on(
    application: Any, frame: dict[str, Any], message: str, id: str | None,
) -> None:
    async with LegacyClient(application) as client:
        await client.start("1")
        await client.send(frame)
        answer = await client.receive()
        assert answer["type"] == "error"
        assert message in answer["payload"]["message"]
        assert answer.get("id") == id
        assert get_hub().subscription_count() == 1  # the bad start registered nothing
        await create_book("Still here")
        assert (await client.receive())["id"] == "1"


async def test_legacy_a_binary_frame_closes_with_1002_and_frees_everything(
    application: Any,
) -> None:
    async with LegacyClient(application) as client:
        await client.start("1")
        assert await subscriptions_reach(1)
        await client.socket.send_input({"type": "websocket.receive", "bytes": b"{}"})
        with pytest.raises(ClosedError) as closed:
            await client.receive()
        assert closed.value.code == 1002
    await settle()
    assert get_hub().subscription_count() == 0


async def test_legacy_connection_holds_no_queue_or_task_of_its_own(application: Any) -> None:
    """The handler is driven frame by frame from Channels' ``receive()``: there is no
    per-connection queue for frames to pile up in behind a dead handler, and no task."""
    from gqlsync.transport.websocket import GraphQLWSHandler

    consumers: list[GraphQLWSHandler] = []
    original = GraphQLWSHandler._drive_legacy

    async def spy(self: GraphQLWSHandler, text_data: str | None) -> None:
        consumers.append(self)
        await original(self, text_data)

    GraphQLWSHandler._drive_legacy = spy  # type: ignore[method-assign]
    try:
        async with LegacyClient(application) as client:
            for frame in ("[1]", "{]", '{"type": "start"}', '{"type": "start", "id": []}'):
                await client.socket.send_to(frame)
                await client.receive()
            consumer = consumers[-1]
            assert consumer.message_queue is None
            assert consumer.run_task is None
            await client.start("1")
            await create_book("Driven")
            assert (await client.receive())["type"] == "data"
    finally:
        GraphQLWSHandler._drive_legacy = original  # type: ignore[method-assign]


async def test_legacy_keeps_its_protocol_init_start_data_stop_terminate(
    application: Any,
) -> None:
    async with LegacyClient(application) as client:
        await client.start("1")
        await create_book("One")
        assert (await client.receive())["payload"]["data"]["bookChanged"]["node"] == {
            "title": "One"}
        await client.send({"type": "stop", "id": "1"})
        assert await client.receive() == {"type": "complete", "id": "1"}
        await settle()
        assert get_hub().subscription_count() == 0
        await client.start("1")  # the id is free again
        assert await subscriptions_reach(1)
        await client.send({"type": "connection_terminate"})
        with pytest.raises(ClosedError) as closed:
            await client.receive()
        assert closed.value.code == 1000
    await settle()
    assert get_hub().subscription_count() == 0


async def test_legacy_a_second_connection_init_is_refused_and_the_first_identity_kept(
    application: Any,
) -> None:
    bob = gqlsync.make_token(await get_user_model().objects.aget(username="bob"))
    async with LegacyClient(application) as client:  # anonymous
        await client.send({"type": "connection_init",
                           "payload": {"authorization": f"Bearer {bob}"}})
        answer = await client.receive()
        assert answer["type"] == "connection_error"
        assert "initialisation" in answer["payload"]["message"]
        await client.start("1", 'subscription { messageChanged(room: "general") { op } }')
        refused = await client.receive()  # still anonymous: no room for it
        assert refused["type"] in ("error", "data")
        assert "signed in" in json.dumps(refused["payload"])


async def test_legacy_start_before_init_closes_with_4401(application: Any) -> None:
    socket = _WebSocket(application, "/graphql/", subprotocols=["graphql-ws"], headers=[])
    await socket.connect()
    await socket.send_to(json.dumps({"type": "start", "id": "1",
                                     "payload": {"query": BOOK_CHANGED}}))
    closed = await socket.next_output(3)
    assert (closed["type"], closed["code"]) == ("websocket.close", 4401)
    await socket.disconnect()


async def test_legacy_a_rejected_token_gets_connection_error_and_closes(
    application: Any,
) -> None:
    socket = _WebSocket(application, "/graphql/", subprotocols=["graphql-ws"], headers=[])
    await socket.connect()
    await socket.send_to(json.dumps({"type": "connection_init",
                                     "payload": {"authorization": "Bearer forged"}}))
    await socket.send_to(json.dumps({"type": "start", "id": "1",
                                     "payload": {"query": BOOK_CHANGED}}))
    error = json.loads((await socket.next_output(3))["text"])
    assert error["type"] == "connection_error"
    closed = await socket.next_output(3)
    assert (closed["type"], closed["code"]) == ("websocket.close", 1011)
    await socket.disconnect()
    assert get_hub().subscription_count() == 0


async def test_legacy_two_operations_without_a_name_get_an_error_and_free_the_id(
    application: Any,
) -> None:
    async with LegacyClient(application) as client:
        await client.start("1", TWO_OPERATIONS)
        answer = await client.receive()
        assert answer == {"type": "error", "id": "1", "payload": {"message": MULTIPLE}}
        assert get_hub().subscription_count() == 0
        await client.start("1", TWO_OPERATIONS, operationName="B")
        book = await create_book("Named")
        assert (await client.receive())["payload"]["data"] == {
            "bookChanged": {"id": str(book.pk)}}


# ---------------------------------------------------------- graphql-transport-ws


@pytest.mark.parametrize("payload", [
    {"query": ["subscription { bookChanged { op } }"]},
    {"query": {"kind": "Document"}},
    {"query": 5},
    {"query": BOOK_CHANGED, "variables": [1]},
    {"query": BOOK_CHANGED, "variables": "x"},
    {"query": BOOK_CHANGED, "operationName": 5},
    {"query": BOOK_CHANGED, "operationName": ["A"]},
    {"query": BOOK_CHANGED, "extensions": []},
])
async def test_a_subscribe_whose_fields_have_the_wrong_types_closes_with_4400_quietly(
    application: Any, payload: dict[str, Any], caplog: pytest.LogCaptureFixture,
) -> None:
    async with GraphQLWSClient(application) as client:
        await client.send({"id": "1", "type": "subscribe", "payload": payload})
        with pytest.raises(ClosedError) as closed:
            await client.receive()
        assert closed.value.code == CLOSE_BAD_REQUEST
    await settle()
    assert get_hub().subscription_count() == 0
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a bad frame"


@pytest.mark.parametrize("init", [{"type": "connection_init", "payload": None},
                                  {"type": "connection_init"}])
async def test_connection_init_with_a_null_or_absent_payload_is_acknowledged(
    application: Any, init: dict[str, Any],
) -> None:
    client = GraphQLWSClient(application)
    await client.communicator.connect()
    await client.send(init)
    assert (await client.receive())["type"] == "connection_ack"
    sub = await client.subscribe(BOOK_CHANGED)
    await settle()
    await create_book("Acked")
    assert (await sub.next())["data"]["bookChanged"]["node"] == {"title": "Acked"}
    await client.communicator.disconnect()


async def test_two_operations_without_a_name_get_an_error_and_free_the_id(
    application: Any,
) -> None:
    async with GraphQLWSClient(application) as client:
        await client.send({"id": "1", "type": "subscribe", "payload": {"query": TWO_OPERATIONS}})
        answer = await client.receive()
        assert answer["type"] == "error"
        assert answer["id"] == "1"
        assert answer["payload"][0]["message"] == MULTIPLE
        await settle()
        assert get_hub().subscription_count() == 0
        await client.send({"id": "1", "type": "subscribe",  # the same id: not 4409
                           "payload": {"query": TWO_OPERATIONS, "operationName": "B"}})
        await settle()
        book = await create_book("Named")
        answer = await client.receive()
        assert answer == {"id": "1", "type": "next",
                          "payload": {"data": {"bookChanged": {"id": str(book.pk)}}}}


# ------------------------------------------------------------------- origins


@pytest.mark.parametrize(("scheme", "origin", "allowed"), [
    ("ws", "http://testserver", True),
    ("ws", "https://testserver", False),
    ("wss", "https://testserver", True),
    ("wss", "http://testserver", False),
])
async def test_a_websocket_origin_must_match_the_scheme_too(
    application: Any, scheme: str, origin: str, allowed: bool,
) -> None:
    socket = _WebSocket(application, "/graphql/", subprotocols=["graphql-transport-ws"],
                        headers=[(b"origin", origin.encode())])
    socket.scope["scheme"] = scheme
    connected, _ = await socket.connect()
    assert connected is allowed
    await socket.disconnect()


async def test_the_proxy_ssl_header_makes_the_origin_https(
    application: Any, settings: Any,
) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    for proto, origin, allowed in ((b"https", b"https://testserver", True),
                                   (b"http", b"https://testserver", False)):
        socket = _WebSocket(application, "/graphql/", subprotocols=["graphql-transport-ws"],
                            headers=[(b"origin", origin), (b"x-forwarded-proto", proto)])
        connected, _ = await socket.connect()
        assert connected is allowed
        await socket.disconnect()


async def test_an_https_page_does_not_speak_for_the_session_of_http_host(
    application: Any,
) -> None:
    alice = await get_user_model().objects.aget(username="alice")
    _, cookie = await login_session(alice)
    query = b'{"query": "{ rooms { name } }"}'
    status, body = await http(application, query, [cookie, (b"origin", b"http://testserver")])
    assert status == 200
    assert json.loads(body)["data"]["rooms"] != []  # same origin: the session counts
    status, body = await http(application, query, [cookie, (b"origin", b"https://testserver")])
    assert status == 200
    assert json.loads(body)["data"]["rooms"] == []  # another origin: anonymous


# ------------------------------------------------------------------ credentials


@pytest.mark.parametrize("value", [b"Bearer ", b"Bearer", b"bearer   ", b"Bearer a b"])
async def test_an_empty_or_malformed_bearer_is_refused_on_http_and_websocket(
    application: Any, value: bytes,
) -> None:
    status, _ = await http(application, b'{"query": "{ rooms { name } }"}',
                           [(b"authorization", value)])
    assert status == 401
    client = GraphQLWSClient(application, headers=[(b"authorization", value)])
    with pytest.raises(ClosedError) as closed:
        await client.connect()
    assert closed.value.code == CLOSE_FORBIDDEN
    text = value.decode()
    client = GraphQLWSClient(application, payload={"authorization": text})
    with pytest.raises(ClosedError) as closed:
        await client.connect()
    assert closed.value.code == CLOSE_FORBIDDEN


async def test_another_authorization_scheme_on_http_is_left_to_the_session(
    application: Any,
) -> None:
    """``Basic`` may be a proxy's: not gqlsync's credential, so not refused (the
    ``connection_init`` payload's ``authorization`` is gqlsync's alone: refused there)."""
    status, _ = await http(application, b'{"query": "{ rooms { name } }"}',
                           [(b"authorization", b"Basic YTpi")])
    assert status == 200


# ------------------------------------------------------------------------ stats


async def get_stats(application: Any, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    from asgiref.testing import ApplicationCommunicator

    scope = {"type": "http", "method": "GET", "path": "/graphql/stats", "raw_path": b"",
             "query_string": b"", "headers": [(b"host", b"testserver"), *headers],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80), "scheme": "http"}
    comm = ApplicationCommunicator(application, scope)
    await comm.send_input({"type": "http.request", "body": b""})
    start = await comm.receive_output(5)
    body = (await comm.receive_output(5))["body"]
    return start["status"], json.loads(body)


async def test_stats_are_for_staff_only(application: Any) -> None:
    """The demo serves ``/graphql/stats`` (``stats=True``): to staff, by token or session."""
    model = get_user_model()
    carol = await model.objects.aget(username="carol")  # staff in the demo's seed
    alice = await model.objects.aget(username="alice")
    assert (await get_stats(application, []))[0] == 403
    bearer = [(b"authorization", f"Bearer {gqlsync.make_token(alice)}".encode())]
    assert (await get_stats(application, bearer))[0] == 403
    assert (await get_stats(application, [(b"authorization", b"Bearer x")]))[0] == 401
    bearer = [(b"authorization", f"Bearer {gqlsync.make_token(carol)}".encode())]
    status, data = await get_stats(application, bearer)
    assert status == 200
    assert "subscriptions" in data
    _, cookie = await login_session(carol)
    assert (await get_stats(application, [cookie]))[0] == 200
    cross_site = [cookie, (b"origin", b"https://evil.example")]
    assert (await get_stats(application, cross_site))[0] == 403


async def test_stats_stay_opt_in() -> None:
    from schema_examples.schema import schema

    carol = await get_user_model().objects.aget(username="carol")
    bearer = [(b"authorization", f"Bearer {gqlsync.make_token(carol)}".encode())]
    with pytest.raises(ValueError, match="No route"):
        await get_stats(gqlsync.asgi.application(schema), bearer)
