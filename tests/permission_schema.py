"""A schema for the permission tests: every message a user may see, as query and stream."""

import strawberry
import strawberry_django
from strawberry_django.optimizer import DjangoOptimizerExtension

import gqlsync
import gqlsync.asgi
from schema_examples.bookstore.types import BookType
from schema_examples.chat.types import MessageType


@strawberry.type
class Query:
    # MessageType is protected by the demo's members-only rule
    messages: list[MessageType] = strawberry_django.field()


@strawberry.type
class Subscription:
    message_changed = gqlsync.subscription(MessageType)
    # books for holders of a model permission (strawberry-django's HasPerm semantics)
    book_changed = gqlsync.subscription(
        BookType, permission=gqlsync.DjangoPerms("bookstore.view_book")
    )


schema = strawberry.Schema(
    query=Query, subscription=Subscription, extensions=[DjangoOptimizerExtension]
)
application = gqlsync.asgi.application(schema)
