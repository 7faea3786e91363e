# tests/test_resume.py: a client that reconnects resumes from its last cursor
import pytest

from gqlsync.testing import GraphQLWSClient, settle
from schema_examples.asgi import application
from schema_examples.bookstore.models import Author, Book

BOOKS = """subscription($after: String) {
  bookChanged(after: $after) { op id cursor node { title } } }"""


@pytest.mark.django_db(transaction=True)
async def test_a_client_that_reconnects_misses_nothing() -> None:
    janet = await Author.objects.acreate(name="Janet Evanovich", email="janet@example.com")
    async with GraphQLWSClient(application) as client:
        books = await client.subscribe(BOOKS)
        await Book.objects.acreate(title="One for the Money", author=janet)
        last = (await books.next())["data"]["bookChanged"]
        cursor = last["cursor"]  # keep the cursor of every event folded
    # the socket is gone; meanwhile, the world moves on
    await Book.objects.acreate(title="Two for the Dough", author=janet)
    await settle()
    async with GraphQLWSClient(application) as client:
        books = await client.subscribe(BOOKS, {"after": cursor})
        missed = (await books.next())["data"]["bookChanged"]
        assert (missed["op"], missed["node"]["title"]) == ("CREATED", "Two for the Dough")
        await Book.objects.acreate(title="Three to Get Deadly", author=janet)
        live = (await books.next())["data"]["bookChanged"]  # then live, as before
        assert live["node"]["title"] == "Three to Get Deadly"
