"""Shared execution: one execution per event per distinct (document, variables, scope),
and every socket still gets its own operation id."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from gqlsync.hub import get_hub
from gqlsync.testing import GraphQLWSClient, settle
from schema_examples.bookstore.models import Author, Book
from tests.test_transport import token_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]

BY_EMAIL = """subscription($email: String!) {
  bookChanged(filters: { author: { email: { exact: $email } } }) { op node { title } } }"""


async def test_identical_subscriptions_are_executed_once_per_event(application: Any) -> None:
    clients = [GraphQLWSClient(application) for _ in range(5)]
    subs = []
    for client in clients:
        await client.connect()
        subs += [await client.subscribe("subscription { bookChanged { op node { title } } }",
                                        settle=0) for _ in range(3)]
    await settle()
    hub = get_hub()
    before = hub.stats["executions"]
    author = await Author.objects.aget(email="lee@child.com")
    await Book.objects.acreate(title="Shared", author=author)
    for sub in subs:
        assert (await sub.next())["data"]["bookChanged"] == {
            "op": "CREATED", "node": {"title": "Shared"}}
    assert hub.stats["executions"] - before == 1
    for client in clients:
        await client.communicator.disconnect()


async def test_each_frame_carries_its_own_operation_id(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        first = await client.subscribe("subscription { bookChanged { op } }")
        second = await client.subscribe("subscription { bookChanged { op } }")
        author = await Author.objects.aget(email="lee@child.com")
        await Book.objects.acreate(title="Ids", author=author)
        raw = [await client.receive(), await client.receive()]
        assert sorted(m["id"] for m in raw) == sorted([first.id, second.id])
        assert all(m["type"] == "next" for m in raw)


async def test_distinct_variables_are_distinct_executions(application: Any) -> None:
    async with GraphQLWSClient(application) as client:
        lee = [await client.subscribe(BY_EMAIL, {"email": "lee@child.com"}) for _ in range(3)]
        janet = await client.subscribe(BY_EMAIL, {"email": "janet@evanovich.com"})
        await settle()
        hub = get_hub()
        before = hub.stats["executions"]
        author = await Author.objects.aget(email="lee@child.com")
        await Book.objects.acreate(title="Lee only", author=author)
        for sub in lee:
            assert (await sub.next())["data"]["bookChanged"]["node"]["title"] == "Lee only"
        await janet.nothing()
        assert hub.stats["executions"] - before == 1


async def test_users_receiving_the_same_row_share_one_execution(application: Any) -> None:
    """alice and bob are distinct scopes, but ``node { text }`` reads nothing of who is
    asking: the message both may see is executed once and sent to all three."""
    from tests.permission_schema import application as perm_app

    alice, bob = await _clients(perm_app, "alice", "bob")
    query = "subscription { messageChanged { op node { text } } }"
    subs = [await alice.subscribe(query), await alice.subscribe(query), await bob.subscribe(query)]
    await settle()
    hub = get_hub()
    before = hub.stats["executions"]
    from schema_examples.chat.models import Message, Room

    general = await Room.objects.aget(name="general")
    author = await sync_to_async(lambda: general.members.first())()
    await Message.objects.acreate(room=general, author=author, text="to both")
    for sub in subs:
        assert (await sub.next())["data"]["messageChanged"]["node"]["text"] == "to both"
    assert hub.stats["executions"] - before == 1
    for client in (alice, bob):
        await client.communicator.disconnect()


async def _clients(app: Any, *usernames: str) -> list[GraphQLWSClient]:
    clients = []
    for username in usernames:
        client = GraphQLWSClient(
            app, payload={"authorization": f"Bearer {await token_for(username)}"})
        await client.connect()
        clients.append(client)
    return clients


async def _author_changed(query: str) -> tuple[list[dict[str, Any]], int]:
    """carol (staff) and bob subscribe with ``query``; an author is created: what each
    receives, and how many executions it took."""
    from tests.permission_schema import application as perm_app

    carol, bob = await _clients(perm_app, "carol", "bob")
    subs = [await carol.subscribe(query), await bob.subscribe(query)]
    await settle()
    hub = get_hub()
    before = hub.stats["executions"]
    await Author.objects.acreate(name="New Author", email="new@author.com")
    received = [(await sub.next())["data"]["authorChanged"]["node"] for sub in subs]
    for client in (carol, bob):
        await client.communicator.disconnect()
    return received, hub.stats["executions"] - before


async def test_a_field_level_rule_is_executed_per_scope() -> None:
    """``email`` carries strawberry-django's IsStaff: its execution reads the user, so
    carol's bytes are not bob's."""
    received, executions = await _author_changed(
        "subscription { authorChanged { op node { name email } } }")
    assert received == [{"name": "New Author", "email": "new@author.com"},
                        {"name": "New Author", "email": None}]
    assert executions == 2


async def test_the_same_field_without_the_rule_is_shared() -> None:
    received, executions = await _author_changed(
        "subscription { authorChanged { op node { name } } }")
    assert received == [{"name": "New Author"}, {"name": "New Author"}]
    assert executions == 1


async def test_sharing_across_scopes_can_be_turned_off(settings: Any) -> None:
    settings.GQLSYNC = {**getattr(settings, "GQLSYNC", {}), "SHARE_ACROSS_SCOPES": False}
    received, executions = await _author_changed(
        "subscription { authorChanged { op node { name } } }")
    assert received == [{"name": "New Author"}, {"name": "New Author"}]
    assert executions == 2


async def test_generated_subscriptions_hold_no_task_per_operation(application: Any) -> None:
    """An idle generated subscription is a registration with the hub, not a running
    task: a socket with 50 of them adds no task per subscription, and all 50 deliver."""
    import asyncio

    async with GraphQLWSClient(application) as client:
        first = await client.subscribe("subscription { bookChanged { op } }")
        await settle()
        tasks = len(asyncio.all_tasks())
        subs = [first] + [await client.subscribe("subscription { bookChanged { op } }",
                                                 settle=0) for _ in range(49)]
        for _ in range(300):  # the socket's messages are handled one after another
            if get_hub().subscription_count() == 50:
                break
            await asyncio.sleep(0.01)
        assert get_hub().subscription_count() == 50
        assert len(asyncio.all_tasks()) <= tasks
        author = await Author.objects.aget(email="lee@child.com")
        await Book.objects.acreate(title="Fifty", author=author)
        for sub in subs:
            assert (await sub.next())["data"]["bookChanged"] == {"op": "CREATED"}


async def test_complete_ends_a_generated_subscription_and_frees_its_id(
    application: Any
) -> None:
    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe("subscription { bookChanged { op } }")
        await settle()
        assert get_hub().subscription_count() == 1
        await sub.complete()
        await settle()
        assert get_hub().subscription_count() == 0
        author = await Author.objects.aget(email="lee@child.com")
        await Book.objects.acreate(title="After complete", author=author)
        await sub.nothing()
        # the id may be used again, and the new operation gets the events
        await client.send({"id": sub.id, "type": "subscribe",
                           "payload": {"query": "subscription { bookChanged { op } }"}})
        await settle()
        await Book.objects.acreate(title="Again", author=author)
        assert (await sub.next())["data"]["bookChanged"] == {"op": "CREATED"}


async def test_a_duplicate_id_closes_with_4409_on_the_direct_path(application: Any) -> None:
    from gqlsync.testing import ClosedError
    from gqlsync.transport.websocket import CLOSE_SUBSCRIBER_EXISTS

    client = GraphQLWSClient(application)
    await client.connect()
    sub = await client.subscribe("subscription { bookChanged { op } }")
    await client.send({"id": sub.id, "type": "subscribe",
                       "payload": {"query": "subscription { bookChanged { op } }"}})
    with pytest.raises(ClosedError) as closed:
        await client.receive()
    assert closed.value.code == CLOSE_SUBSCRIBER_EXISTS
    await client.communicator.disconnect()  # what the client's side of the close does
    await settle()
    assert get_hub().subscription_count() == 0


async def test_bad_arguments_get_strawberrys_errors(application: Any) -> None:
    """Anything not clean (wrong variable types, bad ids) takes Strawberry's own path."""
    async with GraphQLWSClient(application) as client:
        wrong_type = await client.subscribe(BY_EMAIL, {"email": 42})
        message = await wrong_type.message()
        assert message["type"] == "error"
        assert "email" in str(message["payload"])
        missing = await client.subscribe(BY_EMAIL, {})
        assert (await missing.message())["type"] == "error"
        await settle()
        assert get_hub().subscription_count() == 0


