"""The publishers of the baseline and the floor: ``post_save`` -> ``group_send``.

gqlsync publishes by itself (``@gqlsync.register``); these receivers are connected only
where the baseline or the floor is benchmarked (``connect(kind)``), never next to gqlsync.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db.models.signals import post_save

from bench.app.models import Item

#: group and message type each kind publishes to
TARGETS = {"baseline": ("items", "item.changed"), "floor": ("floor", "floor.item")}


def connect(kind: str) -> None:
    group, message_type = TARGETS[kind]

    def publish(sender: Any, instance: Item, created: bool, **kwargs: Any) -> None:
        # as in Channels' docs: from synchronous code, async_to_sync(group_send)
        async_to_sync(get_channel_layer().group_send)(group, {
            "type": message_type, "pk": instance.pk, "op": "CREATED" if created else "UPDATED",
        })

    post_save.connect(publish, sender=Item, weak=False, dispatch_uid=f"bench:{kind}")
