"""(c) The floor: one pre-serialized frame written to every socket, on the same stack.

uvicorn + Channels, like the other two, but no GraphQL execution: each process joins the
``floor`` group once (one channel-layer message per process per change, as gqlsync's hub
does), loads the changed row once, serializes the ``next`` frame once and writes it to
every matching socket. It speaks just enough ``graphql-transport-ws`` for the benchmark's
clients: ``connection_init`` -> ``connection_ack``, then ``subscribe`` (the ``$g`` variable
is the only filter it understands), ``complete`` and ``ping``.

``uvicorn bench.app.asgi_floor:application``
"""

import asyncio
import json
import logging
import os
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.app.settings")
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from bench.app.models import Item  # noqa: E402
from bench.app.stats import counters, stats_app  # noqa: E402

#: (socket, subscription id) -> the group its variables ask for (None: every item)
subscribers: dict[tuple["FloorConsumer", str], int | None] = {}
logger = logging.getLogger("bench.floor")
_listener: list[asyncio.Task[None]] = []


async def _listen() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("floor", channel)
    while True:
        message = await layer.receive(channel)
        try:
            await _broadcast(message)
        except Exception:
            logger.exception("floor: a change could not be broadcast")


async def _broadcast(message: dict[str, Any]) -> None:
    item = await Item.objects.aget(pk=message["pk"])
    payload = json.dumps({"data": {"itemChanged": {
        "op": message["op"], "id": str(item.pk),
        "node": {"id": str(item.pk), "title": item.title, "group": item.group,
                 "sentAt": item.sent_at},
    }}})
    frames: dict[str, str] = {}  # one frame per subscription id ("1", "2", ...)
    for (consumer, sub_id), group in list(subscribers.items()):
        if group is not None and group != item.group:
            continue
        frame = frames.get(sub_id)
        if frame is None:
            frame = frames[sub_id] = f'{{"id":"{sub_id}","type":"next","payload":{payload}}}'
        await consumer.send(text_data=frame)


class FloorConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        if not _listener:
            _listener.append(asyncio.get_running_loop().create_task(_listen()))
        self.ids: set[str] = set()
        await self.accept("graphql-transport-ws")

    async def receive(self, text_data: str | None = None, bytes_data: Any = None) -> None:
        message = json.loads(text_data or "{}")
        kind = message.get("type")
        if kind == "connection_init":
            await self.send(text_data='{"type":"connection_ack"}')
        elif kind == "ping":
            await self.send(text_data='{"type":"pong"}')
        elif kind == "subscribe":
            variables = message.get("payload", {}).get("variables") or {}
            subscribers[(self, message["id"])] = variables.get("g")
            self.ids.add(message["id"])
            counters["subscriptions"] += 1
        elif kind == "complete":
            self._forget(message.get("id"))

    def _forget(self, sub_id: Any) -> None:
        if sub_id in self.ids:
            self.ids.discard(sub_id)
            del subscribers[(self, sub_id)]
            counters["subscriptions"] -= 1

    async def disconnect(self, code: int) -> None:
        for sub_id in list(self.ids):
            self._forget(sub_id)


application = ProtocolTypeRouter({
    "http": stats_app,
    "websocket": URLRouter([re_path(r"^graphql/?$", FloorConsumer.as_asgi())]),
})
