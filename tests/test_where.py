"""Subscriptions with arguments of their own: ``gqlsync.subscription(Type, where=fn)``.

The demo's ``messageChanged(room:)`` is one: a membership check, then the room's
messages, with the members-only permission on every event. It takes the generated
fields' path: no task per operation, one execution per event for every member.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import strawberry
from asgiref.sync import sync_to_async
from django.db.models import Q
from strawberry.types import Info

import gqlsync
import gqlsync.asgi
from gqlsync.hub import get_hub
from gqlsync.testing import GraphQLWSClient, settle
from schema_examples.bookstore.models import Author, Book
from schema_examples.bookstore.types import BookType
from schema_examples.chat.models import Message, Room
from tests.test_transport import token_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]

ROOM = "subscription($room: String!) { messageChanged(room: $room) { op node { text } } }"


async def _signed_in(app: Any, username: str) -> GraphQLWSClient:
    client = GraphQLWSClient(app, payload={"authorization": f"Bearer {await token_for(username)}"})
    await client.connect()
    return client


async def _post(room: str, text: str) -> None:
    target = await Room.objects.aget(name=room)
    author = await sync_to_async(lambda: target.members.first())()
    await Message.objects.acreate(room=target, author=author, text=text)


async def test_the_members_of_a_room_share_one_execution(application: Any) -> None:
    alice, bob = await _signed_in(application, "alice"), await _signed_in(application, "bob")
    general = [await alice.subscribe(ROOM, {"room": "general"}),
               await alice.subscribe(ROOM, {"room": "general"}),
               await bob.subscribe(ROOM, {"room": "general"})]
    secret = await alice.subscribe(ROOM, {"room": "secret"})
    await settle()
    hub = get_hub()
    before = hub.stats["executions"]
    await _post("general", "hello all")
    for sub in general:
        assert (await sub.next())["data"]["messageChanged"] == {
            "op": "CREATED", "node": {"text": "hello all"}}
    await secret.nothing()
    assert hub.stats["executions"] - before == 1, "alice and bob: distinct scopes, same bytes"
    await _post("secret", "alice only")
    assert (await secret.next())["data"]["messageChanged"]["node"]["text"] == "alice only"
    for sub in general:
        await sub.nothing()
    for client in (alice, bob):
        await client.communicator.disconnect()


async def test_a_room_subscription_holds_no_task_per_operation(application: Any) -> None:
    alice = await _signed_in(application, "alice")
    first = await alice.subscribe(ROOM, {"room": "general"})
    await settle()
    tasks = len(asyncio.all_tasks())
    subs = [first] + [await alice.subscribe(ROOM, {"room": "general"}, settle=0)
                      for _ in range(19)]
    for _ in range(300):
        if get_hub().subscription_count() == 20:
            break
        await asyncio.sleep(0.01)
    assert get_hub().subscription_count() == 20
    assert len(asyncio.all_tasks()) <= tasks
    await _post("general", "twenty")
    for sub in subs:
        assert (await sub.next())["data"]["messageChanged"]["node"]["text"] == "twenty"
    await alice.communicator.disconnect()


async def test_the_check_refuses_with_its_own_error(application: Any) -> None:
    bob = await _signed_in(application, "bob")
    refused = await bob.subscribe(ROOM, {"room": "secret"})
    message = await refused.message()
    assert message["type"] in ("error", "next")
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["message"] == "You are not a member of room 'secret'."
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert get_hub().subscription_count() == 0
    await bob.communicator.disconnect()


def _titled(info: Info, author_email: str, prefix: str = "") -> Q:
    """Sync, and reads the database: gqlsync calls it off the event loop."""
    author = Author.objects.get(email=author_email)
    return Q(author=author, title__startswith=prefix)


@strawberry.type
class _Query:
    ok: bool = True


@strawberry.type
class _Subscription:
    books_by = gqlsync.subscription(BookType, where=_titled)


by_author = gqlsync.asgi.application(strawberry.Schema(query=_Query, subscription=_Subscription))


async def test_a_sync_where_function_reads_the_database_off_the_loop() -> None:
    query = """subscription($email: String!, $prefix: String!) {
      booksBy(authorEmail: $email, prefix: $prefix) { op node { title } } }"""
    async with GraphQLWSClient(by_author) as client:
        sub = await client.subscribe(query, {"email": "lee@child.com", "prefix": "The "})
        await settle()
        lee = await Author.objects.aget(email="lee@child.com")
        janet = await Author.objects.aget(email="janet@evanovich.com")
        await Book.objects.acreate(title="Another Lee", author=lee)
        await Book.objects.acreate(title="The Janet", author=janet)
        await Book.objects.acreate(title="The Lee", author=lee)
        assert (await sub.next())["data"]["booksBy"]["node"]["title"] == "The Lee"
        await sub.nothing()


@pytest.mark.parametrize(("where", "error"), [
    (lambda: Q(), "first parameter"),
    (lambda info, room: Q(), "needs a type annotation"),
    (lambda info, *rooms: Q(), "by name"),
    (Q(pk=1), "takes a function"),
])
def test_a_where_function_is_checked_where_it_is_declared(
    where: Callable[..., Any], error: str
) -> None:
    with pytest.raises(TypeError, match=error):
        gqlsync.subscription(BookType, where=where)


def test_a_where_argument_cannot_shadow_a_generated_one() -> None:
    def after(info: Info, after: str) -> Q:
        return Q()

    with pytest.raises(TypeError, match="'after' is an argument every"):
        gqlsync.subscription(BookType, where=after)


def _optional(info: Info, author_email: str, prefix: str | None) -> Q:
    author = Author.objects.get(email=author_email)
    return Q(author=author) & (Q(title__startswith=prefix) if prefix else Q())


@strawberry.type
class _OptionalSubscription:
    books_by = gqlsync.subscription(BookType, where=_optional)


optional_app = gqlsync.asgi.application(
    strawberry.Schema(query=_Query, subscription=_OptionalSubscription))


async def test_an_optional_argument_may_be_left_out() -> None:
    query = 'subscription { booksBy(authorEmail: "lee@child.com") { node { title } } }'
    async with GraphQLWSClient(optional_app) as client:
        sub = await client.subscribe(query)
        await settle()
        lee = await Author.objects.aget(email="lee@child.com")
        await Book.objects.acreate(title="Any title", author=lee)
        assert (await sub.next())["data"]["booksBy"]["node"]["title"] == "Any title"
