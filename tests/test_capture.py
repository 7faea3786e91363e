"""Capture on PostgreSQL: what a transaction commits is published once, per row, after commit.

These tests commit for real (``transaction=True``), because ``on_commit`` and savepoints
are what they are about.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction

import gqlsync
from gqlsync.events import Event, Op
from gqlsync.testing import capture_events
from schema_examples.bookstore.models import Author, Book
from schema_examples.chat.models import Room

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgres")]


@pytest.fixture
def author() -> Author:
    return Author.objects.create(name="Lee Child", email="lee@child.com")


@pytest.fixture
def events() -> Iterator[list[Event]]:
    with capture_events() as seen:
        yield seen


def ops(events: list[Event]) -> list[tuple[str, str, object]]:
    return [(e.model, e.op.value, e.pk) for e in events]


def test_a_save_outside_a_transaction_publishes_at_once(
    author: Author, events: list[Event]
) -> None:
    book = Book.objects.create(title="Killing Floor", author=author)
    assert ops(events) == [("bookstore.book", "CREATED", book.pk)]


def test_nothing_is_published_before_commit(author: Author, events: list[Event]) -> None:
    with transaction.atomic():
        book = Book.objects.create(title="Killing Floor", author=author)
        assert events == []
    assert ops(events) == [("bookstore.book", "CREATED", book.pk)]


def test_a_publish_that_fails_after_commit_is_logged_and_the_write_stands(
    author: Author, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The row is committed before the hook runs: a broker failure must not turn the
    caller's successful commit into an exception (Django logs robust hooks by name)."""
    from gqlsync import broker

    def unreachable(events: object) -> None:
        raise ConnectionError("the channel layer is down")

    monkeypatch.setattr(broker, "publish", unreachable)
    with caplog.at_level("ERROR"), transaction.atomic():
        Book.objects.create(title="Persuader", author=author)
    assert Book.objects.filter(title="Persuader").exists()
    assert "the channel layer is down" in caplog.text


def test_a_rolled_back_transaction_publishes_nothing(author: Author, events: list[Event]) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Book.objects.create(title="Never", author=author)
        raise RuntimeError("roll back")
    assert events == []
    assert not Book.objects.filter(title="Never").exists()


def test_a_rolled_back_savepoint_publishes_nothing_of_its_own(
    author: Author, events: list[Event]
) -> None:
    with transaction.atomic():
        kept = Book.objects.create(title="Kept", author=author)
        with pytest.raises(RuntimeError), transaction.atomic():
            Book.objects.create(title="Rolled back", author=author)
            kept.title = "Kept, renamed inside the savepoint"
            kept.save()
            raise RuntimeError("roll back the savepoint")
        after = Book.objects.create(title="After the savepoint", author=author)
    assert ops(events) == [("bookstore.book", "CREATED", kept.pk),
                           ("bookstore.book", "CREATED", after.pk)]
    assert Book.objects.get(pk=kept.pk).title == "Kept"


def test_nested_savepoints_roll_back_independently(author: Author, events: list[Event]) -> None:
    book = Book.objects.create(title="Start", author=author)
    events.clear()
    with transaction.atomic(), transaction.atomic():
        book.title = "Outer savepoint"
        book.save()
        with pytest.raises(RuntimeError), transaction.atomic():
            Book.objects.create(title="Inner", author=author)
            raise RuntimeError
    assert ops(events) == [("bookstore.book", "UPDATED", book.pk)]
    assert events[0].changed == ("title",)
    assert events[0].before == {"title": "Start"}


def test_several_saves_of_one_row_make_one_event(author: Author, events: list[Event]) -> None:
    book = Book.objects.create(title="v1", author=author)
    other = Author.objects.create(name="Janet Evanovich", email="janet@evanovich.com")
    events.clear()
    with transaction.atomic():
        for title in ("v2", "v3", "v4"):
            book.title = title
            book.save()
        book.author = other
        book.save()
    assert len(events) == 1
    (event,) = events
    assert (event.op, event.pk) == (Op.UPDATED, book.pk)
    assert set(event.changed) == {"title", "author"}
    assert event.before == {"title": "v1", "author_id": author.pk}


def test_a_row_created_and_deleted_in_one_transaction_publishes_nothing(
    author: Author, events: list[Event]
) -> None:
    with transaction.atomic():
        Book.objects.create(title="Ephemeral", author=author).delete()
    assert events == []


def test_a_delete_carries_the_rows_last_state(author: Author, events: list[Event]) -> None:
    book = Book.objects.create(title="Gone", author=author)
    pk = book.pk
    events.clear()
    book.delete()
    assert ops(events) == [("bookstore.book", "DELETED", pk)]
    assert events[0].before == {
        "id": pk, "title": "Gone", "author_id": author.pk,
        # the registered row it points to travels too: it may be deleted in a cascade
        "author": {"id": author.pk, "name": "Lee Child", "email": "lee@child.com"},
    }


