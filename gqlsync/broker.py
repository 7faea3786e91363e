"""Broker: move events between processes on the Channels layer.

Every event goes to two groups: its model's (``gqlsync.bookstore.book``), which the hubs
of processes with subscriptions to any book join, and its row's
(``gqlsync.bookstore.book.42``), which hubs join for subscriptions watching one row. Both
names keep to Channels' rules (ASCII letters, digits, ``-_.``, under 100 characters);
primary keys that cannot appear in a name as they are (UUIDs with braces, long strings)
are hashed.

Before an event is sent it is appended to the replay log (:mod:`gqlsync.log`) of its
model's group, which gives it its cursor: the order of the log is the order subscribers
resume in. With the log turned off (``GQLSYNC["LOG"] = None``) cursors are made in the
process and cannot be resumed from.

The broker only moves plain-data events; it neither knows nor calls the hub.
"""

from __future__ import annotations

import asyncio
import dataclasses
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
from gqlsync.log import get_log

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


#: model group name -> model label, for every model this process named (a hub heals a
#: group from its model's log); one entry per model
_named: dict[str, str] = {}


def model_group(label: str) -> str:
    """The group every change to the model ``label`` (``app.model``) is sent to."""
    name = f"{get_settings()['GROUP_PREFIX']}.{_safe_part(label)}"
    if len(name) > MAX_GROUP_NAME:
        raise ConfigurationError(f"group name too long: {name!r}")
    _named.setdefault(name, label)
    return name


def row_group(label: str, pk: int | str) -> str:
    """The group changes to one row are sent to."""
    return f"{model_group(label)}.{_safe_part(str(pk))}"


def model_of(group: str) -> str | None:
    """The model label of a model group this process named."""
    return _named.get(group)


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


def stamp(events: Sequence[Event]) -> list[Event]:
    """Append ``events`` to the replay log; the same events carrying the log's cursors.

    One append per model group (a transaction's events are usually one or two groups).
    Without a log, the events keep the cursors they were made with.
    """
    log = get_log()
    if log is None:
        return list(events)
    by_stream: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        by_stream.setdefault(model_group(event.model), []).append(index)
    stamped = list(events)
    for stream, indexes in by_stream.items():
        bodies = [_log_body(events[i]) for i in indexes]
        hole = stream in _holes
        try:
            cursors = log.append(stream, [HOLE, *bodies] if hole else bodies)
        except Exception:
            # Not in the log: live subscribers still get these events (with cursors no
            # one can resume from), and the next append marks the hole, so a client
            # resuming across it is told to resync instead of silently missing them.
            _holes.add(stream)
            logger.exception("gqlsync: the replay log refused %d event(s) of %s",
                             len(bodies), stream)
            continue
        _holes.discard(stream)
        for i, cursor in zip(indexes, cursors[1:] if hole else cursors, strict=True):
            stamped[i] = dataclasses.replace(events[i], cursor=cursor)
    return stamped


#: the log entry that stands for events the log could not take
HOLE: dict[str, Any] = {"hole": True}
#: streams whose last append failed (this process's memory: a hole is recorded by the
#: process that made it, when the log takes its next append)
_holes: set[str] = set()


def _log_body(event: Event) -> dict[str, Any]:
    body = event.to_message()
    del body["type"], body["cursor"]
    return body


async def astamp(events: Sequence[Event]) -> list[Event]:
    """:func:`stamp` from the event loop: a log that does I/O is written from a thread."""
    log = get_log()
    if log is not None and log.blocking:
        return await asyncio.to_thread(stamp, events)
    return stamp(events)


def _observe(events: Sequence[Event]) -> None:
    for observer in list(observers):
        observer(events)


async def _send(events: Sequence[Event]) -> None:
    """Send stamped ``events`` to their groups, in order (numbered and sent under one
    lock, so the numbers of a group arrive in order)."""
    layer = get_layer()
    async with _lock():
        for event in events:
            for group, message in messages_for(event):
                await layer.group_send(group, message)


async def apublish(events: Sequence[Event]) -> None:
    """Log ``events`` and send them to their groups, from async code."""
    stamped = await astamp(events)
    _observe(stamped)
    await _send(stamped)


def publish(events: Sequence[Event]) -> None:
    """Log ``events`` and send them, from synchronous code (the commit hooks run there).

    From a thread of ``sync_to_async`` (an ORM write in an async view) this hops to the
    event loop and waits. Called on the event loop's own thread it schedules the sends
    and returns; they keep their order.
    """
    if not events:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        stamped = stamp(events)
        _observe(stamped)
        async_to_sync(_send)(stamped)
        return
    log = get_log()
    if log is None or not log.blocking:
        stamped = stamp(events)
        _observe(stamped)
        task = loop.create_task(_send(stamped))
    else:
        task = loop.create_task(apublish(events))
    _background.add(task)
    task.add_done_callback(_background.discard)
