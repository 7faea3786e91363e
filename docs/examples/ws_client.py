# tests/test_subscriptions.py
import pytest
from asgiref.sync import sync_to_async

from gqlsync.testing import GraphQLWSClient
from schema_examples.asgi import application
from schema_examples.bookstore.models import Author, Book

SUBSCRIPTION = "subscription { bookChanged { op id node { title author { email } } } }"


@pytest.mark.django_db(transaction=True)
async def test_a_new_book_reaches_the_subscriber():
    author = await sync_to_async(Author.objects.create)(
        name="Janet Evanovich", email="janet@example.com"
    )
    async with GraphQLWSClient(application) as client:
        subscription = await client.subscribe(SUBSCRIPTION)
        book = await sync_to_async(Book.objects.create)(title="Hot Six", author=author)

        payload = await subscription.next(timeout=5)

        assert payload["data"]["bookChanged"] == {
            "op": "CREATED",
            "id": str(book.pk),
            "node": {"title": "Hot Six", "author": {"email": "janet@example.com"}},
        }
        await subscription.nothing()  # exactly one event
