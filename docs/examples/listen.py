# bookstore/schema.py: hand-written subscriptions on top of gqlsync.listen()
from collections.abc import AsyncGenerator

import strawberry
import strawberry_django
from django.db.models import Q
from strawberry.types import Info

import gqlsync
from schema_examples.bookstore.types import BookType

# The same BookEvent type that gqlsync.subscription(BookType) yields.
BookEvent = gqlsync.event_type(BookType)


@strawberry.type
class Query:
    books: list[BookType] = strawberry_django.field()


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def books_matching(
        self, info: Info, text: str
    ) -> AsyncGenerator[BookEvent, None]:  # type: ignore[valid-type]
        """Changes to books whose title contains ``text`` (any case)."""
        async for change in gqlsync.listen(info, BookType, where=Q(title__icontains=text)):
            yield change  # a gqlsync.Change resolves as BookEvent

    @strawberry.subscription
    async def book_log(self, info: Info) -> AsyncGenerator[str, None]:
        """One line of text per change: build any value you like from a Change."""
        async for change in gqlsync.listen(info, BookType):
            fields = ", ".join(change.changed) or "-"
            yield f"{change.op.value} book {change.pk} '{change.node.title}' ({fields})"


schema = strawberry.Schema(query=Query, subscription=Subscription)
application = gqlsync.asgi.application(schema)
