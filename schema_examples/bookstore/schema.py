from __future__ import annotations

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from graphql import GraphQLError

import gqlsync
from schema_examples.bookstore.models import Author, Book
from schema_examples.bookstore.permissions import bookstore
from schema_examples.bookstore.types import BookType
from schema_examples.validation import validated


@strawberry.type
class Query:
    # select it before `books`, then subscribe with `bookChanged(after: <it>)`
    books_cursor: str = gqlsync.cursor(BookType)
    books: list[BookType] = strawberry_django.field()


def _create_book(title: str, author_email: str) -> Book:
    author = Author.objects.filter(email=author_email).first()
    if author is None:
        raise GraphQLError(f"No author with email {author_email!r}.")
    book = Book(title=title, author=author)
    validated(book)  # max_length and the rest: SQLite would store anything
    book.save()
    return book


def _update_book(id: str, title: str) -> Book:
    book = Book.objects.select_related("author").filter(pk=id).first()
    if book is None:
        raise GraphQLError(f"No book with id {id!r}.")
    book.title = title
    validated(book)
    book.save(update_fields=["title"])
    return book


def _delete_book(id: str) -> Book:
    book = Book.objects.filter(pk=id).first()
    if book is None:
        raise GraphQLError(f"No book with id {id!r}.")
    pk = book.pk
    book.delete()
    book.pk = pk  # the response still names the row that went away
    return book


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_book(self, title: str, author_email: str) -> BookType:
        return await sync_to_async(_create_book)(title, author_email)  # type: ignore[return-value]

    @strawberry.mutation
    async def update_book(self, id: strawberry.ID, title: str) -> BookType:
        return await sync_to_async(_update_book)(id, title)  # type: ignore[return-value]

    @strawberry.mutation
    async def delete_book(self, id: strawberry.ID) -> BookType:
        return await sync_to_async(_delete_book)(id)  # type: ignore[return-value]


@strawberry.type
class Subscription:
    book_changed = gqlsync.subscription(BookType, permission=bookstore)
