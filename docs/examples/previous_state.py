# tests/test_previous_state.py: a rolled-back save is never anybody's "before"
import pytest
from django.db import transaction

from gqlsync.events import Op
from gqlsync.testing import capture_events
from schema_examples.bookstore.models import Author, Book


@pytest.mark.django_db(transaction=True)
def test_before_is_what_was_committed() -> None:
    author = Author.objects.create(name="Lee Child", email="lee@child.com")
    book = Book.objects.create(title="Killing Floor", author=author)
    with pytest.raises(RuntimeError), transaction.atomic():
        book.title = "NEVER"
        book.save()
        raise RuntimeError("the transaction rolls back")
    book.refresh_from_db()  # the instance is right again; its memory of "NEVER" is not
    with capture_events() as events:
        book.title = "Die Trying"
        book.save()
    assert [(e.op, e.changed, e.before) for e in events] == [
        (Op.UPDATED, ("title",), {"title": "Killing Floor"}),
    ]
