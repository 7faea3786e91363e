"""(a) gqlsync: ``uvicorn bench.app.asgi_gqlsync:application``."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.app.settings")
django.setup()

import strawberry  # noqa: E402

import gqlsync  # noqa: E402
import gqlsync.asgi  # noqa: E402
from bench.app.rules import in_room  # noqa: E402
from bench.app.types import ItemType, ScopedItemType  # noqa: E402


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Subscription:
    item_changed = gqlsync.subscription(ItemType)
    # the scoped scenarios: members of the room only, each user their own scope
    item_changed_in = gqlsync.subscription(ScopedItemType, where=in_room)


schema = strawberry.Schema(query=Query, subscription=Subscription)
application = gqlsync.asgi.application(schema, stats=True)
