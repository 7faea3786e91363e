"""(b) Stock Strawberry + Channels, written the way Strawberry's Channels docs teach.

Every subscriber's resolver joins the ``items`` group on its socket's channel and waits
for ``item.changed`` messages; a ``post_save`` receiver sends one to the group per save
(:mod:`bench.app.signals`). Each message is then handled by every subscriber on its own:
load the row, apply the filter, execute the selection set, serialize, send.

``itemChangedIn(room:)`` is the scoped scenarios' subscription written the same way: the
connection's bearer token names the user (``connection_init``), the resolver checks
membership, and each message is loaded through the user's rule
(:mod:`bench.app.rules`) before it is yielded.

``uvicorn bench.app.asgi_baseline:application``
"""

import os
from collections.abc import AsyncGenerator
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.app.settings")
django.setup()

import strawberry  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.auth.models import AnonymousUser  # noqa: E402
from django.urls import re_path  # noqa: E402
from graphql import GraphQLError  # noqa: E402
from strawberry.channels import GraphQLHTTPConsumer, GraphQLWSConsumer  # noqa: E402
from strawberry.types import Info  # noqa: E402

from bench.app import signals  # noqa: E402
from bench.app.models import Item  # noqa: E402
from bench.app.rules import is_member, members_only  # noqa: E402
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


    @strawberry.subscription
    async def item_changed_in(self, info: Info, room: int) -> AsyncGenerator[ItemEvent, None]:
        ws = info.context["ws"]
        user = ws.scope.get("user") or AnonymousUser()
        if not await sync_to_async(is_member)(user, room):
            raise GraphQLError("You are not a member of this room.")
        visible = Item.objects.filter(members_only.visible(user))
        async with ws.listen_to_channel("item.changed", groups=["items"]) as messages:
            counters["subscriptions"] += 1
            try:
                async for message in messages:
                    item = await visible.filter(pk=message["pk"]).afirst()
                    if item is None or item.group != room:
                        continue
                    yield ItemEvent(op=message["op"], id=strawberry.ID(str(item.pk)),
                                    node=item)  # type: ignore[arg-type]
            finally:
                counters["subscriptions"] -= 1


class TokenConsumer(GraphQLWSConsumer):
    """Strawberry's consumer; ``connection_init``'s bearer token sets ``scope["user"]``."""

    async def on_ws_connect(self, context: Any) -> Any:
        from gqlsync.auth import bearer, user_for_token

        token = bearer((context.get("connection_params") or {}).get("authorization"))
        if token is not None:
            self.scope["user"] = await sync_to_async(user_for_token)(token)
        return await super().on_ws_connect(context)


schema = strawberry.Schema(query=Query, subscription=Subscription)
# /graphql on both protocols (as strawberry.channels.GraphQLProtocolTypeRouter routes
# them); every other HTTP path (/bench/stats) goes to stats_app
application = ProtocolTypeRouter({
    "http": URLRouter([re_path("^graphql", GraphQLHTTPConsumer.as_asgi(schema=schema)),
                       re_path("^", stats_app)]),
    "websocket": URLRouter([re_path("^graphql", TokenConsumer.as_asgi(schema=schema))]),
})
