"""Several server processes behind one Redis: every subscriber gets every change once.

``redis_servers`` runs two demo processes on one SQLite file with the channels-redis
layer. A write served by either process reaches the subscribers of both, exactly once,
and each process's hub receives each event once however many sockets it serves.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.conftest import NodeClient, Server, contract_operation, node_available, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

StartClient = Callable[..., NodeClient]


def create_book(server: Server, title: str) -> str:
    result = server.graphql(contract_operation("CreateBook"),
                            {"title": title, "authorEmail": "janet@evanovich.com"})
    assert not result.get("errors"), result
    book_id: str = result["data"]["createBook"]["id"]
    return book_id


def created_ids(client: NodeClient, count: int, timeout: float = 10) -> list[str]:
    """The ids of the next ``count`` BookChanged events, all of them CREATED."""
    events = [r["bookChanged"] for r in client.results(count, timeout)]
    assert {e["op"] for e in events} == {"CREATED"}, events
    return [e["id"] for e in events]


def test_a_write_on_either_server_reaches_subscribers_of_both(
    redis_servers: tuple[Server, Server], node_client: StartClient
) -> None:
    node_available()
    a, b = redis_servers
    book_changed = contract_operation("BookChanged")
    subscribers = {
        (server_name, client): node_client(client, server.ws_url, book_changed)
        for server_name, server in (("A", a), ("B", b))
        for client in ("graphql-ws", "apollo")
    }
    a.wait_subscriptions(2)
    b.wait_subscriptions(2)
    before = {"A": a.stats(), "B": b.stats()}

    on_b = create_book(b, "Hard Eight")
    on_a = create_book(a, "To the Nines")

    for where, subscriber in subscribers.items():
        assert created_ids(subscriber, 2) == [on_b, on_a], where
    for where, subscriber in subscribers.items():
        assert not [line for line in subscriber.pending() if line["event"] == "next"], where

    for name, server in (("A", a), ("B", b)):
        after = server.stats()
        assert after["events"] - before[name]["events"] == 2, (name, after)
        assert after["deliveries"] - before[name]["deliveries"] == 4, (name, after)
        assert after["errors"] == 0, (name, after)


def test_each_process_receives_an_event_once_not_once_per_subscriber(
    redis_servers: tuple[Server, Server], node_client: StartClient
) -> None:
    node_available()
    a, b = redis_servers
    book_changed = contract_operation("BookChanged")
    subscribers = [
        node_client("graphql-ws", server.ws_url, book_changed)
        for server in (a, b)
        for _ in range(5)
    ]
    a.wait_subscriptions(5)
    b.wait_subscriptions(5)
    before = {"A": a.stats(), "B": b.stats()}

    # In Redis, the model's group has one member per process (its hub's channel), not
    # one per subscriber: so a change costs one channel-layer message per process.
    prefix = server_env(a, "GQLSYNC_REDIS_PREFIX")
    assert prefix, "redis_servers sets GQLSYNC_REDIS_PREFIX"
    assert server_env(b, "GQLSYNC_REDIS_PREFIX") == prefix
    members = redis_group_members(prefix, "gqlsync.bookstore.book")
    assert len(members) == 2, members  # not 10

    book = create_book(a, "Lean Mean Thirteen")

    for subscriber in subscribers:  # all ten sockets get it...
        assert created_ids(subscriber, 1) == [book]
    for name, server in (("A", a), ("B", b)):  # ...from one received event per process
        after = server.stats()
        assert after["events"] - before[name]["events"] == 1, (name, after)
        assert after["deliveries"] - before[name]["deliveries"] == 5, (name, after)
        assert after["groups"] == 1, (name, after)  # the model group; no row groups
    for subscriber in subscribers:
        assert not [line for line in subscriber.pending(0.1) if line["event"] == "next"]


def test_a_subscriber_gets_events_promptly(
    redis_servers: tuple[Server, Server], node_client: StartClient
) -> None:
    """Latency: an event is on the subscriber's socket within a second or two.

    Every WebSocket consumer also listens on its own channel of the layer; the hub's
    channel must be received alongside those, not queued behind their blocking reads.
    """
    node_available()
    a, b = redis_servers
    subscriber = node_client("graphql-ws", a.ws_url, contract_operation("BookChanged"))
    a.wait_subscriptions(1)

    book = create_book(b, "Fearless Fourteen")

    assert created_ids(subscriber, 1, timeout=2) == [book]


def test_an_idle_subscription_outlives_the_layers_blocking_reads(
    redis_servers: tuple[Server, Server], node_client: StartClient
) -> None:
    """A quiet socket stays open: nothing happens for longer than channels-redis's 5 s
    blocking pop (and redis-py's socket timeout), then a change still arrives."""
    node_available()
    a, b = redis_servers
    subscriber = node_client("graphql-ws", a.ws_url, contract_operation("BookChanged"))
    a.wait_subscriptions(1)

    assert subscriber.pending(7) == [], "the idle socket did not stay open"

    book = create_book(b, "Finger Lickin' Fifteen")
    assert created_ids(subscriber, 1) == [book]


def redis_group_members(prefix: str, group: str) -> list[str]:
    """The channels in a channels-redis group (a sorted set ``<prefix>:group:<group>``)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=0, socket_timeout=5)
    try:
        return [m.decode() for m in client.zrange(f"{prefix}:group:{group}", 0, -1)]
    finally:
        client.close()
