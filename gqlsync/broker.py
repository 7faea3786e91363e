"""Broker: move events between processes on the Channels layer.

Every event goes to two groups: its model's (``gqlsync.bookstore.book``), which the hubs
of processes with subscriptions to any book join, and its row's
(``gqlsync.bookstore.book.42``), which hubs join for subscriptions watching one row. Both
names keep to Channels' rules (ASCII letters, digits, ``-_.``, under 100 characters);
primary keys that cannot appear in a name as they are (UUIDs with braces, long strings)
are hashed.

The broker only moves plain-data events; it neither knows nor calls the hub.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from gqlsync.conf import get_settings
from gqlsync.events import Event
from gqlsync.exceptions import ConfigurationError

logger = logging.getLogger("gqlsync.broker")

_SAFE = re.compile(r"^[a-zA-Z0-9\-_.]+$")
MAX_GROUP_NAME = 99
_background: set[asyncio.Task[None]] = set()

#: Called with every batch of events as it is published (``gqlsync.testing`` uses this).
observers: list[Callable[[Sequence[Event]], None]] = []


def _safe_part(text: str) -> str:
    if _SAFE.match(text) and len(text) <= 40:
        return text
    return "h" + hashlib.sha1(text.encode()).hexdigest()[:20]


def model_group(label: str) -> str:
    """The group every change to the model ``label`` (``app.model``) is sent to."""
    name = f"{get_settings()['GROUP_PREFIX']}.{_safe_part(label)}"
    if len(name) > MAX_GROUP_NAME:
        raise ConfigurationError(f"group name too long: {name!r}")
    return name


def row_group(label: str, pk: int | str) -> str:
    """The group changes to one row are sent to."""
    return f"{model_group(label)}.{_safe_part(str(pk))}"


def get_layer() -> Any:
    alias = get_settings()["CHANNEL_LAYER"]
    layer = get_channel_layer(alias)
    if layer is None:
        raise ConfigurationError(
            f"gqlsync needs a channel layer: CHANNEL_LAYERS[{alias!r}] is not configured"
        )
    return layer


#: This process's name on the wire, and its running message number per group: a hub
#: that sees a number skipped knows the channel layer dropped a message.
ORIGIN = f"{os.getpid()}-{os.urandom(4).hex()}"
_sequence: dict[str, int] = {}
_send_lock: asyncio.Lock | None = None
_lock_loop: asyncio.AbstractEventLoop | None = None


def messages_for(event: Event) -> list[tuple[str, dict[str, Any]]]:
    """(group, message) pairs that carry ``event``; ``group`` inside lets a hub route it,
    ``origin`` and ``seq`` let it notice a dropped message."""
    body = event.to_message()
    pairs = []
    for group in (model_group(event.model), row_group(event.model, event.pk)):
        _sequence[group] = seq = _sequence.get(group, 0) + 1
        pairs.append((group, {**body, "group": group, "origin": ORIGIN, "seq": seq}))
    return pairs


def _lock() -> asyncio.Lock:
    global _send_lock, _lock_loop
    loop = asyncio.get_running_loop()
    if _send_lock is None or _lock_loop is not loop:
        _send_lock, _lock_loop = asyncio.Lock(), loop
    return _send_lock


async def apublish(events: Sequence[Event]) -> None:
    """Send ``events`` to their groups, in order (numbered and sent under one lock, so the
    numbers of a group arrive in order)."""
    layer = get_layer()
    async with _lock():
        for event in events:
            for group, message in messages_for(event):
                await layer.group_send(group, message)


def publish(events: Sequence[Event]) -> None:
    """Send ``events`` from synchronous code (the commit hooks run there).

    From a thread of ``sync_to_async`` (an ORM write in an async view) this hops to the
    event loop and waits. Called on the event loop's own thread it schedules the sends
    and returns; they keep their order.
    """
    if not events:
        return
    for observer in list(observers):
        observer(events)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(apublish)(events)
        return
    task = loop.create_task(apublish(events))
    _background.add(task)
    task.add_done_callback(_background.discard)
