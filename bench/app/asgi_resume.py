"""gqlsync with a list query, for ``python -m bench.resume``.

``uvicorn bench.app.asgi_resume:application``: the subscription of ``asgi_gqlsync``
(``itemChanged``, with ``after:`` to resume) plus what a client that cannot resume
refetches: ``items`` (the list, with the same filters) and ``itemsCursor`` (where a
subscription started after the query resumes from).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.app.settings_resume")
django.setup()

import strawberry  # noqa: E402
import strawberry_django  # noqa: E402

import gqlsync  # noqa: E402
import gqlsync.asgi  # noqa: E402
from bench.app.types import ItemType  # noqa: E402


@strawberry.type
class Query:
    items_cursor: str = gqlsync.cursor(ItemType)
    items: list[ItemType] = strawberry_django.field()


@strawberry.type
class Subscription:
    item_changed = gqlsync.subscription(ItemType)


schema = strawberry.Schema(query=Query, subscription=Subscription)
application = gqlsync.asgi.application(schema, stats=True)
