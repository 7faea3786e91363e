"""Exact previous state: what a change is judged against is the committed row.

An instance's memory of its own row goes wrong in ordinary code: a save inside a
transaction that rolls back, ``refresh_from_db()``, ``QuerySet.update()``, ``F()``
expressions, values set and never saved. Events are built from what the database holds
before each write, so ``changed``, ``before`` and every ``DELETED`` node only ever carry
committed values. (Issue "A subscriber's copy never drifts", item 2.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat

import gqlsync
from gqlsync.events import Event, Op
from gqlsync.testing import GraphQLWSClient, capture_events
from schema_examples.bookstore.models import Author, Book
from schema_examples.chat.models import Message, Room
from tests.permission_schema import application as perm_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]


@pytest.fixture
def events() -> Iterator[list[Event]]:
    with capture_events() as seen:
        yield seen


def _book() -> Book:
    author = Author.objects.get(email="lee@child.com")
    return Book.objects.create(title="Killing Floor", author=author)


def test_a_rolled_back_save_then_refresh_is_not_the_previous_state(events: list[Event]) -> None:
    book = _book()
    with pytest.raises(RuntimeError), transaction.atomic():
        book.title = "NEVER"
        book.save()
        raise RuntimeError("roll back")
    book.refresh_from_db()
    book.author = Author.objects.get(email="janet@evanovich.com")
    book.save()
    update = events[-1]
    assert update.op is Op.UPDATED
    assert update.changed == ("author",)  # the title did not change: it was never saved
    assert "title" not in (update.before or {})
    assert update.before == {"author_id": Author.objects.get(email="lee@child.com").pk}


def test_a_save_after_a_rolled_back_savepoint_is_judged_on_the_committed_row(
    events: list[Event],
) -> None:
    book = _book()
    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            book.title = "NEVER"
            book.save()
            raise RuntimeError("roll back the savepoint")
        book.title = "Die Trying"
        book.save()
    assert events[-1].changed == ("title",)
    assert events[-1].before == {"title": "Killing Floor"}


def test_a_stale_instance_after_a_queryset_update(events: list[Event]) -> None:
    book = _book()
    stale = Book.objects.get(pk=book.pk)
    Book.objects.filter(pk=book.pk).update(title="Tripwire")
    stale.title = "Persuader"
    stale.save()
    assert [(e.op, e.changed, e.before) for e in events[-2:]] == [
        (Op.UPDATED, ("title",), {"title": "Killing Floor"}),
        (Op.UPDATED, ("title",), {"title": "Tripwire"}),  # what was committed, not memory
    ]


def test_an_f_expression_is_a_change_with_its_committed_previous_value(
    events: list[Event],
) -> None:
    book = _book()
    book.title = Concat(F("title"), Value("!"))  # type: ignore[assignment]
    book.save()
    assert events[-1].changed == ("title",)
    assert events[-1].before == {"title": "Killing Floor"}
    book.refresh_from_db()
    assert book.title == "Killing Floor!"


def test_a_save_of_unchanged_values_after_an_update_says_what_the_database_changed(
    events: list[Event],
) -> None:
    """Memory said "title changed from X"; the database says it already was X."""
    book = _book()
    Book.objects.filter(pk=book.pk).update(title="Tripwire")
    book.title = "Tripwire"
    book.save()
    assert events[-1].changed == ()  # nothing changed: "unknown", not a false "before"
    assert events[-1].before is None


def test_a_dirty_instance_deleted_sends_its_committed_last_state(events: list[Event]) -> None:
    book = _book()
    book.title = "NEVER SAVED"
    book.delete()
    assert events[-1].op is Op.DELETED
    assert events[-1].before is not None
    assert events[-1].before["title"] == "Killing Floor"


def test_updated_then_deleted_in_one_transaction_is_the_committed_last_state(
    events: list[Event],
) -> None:
    book = _book()
    janet = Author.objects.get(email="janet@evanovich.com")
    with transaction.atomic():
        book.title, book.author = "Draft", janet
        book.save()
        book.delete()
    deleted = events[-1]
    assert deleted.op is Op.DELETED
    assert deleted.before is not None
    assert deleted.before["title"] == "Killing Floor"
    lee = Author.objects.get(email="lee@child.com")
    assert deleted.before["author_id"] == lee.pk
    # the travelling snapshot of the related row is not janet's any more
    assert deleted.before.get("author", {}).get("email") in (None, "lee@child.com")


def test_a_tracked_bulk_delete_reads_each_row_once(events: list[Event]) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    author = Author.objects.get(email="lee@child.com")
    Book.objects.bulk_create([Book(title=f"b{i}", author=author) for i in range(20)])
    with CaptureQueriesContext(connection) as queries:
        Book.objects.filter(title__startswith="b").delete()
    deleted = [e for e in events if e.op is Op.DELETED]
    assert len(deleted) == 20
    assert {e.before["title"] for e in deleted if e.before} == {f"b{i}" for i in range(20)}
    reads = [q["sql"] for q in queries.captured_queries
             if q["sql"].startswith('SELECT "bookstore_book"')]
    assert len(reads) == 1  # the collector's: no second read per row


async def test_a_value_that_was_never_committed_never_reaches_a_subscriber() -> None:
    """The issue's case: bob is in ``general``, not in ``secret``."""
    users = get_user_model()
    alice, bob = await users.objects.aget(username="alice"), await users.objects.aget(
        username="bob")
    general = await Room.objects.aget(name="general")
    secret = await Room.objects.aget(name="secret")
    message = await Message.objects.acreate(room=general, author=alice, text="hello")
    client = GraphQLWSClient(
        perm_app, payload={"authorization": f"Bearer {gqlsync.make_token(bob)}"})
    await client.connect()
    sub = await client.subscribe(
        "subscription { messageChanged { op node { text room { name } } } }")

    def rolled_back_then_moved() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            message.text = "NEVER"
            message.save()
            raise RuntimeError("roll back")
        message.refresh_from_db()
        message.room = secret
        message.save()

    await sync_to_async(rolled_back_then_moved)()
    removed: dict[str, Any] = (await sub.next())["data"]["messageChanged"]
    assert removed == {"op": "DELETED", "node": {"text": "hello", "room": {"name": "general"}}}
    await client.communicator.disconnect()