def test_events_of_one_transaction_keep_the_order_rows_were_last_touched(
    author: Author, events: list[Event]
) -> None:
    with transaction.atomic():
        first = Book.objects.create(title="1", author=author)
        second = Book.objects.create(title="2", author=author)
    assert [e.pk for e in events] == [first.pk, second.pk]


def test_queryset_update_publishes_each_row(author: Author, events: list[Event]) -> None:
    books = [Book.objects.create(title=f"b{i}", author=author) for i in range(3)]
    events.clear()
    count = Book.objects.filter(title__in=["b0", "b2"]).update(title="renamed")
    assert count == 2
    assert sorted(ops(events)) == sorted([("bookstore.book", "UPDATED", books[0].pk),
                                          ("bookstore.book", "UPDATED", books[2].pk)])
    assert {e.changed for e in events} == {("title",)}
    assert sorted(e.before["title"] for e in events if e.before) == ["b0", "b2"]


def test_queryset_update_inside_a_rolled_back_transaction_publishes_nothing(
    author: Author, events: list[Event]
) -> None:
    Book.objects.create(title="b", author=author)
    events.clear()
    with pytest.raises(RuntimeError), transaction.atomic():
        Book.objects.update(title="x")
        raise RuntimeError
    assert events == []


def test_bulk_create_and_bulk_update_publish(author: Author, events: list[Event]) -> None:
    books = Book.objects.bulk_create([Book(title=f"t{i}", author=author) for i in range(3)])
    assert [e.op for e in events] == [Op.CREATED] * 3
    assert [e.pk for e in events] == [b.pk for b in books]
    events.clear()
    for book in books:
        book.title = book.title.upper()
    Book.objects.bulk_update(books, ["title"])
    assert [(e.op, e.pk, e.changed) for e in events] == [
        (Op.UPDATED, b.pk, ("title",)) for b in books
    ]


def test_queryset_delete_publishes_each_row_with_its_last_state(
    author: Author, events: list[Event]
) -> None:
    books = [Book.objects.create(title=f"d{i}", author=author) for i in range(2)]
    events.clear()
    Book.objects.filter(author=author).delete()
    assert sorted(ops(events)) == sorted(("bookstore.book", "DELETED", b.pk) for b in books)
    assert sorted(e.before["title"] for e in events if e.before) == ["d0", "d1"]


def test_a_cascade_publishes_the_children(author: Author, events: list[Event]) -> None:
    book = Book.objects.create(title="child", author=author)
    author_pk = author.pk
    events.clear()
    author.delete()
    assert ("bookstore.book", "DELETED", book.pk) in ops(events)
    assert ("bookstore.author", "DELETED", author_pk) in ops(events)


def test_notify_covers_raw_sql(author: Author, events: list[Event]) -> None:
    book = Book.objects.create(title="raw", author=author)
    events.clear()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE bookstore_book SET title = %s WHERE id = %s", ["RAW", book.pk])
        gqlsync.notify(Book, pk=book.pk, changed=["title"])
        assert events == []
    assert [(e.op, e.pk, e.changed) for e in events] == [(Op.UPDATED, book.pk, ("title",))]


def test_notify_a_delete_with_the_instance_sends_its_last_state(
    author: Author, events: list[Event]
) -> None:
    book = Book.objects.create(title="raw delete", author=author)
    events.clear()
    gqlsync.notify(book, op="DELETED")
    assert events[0].op is Op.DELETED
    assert events[0].before is not None
    assert events[0].before["title"] == "raw delete"


def test_notify_refuses_an_unregistered_model() -> None:
    with pytest.raises(gqlsync.exceptions.NotRegisteredError):
        gqlsync.notify(get_user_model(), pk=1)


def test_many_to_many_changes_update_both_sides(events: list[Event]) -> None:
    user = get_user_model().objects.create(username="dora")
    room = Room.objects.create(name="lobby")
    events.clear()
    room.members.add(user)
    assert [(e.model, e.op, e.pk, e.changed) for e in events] == [
        ("chat.room", Op.UPDATED, room.pk, ("members",)),
    ]
    events.clear()
    room.members.clear()
    assert [(e.model, e.pk, e.changed) for e in events] == [("chat.room", room.pk, ("members",))]


def test_fixture_loading_is_not_a_change(author: Author, events: list[Event]) -> None:
    from django.core import serializers

    data = serializers.serialize("json", [Book(pk=999, title="fixture", author=author)])
    for obj in serializers.deserialize("json", data):
        obj.save()
    assert events == []
