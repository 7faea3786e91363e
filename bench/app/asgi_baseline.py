"""(b) Stock Strawberry + Channels, written the way Strawberry's Channels docs teach.

Every subscriber's resolver joins the ``items`` group on its socket's channel and waits
for ``item.changed`` messages; a ``post_save`` receiver sends one to the group per save
(:mod:`bench.app.signals`). Each message is then handled by every subscriber on its own:
load the row, apply the filter, execute the selection set, serialize, send.

``uvicorn bench.app.asgi_baseline:application``
"""

import os
from collections.abc import AsyncGenerator

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.app.settings")
django.setup()

import strawberry  # noqa: E402
from strawberry.channels import GraphQLProtocolTypeRouter  # noqa: E402
from strawberry.types import Info  # noqa: E402

from bench.app import signals  # noqa: E402
from bench.app.models import Item  # noqa: E402
from bench.app.stats import counters, stats_app  # noqa: E402
from bench.app.types import ItemFilter, ItemType  # noqa: E402

signals.connect("baseline")


@strawberry.type
class ItemEvent:
    op: str
    id: strawberry.ID
    node: ItemType


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def item_changed(
        self, info: Info, filters: ItemFilter | None = None
    ) -> AsyncGenerator[ItemEvent, None]:
        group = filters.group.exact if filters and filters.group else None
        ws = info.context["ws"]
        async with ws.listen_to_channel("item.changed", groups=["items"]) as messages:
            counters["subscriptions"] += 1
            try:
                async for message in messages:
                    item = await Item.objects.aget(pk=message["pk"])
                    if group is not None and item.group != group:
                        continue
                    yield ItemEvent(op=message["op"], id=strawberry.ID(str(item.pk)),
                                    node=item)  # type: ignore[arg-type]
            finally:
                counters["subscriptions"] -= 1


schema = strawberry.Schema(query=Query, subscription=Subscription)
# /graphql on both protocols; every other HTTP path (/bench/stats) goes to stats_app
application = GraphQLProtocolTypeRouter(schema, django_application=stats_app)
