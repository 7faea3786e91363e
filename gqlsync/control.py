"""Control: ask every running hub, in every process, what it holds.

A management command runs in a process of its own, with no hub and no sockets: the hubs
it wants to hear from live in the ASGI workers. So it asks them over the channel layer,
the one thing it shares with them. Every hub, when it starts, joins one control group
(``<GROUP_PREFIX>.control``; model groups always have a dot in their label, so no model
can be named like it). :func:`ask` sends one request to that group with a reply channel
of its own (``layer.new_channel()``), and collects what comes back until its timeout:
it cannot know how many hubs there are, so it always waits the whole timeout.

A hub answers from its receive loop (:func:`answer`, in a task of its own), not from its
inbox: a worker busy with a burst of events still answers at once, with its counters as
they stand. Only counters and the process's identity (host, pid, origin, the hub's
channel name) travel, never a row, a user or a document.

What "running" means: a process starts its hub with the first WebSocket that subscribes
or signs in, and keeps it until it exits (the hub renews its group memberships, so the
layer's ``group_expiry`` does not drop it). A worker that has served neither holds nothing
and does not answer. With the in-memory layer, messages never leave the process: only a
hub on the asking process's own event loop can answer (tests); workers need a shared
layer (channels-redis) to be asked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from gqlsync import broker
from gqlsync.conf import get_settings

if TYPE_CHECKING:
    from gqlsync.hub import Hub

logger = logging.getLogger("gqlsync.control")

#: the ``type`` of a request sent to the control group, and of a hub's reply
REQUEST = "gqlsync.control"
REPLY = "gqlsync.control.reply"

#: control requests a hub answers at once; more arriving meanwhile are dropped (only
#: processes that can write to the channel layer can ask, but a loop of them should not
#: make a hub spend its time on answers)
MAX_IN_FLIGHT = 4

#: counters added up over the hubs for the total (every numeric value of a snapshot
#: but the process id)
_NOT_SUMMED = frozenset({"pid"})


def group() -> str:
    """The control group every hub joins: ``<GROUP_PREFIX>.control``."""
    return f"{get_settings()['GROUP_PREFIX']}.control"


def is_request(message: dict[str, Any]) -> bool:
    return message.get("type") == REQUEST


async def join(hub: Hub) -> None:
    """Join the control group with the hub's channel (the hub calls this as it starts).

    The group is kept with the hub's data groups (``_joined``), so the hub rejoins it
    after a channel-layer outage and leaves it when it closes, as it does the others.
    """
    name = group()
    hub._joined.add(name)  # first: a failed add is retried with the others
    try:
        await hub.layer.group_add(name, hub.channel)
    except Exception as error:  # not worth failing the subscriber that started the hub
        logger.warning("gqlsync control: joining %s failed (retried): %r", name, error)


def snapshot(hub: Hub) -> dict[str, Any]:
    """What one hub holds and has done, as plain data.

    ``connections``: sockets that hold a subscription or are signed in (anonymous
    sockets with no subscription are unknown to the hub); ``users``: signed-in users
    followed for identity changes; ``groups``: groups with local subscriptions (as
    ``/graphql/stats`` counts them); ``joined``: data groups the process listens to on
    the layer; then :attr:`Hub.stats`'s counters since the hub started.
    """
    from gqlsync import __version__

    members = [s for subscriptions in hub.groups.values() for s in subscriptions]
    connections = {c for followed in hub.connections.values() for c in followed}
    connections.update(s.connection for s in members if s.connection is not None)
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "origin": broker.ORIGIN,
        "channel": hub.channel,
        "version": __version__,
        "connections": len(connections),
        "users": len(hub.connections),
        "subscriptions": len(set(members)),
        "groups": len(hub.groups),
        "joined": len(hub._joined - {group()}),
        "views": len(hub.views.views),
        **hub.stats,
    }


async def answer(hub: Hub, message: dict[str, Any]) -> None:
    """Reply to a control request (from a task: the hub's receive loop goes on)."""
    reply = message.get("reply")
    if message.get("command") != "stats" or not isinstance(reply, str):
        logger.warning("gqlsync control: ignored a request it does not know: %r",
                       {k: message.get(k) for k in ("command", "reply")})
        return
    try:
        await hub.layer.send(reply, {"type": REPLY, "hub": snapshot(hub)})
    except Exception as error:  # the asker is gone, the layer is down: nothing to do
        logger.warning("gqlsync control: the reply to %s could not be sent: %r", reply, error)


async def ask(timeout: float) -> list[dict[str, Any]]:
    """Every hub's :func:`snapshot` that arrives within ``timeout`` seconds."""
    layer = broker.get_layer()
    reply = await layer.new_channel()
    await layer.group_send(group(), {"type": REQUEST, "command": "stats", "reply": reply})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    hubs: list[dict[str, Any]] = []
    while (left := deadline - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(layer.receive(reply), left)
        except TimeoutError:
            break
        if message.get("type") == REPLY and isinstance(message.get("hub"), dict):
            hubs.append(message["hub"])
    return hubs


def total(hubs: list[dict[str, Any]]) -> dict[str, int]:
    """The hubs' numbers added up (counters, connections, subscriptions, groups…)."""
    summed: dict[str, int] = {}
    for hub in hubs:
        for key, value in hub.items():
            if key in _NOT_SUMMED or isinstance(value, bool) or not isinstance(value, int):
                continue
            summed[key] = summed.get(key, 0) + value
    return summed


def is_in_memory(layer: Any) -> bool:
    """Is ``layer`` Channels' in-memory layer (messages never leave the process)?"""
    from channels.layers import InMemoryChannelLayer

    return isinstance(layer, InMemoryChannelLayer)
