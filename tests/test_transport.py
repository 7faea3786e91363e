"""The ASGI route in-process: both protocols' rules, users from tokens and sessions.

Real servers and real npm clients are in ``tests/e2e``; these tests pin the server's
answers to good and bad input without a network.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.contrib.auth import get_user_model

import gqlsync
import gqlsync.asgi
from gqlsync.hub import get_hub
from gqlsync.testing import ClosedError, GraphQLWSClient, login_session, settle
from gqlsync.transport.websocket import CLOSE_BAD_REQUEST, CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED
from schema_examples.bookstore.models import Author, Book

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]

BOOK_CHANGED = "subscription { bookChanged { op id cursor node { id title author { email } } } }"
BY_EMAIL = """subscription BooksByAuthorEmail($email: String!) {
  bookChanged(filters: { author: { email: { exact: $email } } }) {
    op id cursor node { id title author { email } } } }"""
ROOM = "subscription($room: String!) { messageChanged(room: $room) { op node { text } } }"


async def http(application: Any, body: bytes, headers: list[tuple[bytes, bytes]] | None = None,
               method: str = "POST") -> tuple[int, bytes]:
    scope = {
        "type": "http", "method": method, "path": "/graphql/", "raw_path": b"/graphql/",
        "query_string": b"", "headers": [(b"host", b"testserver"),
                                         (b"content-type", b"application/json"),
                                         *(headers or [])],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80), "scheme": "http",
    }
    comm = ApplicationCommunicator(application, scope)
    await comm.send_input({"type": "http.request", "body": body})
    start = await comm.receive_output(5)
    chunks = []
    while True:
        message = await comm.receive_output(5)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return start["status"], b"".join(chunks)


async def graphql(application: Any, query: str, variables: dict[str, Any] | None = None,
                  token: str | None = None) -> dict[str, Any]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    status, body = await http(
        application, json.dumps({"query": query, "variables": variables or {}}).encode(), headers
    )
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


async def token_for(username: str) -> str:
    user = await get_user_model().objects.aget(username=username)
    return gqlsync.make_token(user)


async def test_a_mutation_reaches_a_subscriber_with_the_contract_shape(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BOOK_CHANGED)
        created = await graphql(application, 'mutation { createBook(title: "New", '
                                'authorEmail: "lee@child.com") { id } }')
        book_id = created["data"]["createBook"]["id"]
        event = (await sub.next())["data"]["bookChanged"]
        assert event["op"] == "CREATED"
        assert event["id"] == book_id
        assert event["node"] == {"id": book_id, "title": "New",
                                 "author": {"email": "lee@child.com"}}
        assert isinstance(event["cursor"], str)
        assert event["cursor"]


async def test_a_filtered_subscription_gets_only_matching_rows(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        lee = await client.subscribe(BY_EMAIL, {"email": "lee@child.com"})
        janet_author = await Author.objects.aget(email="janet@evanovich.com")
        await Book.objects.acreate(title="Janet's", author=janet_author)
        await lee.nothing()
        lee_author = await Author.objects.aget(email="lee@child.com")
        book = await Book.objects.acreate(title="Lee's", author=lee_author)
        assert (await lee.next())["data"]["bookChanged"]["node"]["title"] == "Lee's"
        book_id = str(book.pk)
        await sync_to_async(book.delete)()
        deleted = (await lee.next())["data"]["bookChanged"]
        assert deleted["op"] == "DELETED"
        assert deleted["node"] == {"id": book_id, "title": "Lee's",
                                   "author": {"email": "lee@child.com"}}


async def test_a_cascade_delete_reaches_filtered_subscribers_with_its_last_state(
    application: Any,
) -> None:
    author = await Author.objects.acreate(name="Short Lived", email="short@lived.com")
    book = await Book.objects.acreate(title="Orphan", author=author)
    book_id = str(book.pk)
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BY_EMAIL, {"email": "short@lived.com"})
        await sync_to_async(author.delete)()
        event = (await sub.next())["data"]["bookChanged"]
        assert event["op"] == "DELETED"
        assert event["node"] == {"id": book_id, "title": "Orphan",
                                 "author": {"email": "short@lived.com"}}


async def test_completing_one_subscription_does_not_stop_another(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        first = await client.subscribe(BOOK_CHANGED)
        second = await client.subscribe(BOOK_CHANGED)
        await first.complete()
        author = await Author.objects.aget(email="lee@child.com")
        await Book.objects.acreate(title="After complete", author=author)
        assert (await second.next())["data"]["bookChanged"]["node"]["title"] == "After complete"
        await first.nothing()


async def test_a_member_receives_room_messages_and_a_non_member_gets_an_error(
    application: Any,
) -> None:
    alice, bob = await token_for("alice"), await token_for("bob")
    async with GraphQLWSClient(application, payload={"authorization": f"Bearer {bob}"}) as c:
        secret = await c.subscribe(ROOM, {"room": "secret"})
        message = await secret.message()
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert "not a member" in errors[0]["message"]
        general = await c.subscribe(ROOM, {"room": "general"})
        sent = await graphql(application, 'mutation { sendMessage(room: "secret", text: "psst") '
                             "{ id } }", token=alice)
        assert "errors" not in sent
        await general.nothing()
        await graphql(application, 'mutation { sendMessage(room: "general", text: "hi bob") '
                      "{ id } }", token=alice)
        assert (await general.next())["data"]["messageChanged"]["node"]["text"] == "hi bob"


async def test_an_anonymous_user_cannot_subscribe_to_a_room(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(ROOM, {"room": "general"})
        message = await sub.message()
        assert message["type"] in ("error", "next")
        text = json.dumps(message["payload"])
        assert "signed in" in text
        assert '"data": {' not in text


async def test_a_token_in_the_handshake_header_authenticates(application: Any) -> None:
    bob = await token_for("bob")
    headers = [(b"authorization", f"Bearer {bob}".encode())]
    async with GraphQLWSClient(application, headers=headers) as client:
        sub = await client.subscribe(ROOM, {"room": "general"})
        await graphql(application, 'mutation { sendMessage(room: "general", text: "x") { id } }',
                      token=bob)
        assert (await sub.next())["data"]["messageChanged"]["node"]["text"] == "x"


async def test_a_django_session_cookie_authenticates(application: Any) -> None:
    alice = await get_user_model().objects.aget(username="alice")
    _, cookie = await login_session(alice)
    async with GraphQLWSClient(application, headers=[cookie]) as client:
        sub = await client.subscribe(ROOM, {"room": "secret"})
        await graphql(application, 'mutation { sendMessage(room: "secret", text: "s") { id } }',
                      token=gqlsync.make_token(alice))
        assert (await sub.next())["data"]["messageChanged"]["node"]["text"] == "s"


async def test_the_id_argument_watches_one_row(application: Any) -> None:
    author = await Author.objects.aget(email="lee@child.com")
    watched = await Book.objects.acreate(title="Watched", author=author)
    other = await Book.objects.acreate(title="Other", author=author)
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(
            "subscription($id: ID!) { bookChanged(id: $id) { op node { title } } }",
            {"id": str(watched.pk)},
        )
        other.title = "Other, renamed"
        await sync_to_async(other.save)()
        watched.title = "Watched, renamed"
        await sync_to_async(watched.save)()
        event = (await sub.next())["data"]["bookChanged"]
        assert event == {"op": "UPDATED", "node": {"title": "Watched, renamed"}}
        await sub.nothing()


@pytest.mark.parametrize("value", ["Bearer forged", "Bearer ", "Basic abc", 42])
async def test_a_bad_token_in_connection_init_closes_with_4403(
    application: Any, value: object
) -> None:
    client = GraphQLWSClient(application, payload={"authorization": value})
    with pytest.raises(ClosedError) as closed:
        await client.connect()
    assert closed.value.code == CLOSE_FORBIDDEN


async def test_an_expired_token_closes_with_4403(application: Any, settings: Any) -> None:
    bob = await token_for("bob")
    settings.GQLSYNC = {"TOKEN_MAX_AGE": -1}
    client = GraphQLWSClient(application, payload={"authorization": f"Bearer {bob}"})
    with pytest.raises(ClosedError) as closed:
        await client.connect()
    assert closed.value.code == CLOSE_FORBIDDEN


async def test_a_deactivated_users_token_is_refused(application: Any) -> None:
    bob = await token_for("bob")
    await get_user_model().objects.filter(username="bob").aupdate(is_active=False)
    client = GraphQLWSClient(application, payload={"authorization": f"Bearer {bob}"})
    with pytest.raises(ClosedError) as closed:
        await client.connect()
    assert closed.value.code == CLOSE_FORBIDDEN


async def test_subscribing_before_connection_init_closes_with_4401(application: Any) -> None:
    client = GraphQLWSClient(application)
    await client.communicator.connect()
    await client.send({"id": "1", "type": "subscribe", "payload": {"query": BOOK_CHANGED}})
    with pytest.raises(ClosedError) as closed:
        await client.receive()
    assert closed.value.code == CLOSE_UNAUTHORIZED


@pytest.mark.parametrize("frame", ["not json", json.dumps({"type": "nonsense"}), "[1, 2]",
                                   json.dumps({"type": "subscribe", "id": "9"}),
                                   json.dumps({"type": "complete", "id": []}),
                                   json.dumps({"type": "subscribe", "id": {}, "payload": {}}),
                                   json.dumps({"type": "subscribe", "id": "9", "payload": []}),
                                   json.dumps({"type": 5}), "[" * 5000,
                                   '{"type": "ping", "n": ' + "1" * 5000 + "}",
                                   json.dumps({"id": "9", "type": "subscribe",
                                               "payload": {"query": "subscription {"}})])
async def test_malformed_frames_close_with_4400(application: Any, frame: str) -> None:
    """Whatever arrives, the socket closes with 4400 and its subscriptions are gone."""
    async with GraphQLWSClient(application) as client:
        await client.subscribe(BOOK_CHANGED)
        await settle()
        await client.communicator.send_to(frame)
        with pytest.raises(ClosedError) as closed:
            await client.receive()
        assert closed.value.code == CLOSE_BAD_REQUEST
    await settle()
    assert get_hub().subscription_count() == 0


async def test_unknown_fields_and_wrong_types_are_graphql_errors(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        unknown = await client.subscribe("subscription { bookChanged { nope } }")
        message = await unknown.message()
        assert message["type"] == "error"
        assert "nope" in message["payload"][0]["message"]
        wrong = await client.subscribe(BY_EMAIL, {"email": 5})
        message = await wrong.message()
        assert message["type"] == "error"
        assert "email" in message["payload"][0]["message"]


async def test_a_cross_origin_page_cannot_open_a_socket(application: Any) -> None:
    client = GraphQLWSClient(application, headers=[(b"origin", b"https://evil.example")])
    with pytest.raises(ClosedError):
        await client.connect()


async def test_an_allowed_origin_can(application: Any, settings: Any) -> None:
    from schema_examples.schema import schema

    settings.GQLSYNC = {"ALLOWED_ORIGINS": ["https://app.example"]}
    app = gqlsync.asgi.application(schema)
    async with GraphQLWSClient(app, headers=[(b"origin", b"https://app.example")]) as client:
        assert client.closed is None


async def test_a_forged_token_over_http_is_401(application: Any) -> None:
    status, body = await http(application, b'{"query": "{ rooms { name } }"}',
                              [(b"authorization", b"Bearer forged")])
    assert status == 401
    assert b"token" in body


async def test_rooms_lists_the_users_rooms(application: Any) -> None:
    assert (await graphql(application, "{ rooms { name } }"))["data"]["rooms"] == []
    alice = await graphql(application, "{ rooms { name } }", token=await token_for("alice"))
    assert [r["name"] for r in alice["data"]["rooms"]] == ["general", "secret"]


async def test_graphiql_is_served_with_bundled_assets(application: Any) -> None:
    scope_headers = [(b"accept", b"text/html")]
    status, body = await http(application, b"", scope_headers, method="GET")
    assert status == 200
    page = body.decode()
    assert "/graphql/static/graphiql.js" in page
    assert "unpkg" not in page
    assert "jsdelivr" not in page
    for asset in ("graphiql.js", "graphiql.css"):
        scope = {"type": "http", "method": "GET", "path": f"/graphql/static/{asset}",
                 "raw_path": b"", "query_string": b"", "headers": [(b"host", b"testserver")],
                 "client": ("127.0.0.1", 1), "server": ("testserver", 80), "scheme": "http"}
        comm = ApplicationCommunicator(application, scope)
        await comm.send_input({"type": "http.request", "body": b""})
        assert (await comm.receive_output(5))["status"] == 200
        assert len((await comm.receive_output(5))["body"]) > 10_000


async def test_frames_wait_in_order_behind_a_full_socket_and_no_task_stays() -> None:
    """Frames are written at once while the socket keeps up; when a write has to wait
    (the client's buffer is full) the rest queue behind it, in order, and once drained
    the socket holds no task. A completed operation's queued frames are dropped."""
    import asyncio

    from gqlsync.transport.websocket import _Writer

    full = asyncio.Event()
    full.set()
    drained = asyncio.Event()
    written: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        if not full.is_set():
            await drained.wait()
        written.append(message["text"])

    writer = _Writer(send)
    unsent = []

    def frame(text: str, done: bool = False) -> None:
        unsent.append(text)
        writer.enqueue(text, lambda: done, lambda: unsent.remove(text))

    frame("1")
    assert written == ["1"]
    assert writer._task is None  # written from the caller's own loop
    full.clear()
    frame("2")
    frame("3")
    frame("cancelled", done=True)
    frame("4")
    await asyncio.sleep(0.01)
    assert written == ["1"]
    assert unsent == ["2", "3", "cancelled", "4"]
    drained.set()
    full.set()
    await asyncio.sleep(0.01)
    assert written == ["1", "2", "3", "4"]
    assert unsent == []
    assert writer._task is None

    full.clear()
    drained.clear()
    frame("5")
    frame("6")
    writer.close()  # the socket went away: what waits is dropped, nothing leaks
    await asyncio.sleep(0.01)
    assert unsent == []
    assert written == ["1", "2", "3", "4"]


async def test_ping_is_answered_with_pong(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        await client.send({"type": "ping"})
        assert (await client.receive())["type"] == "pong"
        await client.send({"type": "pong"})  # unsolicited pongs are allowed, and ignored
        sub = await client.subscribe(BOOK_CHANGED)
        await settle()
        await Book.objects.acreate(title="After ping",
                                   author=await Author.objects.aget(email="lee@child.com"))
        assert (await sub.next())["data"]["bookChanged"]["op"] == "CREATED"


async def test_a_second_connection_init_closes_with_4429(application: Any) -> None:
    from gqlsync.transport.websocket import CLOSE_TOO_MANY_INITS

    async with GraphQLWSClient(application) as client:
        await client.send({"type": "connection_init"})
        with pytest.raises(ClosedError) as closed:
            await client.receive()
        assert closed.value.code == CLOSE_TOO_MANY_INITS


async def test_no_connection_init_in_time_closes_with_4408(settings: Any) -> None:
    from gqlsync.transport.websocket import CLOSE_INIT_TIMEOUT
    from schema_examples.schema import schema

    settings.GQLSYNC = {"CONNECTION_INIT_TIMEOUT": 0.2}
    client = GraphQLWSClient(gqlsync.asgi.application(schema))
    await client.communicator.connect()
    with pytest.raises(ClosedError) as closed:
        await client.receive(timeout=3)
    assert closed.value.code == CLOSE_INIT_TIMEOUT


async def test_a_binary_frame_closes_with_4400(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe(BOOK_CHANGED)
        await settle()
        assert get_hub().subscription_count() == 1
        await client.communicator.send_input({"type": "websocket.receive", "bytes": b"{}"})
        with pytest.raises(ClosedError) as closed:
            await client.receive()
        assert closed.value.code == CLOSE_BAD_REQUEST
        await client.communicator.disconnect()
        await settle()
        assert get_hub().subscription_count() == 0
        del sub


async def test_an_unknown_subprotocol_is_closed_with_4406(application: Any) -> None:
    from gqlsync.testing import _WebSocket

    socket = _WebSocket(application, "/graphql/", subprotocols=["mqtt"], headers=[])
    connected, _ = await socket.connect()
    assert connected  # accepted, then closed: Strawberry's way
    message = await socket.next_output(3)
    assert message["type"] == "websocket.close"
    assert message["code"] == 4406
    await socket.disconnect()


async def test_a_server_shutdown_ends_every_open_subscription(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        subs = [await client.subscribe(BOOK_CHANGED) for _ in range(3)]
        await settle()
        await get_hub().close()
        for sub in subs:
            ended = await sub.message()
            assert ended["type"] == "next"
            assert "shutting down" in str(ended["payload"]["errors"])
            assert (await sub.message())["type"] == "complete"
