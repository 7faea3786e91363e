"""The demo against the real JavaScript clients users have.

Each subscription test runs once per client library (``tests/e2e/js``):

- ``graphql-ws``: the reference ``graphql-transport-ws`` client;
- ``apollo``: Apollo Client (core) with ``GraphQLWsLink``;
- ``urql``: urql's core client with ``subscriptionExchange`` over graphql-ws;
- ``legacy``: ``subscriptions-transport-ws``, the legacy ``graphql-ws`` protocol.

Every operation is the shared contract's document, verbatim. The pattern is always the
same: start the clients, ``wait_subscriptions`` until the server has them, then change
data over HTTP from Python and read what each client printed (every wait is bounded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import (
    CLIENTS,
    NodeClient,
    Server,
    contract_operation,
    node_available,
    wait_subscriptions_exactly,
)

pytestmark = pytest.mark.e2e

StartClient = Callable[..., NodeClient]


def mutate(server: Server, operation: str, token: str | None = None, **variables: Any) -> Any:
    """Run the contract's mutation ``operation`` over HTTP; its single field's data."""
    result = server.graphql(contract_operation(operation), variables, token=token)
    assert not result.get("errors"), result
    (data,) = result["data"].values()
    return data


def create_book(server: Server, title: str, author_email: str) -> dict[str, Any]:
    book: dict[str, Any] = mutate(server, "CreateBook", title=title, authorEmail=author_email)
    return book


# ------------------------------------------------------------------------- bookstore


@pytest.mark.parametrize("client", CLIENTS)
def test_book_changed_created_updated_deleted(
    client: str, demo_server: Server, node_client: StartClient
) -> None:
    node_available()
    subscriber = node_client(client, demo_server.ws_url, contract_operation("BookChanged"))
    demo_server.wait_subscriptions(1)

    book = create_book(demo_server, "The Visitor", "lee@child.com")
    mutate(demo_server, "UpdateBook", id=book["id"], title="Running Blind")
    mutate(demo_server, "DeleteBook", id=book["id"])

    created, updated, deleted = (r["bookChanged"] for r in subscriber.results(3))
    last_state = {"id": book["id"], "title": "Running Blind",
                  "author": {"email": "lee@child.com"}}
    assert [created["op"], updated["op"], deleted["op"]] == ["CREATED", "UPDATED", "DELETED"]
    assert created["id"] == updated["id"] == deleted["id"] == book["id"]
    assert created["node"] == {**last_state, "title": "The Visitor"}
    assert updated["node"] == last_state
    assert deleted["node"] == last_state  # a deleted row's last known state
    cursors = [created["cursor"], updated["cursor"], deleted["cursor"]]
    assert all(isinstance(c, str) and c for c in cursors), cursors
    assert len(set(cursors)) == 3, cursors


@pytest.mark.parametrize("client", CLIENTS)
def test_books_by_author_email_only_sees_that_author(
    client: str, demo_server: Server, node_client: StartClient
) -> None:
    node_available()
    subscriber = node_client(
        client, demo_server.ws_url, contract_operation("BooksByAuthorEmail"),
        variables={"email": "lee@child.com"},
    )
    demo_server.wait_subscriptions(1)

    create_book(demo_server, "Hot Six", "janet@evanovich.com")  # not lee's: nothing
    lee = create_book(demo_server, "Tripwire", "lee@child.com")
    mutate(demo_server, "DeleteBook", id=lee["id"])

    # events arrive in commit order, so janet's book would have come first
    created, deleted = (r["bookChanged"] for r in subscriber.results(2))
    node = {"id": lee["id"], "title": "Tripwire", "author": {"email": "lee@child.com"}}
    assert (created["op"], created["id"], created["node"]) == ("CREATED", lee["id"], node)
    assert (deleted["op"], deleted["id"], deleted["node"]) == ("DELETED", lee["id"], node)
    assert subscriber.pending() == []


# ------------------------------------------------------------------------- chat


@pytest.mark.parametrize("client", CLIENTS)
def test_room_messages_reach_members_only(
    client: str, demo_server: Server, node_client: StartClient
) -> None:
    node_available()
    alice, bob = demo_server.token("alice"), demo_server.token("bob")
    room_messages = contract_operation("RoomMessages")

    def subscribe(room: str, token: str | None) -> NodeClient:
        return node_client(client, demo_server.ws_url, room_messages,
                           variables={"room": room}, token=token)

    alice_general = subscribe("general", alice)
    alice_secret = subscribe("secret", alice)
    bob_secret = subscribe("secret", bob)
    anonymous_general = subscribe("general", None)

    # a non-member and an anonymous user get a GraphQL error, and no subscription
    assert bob_secret.error()[0]["message"]
    assert anonymous_general.error()[0]["message"]
    demo_server.wait_subscriptions(2)  # alice's two

    sent = mutate(demo_server, "SendMessage", token=bob, room="general", text="hi alice")
    assert sent["author"] == {"username": "bob"}
    (general,) = alice_general.results(1)
    assert general["messageChanged"]["op"] == "CREATED"
    assert general["messageChanged"]["id"] == sent["id"]
    assert general["messageChanged"]["node"] == {
        "id": sent["id"], "text": "hi alice", "author": {"username": "bob"},
    }

    mutate(demo_server, "SendMessage", token=alice, room="secret", text="for alice only")
    (secret,) = alice_secret.results(1)  # delivered: bob's would have come by now
    assert secret["messageChanged"]["node"]["text"] == "for alice only"

    for client_ in (alice_general, alice_secret, bob_secret, anonymous_general):
        client_.pending()
    assert [line["event"] for line in alice_general.received()] == ["next"]
    assert [line["event"] for line in alice_secret.received()] == ["next"]
    assert [line["event"] for line in bob_secret.received()] == ["error"]
    assert [line["event"] for line in anonymous_general.received()] == ["error"]


def test_sending_to_a_room_needs_membership(demo_server: Server) -> None:
    bob = demo_server.token("bob")
    result = demo_server.graphql(contract_operation("SendMessage"),
                                 {"room": "secret", "text": "let me in"}, token=bob)
    assert result["errors"]
    assert result.get("data") is None


# ------------------------------------------------------------------------- queries


def test_contract_queries_see_the_seed_data(demo_server: Server) -> None:
    books = demo_server.graphql(contract_operation("Books"))
    assert not books.get("errors"), books
    assert {"title": "Killing Floor", "author": {"name": "Lee Child", "email": "lee@child.com"}} \
        in [{k: v for k, v in b.items() if k != "id"} for b in books["data"]["books"]]
    emails = {b["author"]["email"] for b in books["data"]["books"]}
    assert emails == {"janet@evanovich.com", "lee@child.com"}

    def login(username: str, password: str) -> dict[str, Any]:
        return demo_server.graphql(contract_operation("Login"),
                                   {"username": username, "password": password})

    def rooms(token: str | None) -> list[str]:
        result = demo_server.graphql(contract_operation("Rooms"), token=token)
        assert not result.get("errors"), result
        return sorted(room["name"] for room in result["data"]["rooms"])

    tokens = {}
    for user in ("alice", "bob"):
        result = login(user, f"{user}-pass")
        assert not result.get("errors"), result
        tokens[user] = result["data"]["login"]["token"]
        assert isinstance(tokens[user], str)
        assert tokens[user]
    assert rooms(tokens["alice"]) == ["general", "secret"]
    assert rooms(tokens["bob"]) == ["general"]
    assert rooms(None) == []
    assert login("alice", "wrong")["errors"]


# ------------------------------------------------------------------------- connections


def test_forged_token_closes_the_socket_with_4403(
    demo_server: Server, node_client: StartClient
) -> None:
    node_available()
    intruder = node_client("graphql-ws", demo_server.ws_url, contract_operation("BookChanged"),
                           token="forged.token.value")
    closed = intruder.wait_for("closed")
    assert closed["code"] == 4403
    intruder.pending()
    assert not [line for line in intruder.lines if line["event"] == "next"]
    assert demo_server.stats()["subscriptions"] == 0


def test_forged_token_legacy_protocol_gets_connection_error(
    demo_server: Server, node_client: StartClient
) -> None:
    node_available()
    intruder = node_client("legacy", demo_server.ws_url, contract_operation("BookChanged"),
                           token="forged.token.value")
    errors = intruder.error()  # the legacy protocol's "connection_error"
    assert errors[0]["message"]
    intruder.wait_for("closed")
    assert not [line for line in intruder.lines if line["event"] == "next"]
    assert demo_server.stats()["subscriptions"] == 0


def test_forged_token_legacy_protocol_leaves_no_server_error(
    demo_server: Server, node_client: StartClient
) -> None:
    """A refused legacy client is routine: the server must not crash on it.

    subscriptions-transport-ws sends ``start`` right behind ``connection_init``. The
    server answers the init with ``connection_error`` and closes; handling the queued
    ``start`` must not then close the socket a second time ("Exception in ASGI
    application: Unexpected ASGI message 'websocket.close', after sending
    'websocket.close'").
    """
    node_available()
    intruders = [  # a few, as the second close depends on timing
        node_client("legacy", demo_server.ws_url, contract_operation("BookChanged"),
                    token="forged.token.value")
        for _ in range(3)
    ]
    for intruder in intruders:
        intruder.wait_for("closed")
    deadline = time.monotonic() + 1  # the server handles the queued "start" after closing
    while time.monotonic() < deadline:
        log = demo_server.log.read_text()
        errors = [line for line in log.splitlines() if line and not line.startswith(" ")]
        assert "Exception in ASGI application" not in log, "\n".join(errors)
        time.sleep(0.1)


def test_completing_one_subscription_keeps_the_other_on_the_same_socket(
    demo_server: Server, node_client: StartClient
) -> None:
    node_available()
    # graphql-ws-two.mjs: "first" and "second" share one connection; "first" is
    # disposed (a "complete" to the server) as soon as it gets its first result
    both = node_client("graphql-ws-two", demo_server.ws_url, contract_operation("BookChanged"))
    demo_server.wait_subscriptions(2)

    one = create_book(demo_server, "Echo Burning", "lee@child.com")
    assert both.wait_for("disposed")["label"] == "first"
    wait_subscriptions_exactly(demo_server, 1)
    two = create_book(demo_server, "Without Fail", "lee@child.com")

    nexts = both.collect("next", 3)  # first gets one, second gets both
    assert not [line for line in both.pending() if line["event"] == "next"]
    by_label = {
        label: [line["data"]["bookChanged"]["id"] for line in nexts if line["label"] == label]
        for label in ("first", "second")
    }
    assert by_label == {"first": [one["id"]], "second": [one["id"], two["id"]]}
    assert {line["connections"] for line in both.lines} == {1}  # one socket all along
    assert not [line for line in both.lines if line["event"] in ("closed", "error")]
