# tests/test_filters.py: a row that leaves a subscription's filter is DELETED for it
import pytest

from gqlsync.testing import GraphQLWSClient
from schema_examples.asgi import application
from schema_examples.bookstore.models import Author, Book

BY_AUTHOR = """subscription($email: String!) {
  bookChanged(filters: { author: { email: { exact: $email } } }) { op node { title } } }"""


@pytest.mark.django_db(transaction=True)
async def test_a_book_that_changes_author_leaves_and_enters() -> None:
    janet = await Author.objects.acreate(name="Janet Evanovich", email="janet@example.com")
    lee = await Author.objects.acreate(name="Lee Child", email="lee@example.com")
    async with GraphQLWSClient(application) as client:
        janets = await client.subscribe(BY_AUTHOR, {"email": "janet@example.com"})
        book = await Book.objects.acreate(title="One for the Money", author=janet)
        assert (await janets.next())["data"]["bookChanged"]["op"] == "CREATED"
        book.author = lee
        await book.asave()  # no longer Janet's: gone from where janets stands
        left = (await janets.next())["data"]["bookChanged"]
        assert left == {"op": "DELETED", "node": {"title": "One for the Money"}}
        book.author = janet
        await book.asave()  # back: it enters again
        assert (await janets.next())["data"]["bookChanged"]["op"] == "CREATED"
