"""(a) gqlsync: ``uvicorn bench.app.asgi_gqlsync:application``."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.app.settings")
django.setup()

import strawberry  # noqa: E402

import gqlsync  # noqa: E402
import gqlsync.asgi  # noqa: E402
from bench.app.types import ItemType  # noqa: E402


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Subscription:
    item_changed = gqlsync.subscription(ItemType)


schema = strawberry.Schema(query=Query, subscription=Subscription)
application = gqlsync.asgi.application(schema, stats=True)
