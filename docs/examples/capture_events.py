# tests/test_books.py
import pytest
from django.db import transaction

from gqlsync import Op
from gqlsync.testing import capture_events
from schema_examples.bookstore.models import Author, Book


@pytest.mark.django_db(transaction=True)
def test_a_transaction_publishes_its_net_effect_at_commit():
    author = Author.objects.create(name="Lee Child", email="lee@example.com")
    with capture_events() as events, transaction.atomic():
        book = Book.objects.create(title="Killing Floor", author=author)
        book.title = "Killing Floor (2nd ed.)"
        book.save()
        assert events == []  # nothing is published before the commit
    # created, then updated, in one transaction: one CREATED event
    assert [(e.model, e.pk, e.op) for e in events] == [("bookstore.book", book.pk, Op.CREATED)]


@pytest.mark.django_db(transaction=True)
def test_an_update_says_what_changed_and_what_it_was():
    author = Author.objects.create(name="Lee Child", email="lee@example.com")
    book = Book.objects.create(title="Die Trying", author=author)
    with capture_events() as events:
        book.title = "Tripwire"
        book.save()
    [event] = events
    assert event.op is Op.UPDATED
    assert event.changed == ("title",)
    assert event.before == {"title": "Die Trying"}


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_savepoint_publishes_nothing():
    author = Author.objects.create(name="Lee Child", email="lee@example.com")
    with capture_events() as events, transaction.atomic():
        Book.objects.create(title="Kept", author=author)
        try:
            with transaction.atomic():  # a savepoint
                Book.objects.create(title="Rolled back", author=author)
                raise ValueError("changed my mind")
        except ValueError:
            pass
    assert [Book.objects.get(pk=e.pk).title for e in events] == ["Kept"]