class _Watching:
    """A schema extension with its own operation hook: it must see every operation."""

    seen: list[str] = []


def _watching_extension() -> Any:
    from strawberry.extensions import SchemaExtension

    class Watching(SchemaExtension):
        def on_operation(self) -> Any:
            _Watching.seen.append(self.execution_context.query or "")
            yield

    return Watching


async def test_a_schema_with_its_own_extension_keeps_strawberrys_path() -> None:
    """gqlsync opens generated subscriptions itself only when every schema extension is
    known to be inert; an extension with its own hooks sees the operation run, and the
    subscription still shares execution through the hub."""
    import strawberry

    import gqlsync
    import gqlsync.asgi
    from schema_examples.bookstore.types import BookType

    @strawberry.type
    class Query:
        ok: bool = True

    @strawberry.type
    class Subscription:
        book_changed = gqlsync.subscription(BookType)

    schema = strawberry.Schema(query=Query, subscription=Subscription,
                               extensions=[_watching_extension()])
    app = gqlsync.asgi.application(schema)
    _Watching.seen.clear()
    async with GraphQLWSClient(app) as client:
        sub = await client.subscribe("subscription { bookChanged { op } }")
        await settle()
        assert _Watching.seen == ["subscription { bookChanged { op } }"]
        before = get_hub().stats["executions"]
        author = await Author.objects.aget(email="lee@child.com")
        await Book.objects.acreate(title="Watched", author=author)
        assert (await sub.next())["data"]["bookChanged"] == {"op": "CREATED"}
        assert get_hub().stats["executions"] - before == 1


