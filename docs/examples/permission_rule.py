# books/schema.py: one rule for the query, the mutation and the subscription,
# and a test (tests/test_books.py) at the end
from collections.abc import Hashable

import pytest
import strawberry
import strawberry_django
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Q
from strawberry import auto
from strawberry.types import Info

import gqlsync
import gqlsync.asgi
from gqlsync.auth import User
from gqlsync.testing import GraphQLWSClient
from schema_examples.bookstore.models import Author, Book


class PublishedOrStaff(gqlsync.Permission):
    """Signed-in readers see published books; staff also see drafts and may edit."""

    messages = {"authenticated": "Sign in to follow the books."}

    def has_operation(self, user: User) -> bool:
        return bool(user.is_authenticated)

    def visible(self, user: User) -> Q:
        if getattr(user, "is_staff", False):
            return Q()  # every row
        return ~Q(title__startswith="[draft]")

    def has_object(self, user: User, obj: models.Model, action: str = "view") -> bool:
        if action != "view" and not getattr(user, "is_staff", False):
            return False
        return super().has_object(user, obj, action)  # and the row is visible to them

    def scope(self, user: User) -> Hashable:
        # all staff see the same rows and fields, and so does everyone else
        return ("staff",) if getattr(user, "is_staff", False) else ("reader",)


@gqlsync.protect(PublishedOrStaff())
@strawberry_django.type(Book, name="Book")
class BookType:
    id: auto
    title: auto


@strawberry.type
class Query:
    books: list[BookType] = strawberry_django.field()  # filtered by visible()


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def rename_book(self, info: Info, id: strawberry.ID, title: str) -> BookType:
        # among the books the user sees, then PublishedOrStaff.has_object(..., "change")
        book = await gqlsync.get_object(info, Book, id, "change")
        book.title = title
        await book.asave(update_fields=["title"])
        return book  # type: ignore[return-value]


@strawberry.type
class Subscription:
    book_changed = gqlsync.subscription(BookType)  # permission: the one protect() set


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
application = gqlsync.asgi.application(schema)


# tests/test_books.py

BOOK_CHANGED = "subscription { bookChanged { op node { title } } }"
RENAME = "mutation($id: ID!, $t: String!) { renameBook(id: $id, title: $t) { title } }"


def client(user: User) -> GraphQLWSClient:
    token = gqlsync.make_token(user)  # type: ignore[arg-type]
    return GraphQLWSClient(application, payload={"authorization": f"Bearer {token}"})


@pytest.mark.django_db(transaction=True)
async def test_a_book_turned_draft_leaves_the_readers_view() -> None:
    reader = await get_user_model().objects.acreate(username="reader")
    editor = await get_user_model().objects.acreate(username="editor", is_staff=True)
    lee = await Author.objects.acreate(name="Lee Child", email="lee@example.com")
    async with client(reader) as r, client(editor) as e:
        seen_by_reader = await r.subscribe(BOOK_CHANGED)
        seen_by_editor = await e.subscribe(BOOK_CHANGED)
        book = await Book.objects.acreate(title="Killing Floor", author=lee)
        for sub in (seen_by_reader, seen_by_editor):
            assert (await sub.next())["data"]["bookChanged"]["op"] == "CREATED"

        variables = {"id": str(book.pk), "t": "[draft] Killing Floor II"}
        refused = await schema.execute(RENAME, variables, context_value={"user": reader})
        assert refused.errors
        assert refused.errors[0].extensions == {"code": "FORBIDDEN"}
        renamed = await schema.execute(RENAME, variables, context_value={"user": editor})
        assert renamed.errors is None

        # the editor sees the change; for the reader the book is gone, and the node
        # is the last state the reader could see
        assert (await seen_by_editor.next())["data"]["bookChanged"] == {
            "op": "UPDATED", "node": {"title": "[draft] Killing Floor II"}}
        assert (await seen_by_reader.next())["data"]["bookChanged"] == {
            "op": "DELETED", "node": {"title": "Killing Floor"}}
        # ...exactly what the reader's own query now says
        listed = await schema.execute("{ books { title } }", context_value={"user": reader})
        assert listed.data == {"books": []}
        # ...and a mutation answers for the hidden draft as for a book that never was
        hidden = await schema.execute(RENAME, variables, context_value={"user": reader})
        missing = await schema.execute(RENAME, {**variables, "id": "987654"},
                                       context_value={"user": reader})
        assert hidden.errors
        assert missing.errors
        assert [e.formatted for e in hidden.errors] == [e.formatted for e in missing.errors]
        assert missing.errors[0].message == "No such book."
        assert missing.errors[0].extensions == {"code": "NOT_FOUND"}

        await book.adelete()  # a real delete: only those who could see the row hear of it
        assert (await seen_by_editor.next())["data"]["bookChanged"]["op"] == "DELETED"
        await seen_by_reader.nothing()
