"""A schema for the permission tests: every message a user may see, as query and stream."""

from collections.abc import AsyncGenerator
from typing import Any

import strawberry
import strawberry_django
from django.db.models import Q
from strawberry import auto
from strawberry_django.optimizer import DjangoOptimizerExtension
from strawberry_django.permissions import IsStaff

import gqlsync
import gqlsync.asgi
from schema_examples.bookstore.models import Author, Book
from schema_examples.bookstore.types import BookType
from schema_examples.chat.types import MessageType


@strawberry_django.type(Author, name="StaffAuthor")
class StaffAuthorType:
    name: auto
    # field-level rule: strawberry-django's own extension, resolved per subscriber scope
    email: str | None = strawberry_django.field(extensions=[IsStaff(fail_silently=True)])


@strawberry.type
class Query:
    # where a messages subscription started now resumes from (selected before the rows)
    messages_cursor: str = gqlsync.cursor(MessageType)
    # MessageType is protected by the demo's members-only rule
    messages: list[MessageType] = strawberry_django.field()


@strawberry.type
class Subscription:
    message_changed = gqlsync.subscription(MessageType)
    # books for holders of a model permission (strawberry-django's HasPerm semantics)
    book_changed = gqlsync.subscription(
        BookType, permission=gqlsync.DjangoPerms("bookstore.view_book")
    )
    # default scope (the user): field-level rules differ per user, so nothing is shared
    author_changed = gqlsync.subscription(StaffAuthorType, permission=gqlsync.Permission())

    @strawberry.subscription
    async def room_messages(
        self, info: strawberry.Info, room: str, after: str | None = None,
    ) -> AsyncGenerator[gqlsync.event_type(MessageType), None]:  # type: ignore[misc]
        """A hand-written subscription: a filter (``where``) on top of the permission."""
        async for change in gqlsync.listen(info, MessageType, where=Q(room__name=room),
                                           after=after):
            yield change


schema = strawberry.Schema(
    query=Query, subscription=Subscription, extensions=[DjangoOptimizerExtension]
)
application = gqlsync.asgi.application(schema)


@strawberry_django.type(Book, name="PublishedBook")
class PublishedBookType:
    """Its own get_queryset hides drafts, the way strawberry-django teaches."""

    title: auto

    @classmethod
    def get_queryset(cls, queryset: Any, info: Any, **kwargs: Any) -> Any:
        # reads the database, as such methods often do: gqlsync calls it off the loop
        hidden = list(Author.objects.filter(email__endswith="@hidden.example")
                      .values_list("pk", flat=True))
        return queryset.exclude(title__startswith="Draft").exclude(author__in=hidden)


@strawberry.type
class PublishedQuery:
    books: list[PublishedBookType] = strawberry_django.field()


@strawberry.type
class PublishedSubscription:
    book_changed = gqlsync.subscription(PublishedBookType)


published_application = gqlsync.asgi.application(
    strawberry.Schema(query=PublishedQuery, subscription=PublishedSubscription)
)