def test_a_watched_context_notes_every_read_and_lends_nothing_behind_its_back() -> None:
    from gqlsync.execute import WatchedContext

    real = {"user": "alice", "loaders": {}}
    for read in (lambda c: c["user"], lambda c: c.get("user"), lambda c: "user" in c,
                 lambda c: list(c), lambda c: c.setdefault("loaders", None),
                 lambda c: c.pop("user"), lambda c: {**c}, lambda c: c == {}, repr):
        context = WatchedContext(real)
        read(context)
        assert context.read, read
    context = WatchedContext(real)
    assert dict.get(context, "user") is None, "a C-level read finds nothing to leak"
    context["user"] = "bob"
    assert real["user"] == "alice", "writes stay in the trial's copy"
    assert not context.read


async def test_two_schemas_with_the_same_document_are_executed_apart() -> None:
    """One hub serves every application of the process: a document is shared only
    within its own schema (here the second masks the title)."""
    import strawberry
    import strawberry_django

    import gqlsync
    import gqlsync.asgi
    from schema_examples.bookstore.types import BookType

    @strawberry_django.type(Book, name="Book")
    class MaskedBook:
        @strawberry.field
        def title(self) -> str:
            return "(hidden)"

    @strawberry.type
    class Query:
        ok: bool = True

    @strawberry.type
    class Public:
        book_changed = gqlsync.subscription(BookType)

    @strawberry.type
    class Masked:
        book_changed = gqlsync.subscription(MaskedBook)

    apps = [gqlsync.asgi.application(strawberry.Schema(query=Query, subscription=s))
            for s in (Public, Masked)]
    clients = [GraphQLWSClient(app) for app in apps]
    subs = []
    for client in clients:
        await client.connect()
        subs.append(await client.subscribe("subscription { bookChanged { node { title } } }"))
    await settle()
    author = await Author.objects.aget(email="lee@child.com")
    await Book.objects.acreate(title="Twice", author=author)
    titles = [(await sub.next())["data"]["bookChanged"]["node"]["title"] for sub in subs]
    assert titles == ["Twice", "(hidden)"]
    for client in clients:
        await client.communicator.disconnect()
